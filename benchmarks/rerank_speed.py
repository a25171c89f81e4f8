"""Reranker speed: S-Grid throughput (cold vs cached), prompt tokens per candidate per grid size, seconds/query.

    .venv/bin/python benchmarks/rerank_speed.py                       # tiny random Qwen2-VL on CPU, sample corpus
    .venv/bin/python benchmarks/rerank_speed.py --model Qwen/Qwen2.5-VL-3B-Instruct          # a real local model
    .venv/bin/python benchmarks/rerank_speed.py --backend openai --model Qwen/Qwen2.5-VL-7B-Instruct \\
        --base-url http://localhost:8000/v1                                                  # a running server

Targets: a cached grid step at least 10x faster than the cold one (checked on the grid step of two reranks
of the same candidates). Figures are printed as a table; ``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class _Keep:
    """A backend that keeps the incoming order: isolates the grid step from the model."""

    name = "keep"

    def rank(self, query, candidates, metadata):
        return list(range(len(candidates)))


def _corpus(corpus: Path):
    from mmfuse import Run
    from mmfuse.rerankers.reranker import index_videos, load_queries

    videos = index_videos(corpus)
    queries = load_queries(corpus / "queries.tsv")
    docs = sorted(videos)
    # a fixed pseudo-random first-stage run: every query ranks every video
    run = Run.from_dict({q: {d: float(zlib.crc32(f"{q}|{d}".encode()) % 1000 / 1000 + i * 1e-6) for i, d in enumerate(docs)}
                         for q in queries}, name="first")
    return videos, queries, run


def bench_grids(videos: dict, cell: int, grid: tuple[int, int], repeat: int) -> dict:
    from mmfuse.rerankers.grid import GridCache, GridSpec

    spec = GridSpec(rows=grid[0], cols=grid[1], cell=(cell, cell))
    paths = list(videos.values())
    tmp = Path(tempfile.mkdtemp(prefix="mmfuse-grid-bench-"))
    try:
        cold, cached = [], []
        for r in range(repeat):
            d = tmp / f"c{r}"
            t0 = time.perf_counter()
            c = GridCache(d)
            for p in paths:
                c.get(p, spec)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c2 = GridCache(d)  # a fresh object, as in a second process: hashes and reads PNGs from disk
            for p in paths:
                c2.get(p, spec)
            cached.append(time.perf_counter() - t0)
            assert c2.hits == len(paths) and c2.misses == 0
        cold_s, cached_s = min(cold), min(cached)
        return {"videos": len(paths), "grid": f"{grid[0]}x{grid[1]}", "cell": cell,
                "cold_videos_per_s": len(paths) / cold_s, "cached_videos_per_s": len(paths) / cached_s,
                "cached_speedup": cold_s / cached_s}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_rerank_grid_step(videos, queries, run, cell: int, top: int, repeat: int) -> dict:
    """Grid seconds of two reranks of the same candidates (fresh reranker objects sharing a cache dir)."""
    from mmfuse.rerankers import VLMReranker

    firsts, seconds = [], []
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="mmfuse-grid-bench-"))
        try:
            out = []
            for _ in range(2):
                rr = VLMReranker(_Keep(), top=top, window=top, cell=cell, cache_dir=tmp)
                rr.rerank(queries, run, videos)
                out.append(rr.stats.grid_seconds)
            firsts.append(out[0])
            seconds.append(out[1])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    a, b = min(firsts), min(seconds)
    return {"first_rerank_grid_s": a, "second_rerank_grid_s": b, "speedup": a / b}


def bench_tokens(backend, grids: list[tuple[int, int]], cell: int) -> list[dict]:
    """Prompt tokens one more candidate adds, per grid size (image tokens + label/metadata text)."""
    from PIL import Image

    from mmfuse.rerankers.prompts import Candidate

    rows = []
    for r, c in grids:
        img = Image.new("RGB", (c * cell, r * cell), (120, 60, 30))
        cands = [Candidate(doc_id=f"d{i}", label=i + 1, image=img, ranks={"clip": i + 1, "ocr": None})
                 for i in range(4)]
        t2 = backend.count_tokens(backend.prompt("a dog on a beach", cands[:2]))
        t4 = backend.count_tokens(backend.prompt("a dog on a beach", cands))
        rows.append({"grid": f"{r}x{c}", "cell": cell, "image_px": f"{c * cell}x{r * cell}",
                     "tokens_per_candidate": (t4 - t2) / 2, "prompt_tokens_k20": t2 + 9 * (t4 - t2)})
    return rows


def bench_end_to_end(backend, videos, queries, run, *, n_queries: int, top: int, window: int, step: int,
                     cell: int, grid: tuple[int, int]) -> dict:
    from mmfuse.rerankers import VLMReranker

    sub = run.subset(list(run.query_ids[:n_queries]))
    tmp = Path(tempfile.mkdtemp(prefix="mmfuse-e2e-bench-"))
    try:
        res = {}
        for label in ("cold", "cached"):
            rr = VLMReranker(backend, top=top, window=window, step=step, grid=grid, cell=cell, cache_dir=tmp)
            t0 = time.perf_counter()
            rr.rerank(queries, sub, videos)
            dt = time.perf_counter() - t0
            res[f"{label}_s_per_query"] = dt / sub.n_queries
            res[f"{label}_grid_s_per_query"] = rr.stats.grid_seconds / sub.n_queries
            res[f"{label}_model_s_per_call"] = rr.stats.model_seconds / max(rr.stats.model_calls, 1)
        res.update(queries=sub.n_queries, top=top, window=window, step=step, grid=f"{grid[0]}x{grid[1]}", cell=cell,
                   calls_per_query=rr.stats.model_calls / sub.n_queries, parse=rr.stats.parse.as_dict())
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(REPO / "examples" / "corpus"))
    ap.add_argument("--backend", default="transformers", choices=["transformers", "openai"])
    ap.add_argument("--model", default=None, help="default: a tiny random Qwen2-VL built on the fly")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cell", type=int, default=224)
    ap.add_argument("--queries", type=int, default=4, help="queries for the end-to-end figure")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--grids-only", action="store_true", help="skip the model figures")
    args = ap.parse_args(argv)

    from rich.console import Console

    console = Console()
    videos, queries, run = _corpus(Path(args.corpus))
    figures: dict = {}

    g = bench_grids(videos, args.cell, (2, 2), args.repeat)
    figures["grid_build"] = g
    step = bench_rerank_grid_step(videos, queries, run, args.cell, args.top, args.repeat)
    figures["rerank_grid_step"] = step

    if args.grids_only:
        _print(console, args, figures, None)
        return 0 if step["speedup"] >= 10 and g["cached_speedup"] >= 10 else 1
    tmp_model = None
    model = args.model
    if model is None and args.backend == "transformers":
        from mmfuse.rerankers.testing import build_tiny_vlm

        tmp_model = Path(tempfile.mkdtemp(prefix="mmfuse-tiny-vlm-"))
        model = str(build_tiny_vlm(tmp_model))
        figures["model"] = "tiny random Qwen2-VL (Qwen2-VL image processor, max_pixels 1003520)"
    else:
        figures["model"] = model
    from mmfuse.rerankers import get_backend

    kw = {"device": args.device} if args.backend == "transformers" else {"base_url": args.base_url}
    backend = get_backend(args.backend, model, **kw)
    if hasattr(backend, "count_tokens"):
        figures["tokens"] = bench_tokens(backend, [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3)], args.cell)
    figures["end_to_end"] = bench_end_to_end(backend, videos, queries, run, n_queries=args.queries, top=args.top,
                                             window=args.window, step=args.step, cell=args.cell, grid=(2, 2))
    if tmp_model is not None:
        shutil.rmtree(tmp_model, ignore_errors=True)
    _print(console, args, figures, backend)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if step["speedup"] >= 10 and g["cached_speedup"] >= 10 else 1


def _print(console, args, figures, backend) -> None:
    from rich.table import Table

    g, step = figures["grid_build"], figures["rerank_grid_step"]

    t = Table(title=f"S-Grid building ({g['videos']} sample videos, {g['grid']} x {g['cell']} px cells, best of "
                    f"{args.repeat})")
    for col in ("cold videos/s", "cached videos/s", "cached speedup", "rerank grid step 1st s", "2nd s", "speedup"):
        t.add_column(col, justify="right")
    ok = "[green]>= 10x[/]" if step["speedup"] >= 10 and g["cached_speedup"] >= 10 else "[red]< 10x[/]"
    t.add_row(f"{g['cold_videos_per_s']:.1f}", f"{g['cached_videos_per_s']:.1f}", f"{g['cached_speedup']:.1f}x",
              f"{step['first_rerank_grid_s']:.3f}", f"{step['second_rerank_grid_s']:.3f}",
              f"{step['speedup']:.1f}x {ok}")
    console.print(t)
    if "tokens" in figures:
        t = Table(title="Prompt tokens per candidate (label + ranks text + image), Qwen2-VL processor")
        for col in ("grid", "image", "tokens/candidate", "prompt tokens at K=20"):
            t.add_column(col, justify="right")
        for r in figures["tokens"]:
            t.add_row(r["grid"], r["image_px"], f"{r['tokens_per_candidate']:.0f}", f"{r['prompt_tokens_k20']:.0f}")
        console.print(t)
    if backend is None:
        return
    e = figures["end_to_end"]
    t = Table(title=f"End to end: {figures['model']} ({args.backend}, {getattr(backend, 'device', args.base_url)})")
    for col in ("queries", "top/window/step", "calls/query", "s/query cold", "s/query cached", "grid s/query cold",
                "grid s/query cached", "model s/call"):
        t.add_column(col, justify="right")
    t.add_row(str(e["queries"]), f"{e['top']}/{e['window']}/{e['step']}", f"{e['calls_per_query']:.1f}",
              f"{e['cold_s_per_query']:.2f}", f"{e['cached_s_per_query']:.2f}", f"{e['cold_grid_s_per_query']:.3f}",
              f"{e['cached_grid_s_per_query']:.3f}", f"{e['cached_model_s_per_call']:.2f}")
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())
