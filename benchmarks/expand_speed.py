"""Query-expansion speed: the latency ``--expand`` adds per query, against unexpanded search in the same run.

A loopback fake of an OpenAI-compatible server (``tests/_fake_openai.py``) answers every prompt after a fixed delay
(``--delay``, standing in for a model's generation time), so what is measured is the engine's own cost around the
model: the prompts, the concurrent requests, parsing, the extra retrievals (every retriever searches again with the
answers) and the second fusion input, plus the delay itself where requests cannot overlap. Then the same queries
again, answered from the on-disk cache: the cost of a re-run.

For each method (q2e, hyde, lamer) it reports, over the sample corpus queries, the wall time per query of

- ``base``: unexpanded search (the same Pipeline, no expansion),
- ``cold``: expanded, every answer from the server (the cache empty),
- ``cached``: expanded again, every answer from the cache,

both for a batch (all queries in one ``Pipeline.run``: requests go out ``--concurrency`` at a time) and one query
at a time (interactive search), as ratios to ``base`` and as milliseconds added. The models are loaded (one
discarded run) before anything is timed; base, cold and cached runs are interleaved and each figure is the best of
``--repeat`` runs. The query encoder runs on ``--threads`` torch threads (default 1: on a shared machine more threads
mostly add noise).

    .venv/bin/python benchmarks/expand_speed.py                   # indexes the sample corpus (OCR, ASR, metadata)
    .venv/bin/python benchmarks/expand_speed.py --index DIR --delay 0.5 --json out.json

What this does not measure: the quality of expansions (a fake model answers from a script) or a real model's
generation time (``--delay`` stands in for it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the loopback fake server

CORPUS = REPO / "examples" / "corpus"
METHODS = ("q2e", "hyde", "lamer")


def answer(prompt: str) -> str:
    """A well-formed answer for any method's prompt: n items built from the query (the prompt's quoted line)."""
    query = next((ln.strip().strip('"') for ln in prompt.splitlines() if ln.startswith('"')), "video")
    items = [query, f"a video about {query}", f"someone talks about {query}", f"the words {query} on screen"]
    if "JSON list" in prompt:
        return json.dumps(items)
    return "\n".join(f"{i}. {t}." for i, t in enumerate(items, 1))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(index: Path, queries: dict[str, str], delay: float, concurrency: int, repeat: int) -> list[dict]:
    from _fake_openai import FakeOpenAI

    from mmfuse.expand import build_expander
    from mmfuse.pipeline import searcher

    n = len(queries)
    pipe = searcher(index)  # one pipeline throughout: the same loaded retrievers with and without expansion
    pipe.run(queries)  # load the models, build the BM25 caches
    modes = {"batch": lambda: pipe.run(queries), "single": lambda: [pipe.run({q: t}) for q, t in queries.items()]}
    times: dict[tuple[str, str, str], list[float]] = {}
    with FakeOpenAI(text=answer, delay=delay, lifetime=24 * 3600) as srv:
        for _ in range(repeat):  # base, cold and cached interleaved: drift in the machine's load hits all three
            for mode, call in modes.items():
                times.setdefault(("base", mode, "base"), []).append(timed(call))
                for method in METHODS:
                    cache = Path(tempfile.mkdtemp(prefix="mmfuse-llm-bench-"))
                    try:
                        ex = pipe.expander = build_expander(method, model="fake", base_url=srv.url, cache=cache,
                                                            concurrency=concurrency)
                        times.setdefault((method, mode, "cold"), []).append(timed(call))
                        asked = len(srv.requests)
                        times.setdefault((method, mode, "cached"), []).append(timed(call))
                        assert len(srv.requests) == asked, "the cached run asked the server"
                        assert ex.llm.stats.failures == 0 and ex.llm.stats.cache_hits == n
                    finally:
                        pipe.expander = None
                        shutil.rmtree(cache, ignore_errors=True)
    rows = []
    for method in METHODS:
        for mode in modes:
            base, cold, cached = (min(times[k]) for k in (("base", mode, "base"), (method, mode, "cold"),
                                                         (method, mode, "cached")))
            rows.append({"method": method, "mode": mode, "queries": n, "delay_s": delay, "concurrency": concurrency,
                         "repeat": repeat, "base_ms_per_query": 1000 * base / n, "cold_ms_per_query": 1000 * cold / n,
                         "cached_ms_per_query": 1000 * cached / n, "cold_ratio": cold / base,
                         "cached_ratio": cached / base, "cold_added_ms": 1000 * (cold - base) / n,
                         "cached_added_ms": 1000 * (cached - base) / n})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=Path, help="an index of the sample corpus (default: build one in a temp folder)")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the fake server takes per answer")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the query encoder (1: steadier figures on a shared machine)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    from mmfuse.rerankers import load_queries
    from mmfuse.utils.lazy import require

    require("torch").set_num_threads(args.threads)
    queries = load_queries(CORPUS / "queries.tsv")
    tmp = None
    index = args.index
    if index is None:
        from mmfuse.ingest import IndexConfig, index_folder

        tmp = Path(tempfile.mkdtemp(prefix="mmfuse-expand-bench-"))
        index = tmp / "index"
        print(f"indexing {CORPUS} (OCR, ASR, metadata) ...", file=sys.stderr)
        index_folder(CORPUS, index, IndexConfig(modalities=["ocr", "asr", "meta"]))
    try:
        rows = bench(index, queries, args.delay, args.concurrency, args.repeat)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    head = (f"{'method':7} {'mode':7} {'base ms/q':>10} {'cold ms/q':>10} {'cached ms/q':>12} {'cold/base':>10} "
            f"{'cached/base':>12} {'cold +ms/q':>11} {'cached +ms/q':>13}")
    print(f"{len(queries)} queries, fake server delay {args.delay} s per answer, concurrency {args.concurrency}, "
          f"best of {args.repeat}, {args.threads} torch thread(s)")
    print(head)
    for r in rows:
        print(f"{r['method']:7} {r['mode']:7} {r['base_ms_per_query']:10.1f} {r['cold_ms_per_query']:10.1f} "
              f"{r['cached_ms_per_query']:12.1f} {r['cold_ratio']:10.2f} {r['cached_ratio']:12.2f} "
              f"{r['cold_added_ms']:11.1f} {r['cached_added_ms']:13.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
