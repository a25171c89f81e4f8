"""Fusion and loading speed of mmfuse against ranx on the same input, measured in one run, plus peak memory.

    .venv/bin/python benchmarks/fusion_speed.py            # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/fusion_speed.py --quick    # smaller sizes, for a smoke test

1. Fusion, 4 runs x 1000 queries x 1000 candidates, CombSUM(zmuv), CombMNZ(min-max), RRF(k=60), wsum(min-max),
   in three layouts: "corpus-1k" (every run ranks the same 1000-doc collection, like the MSR-VTT score matrices),
   "pool-2k" (each run's 1000 candidates are drawn from a 2000-doc pool per query out of a 2M-doc collection,
   so runs overlap partially; runs built from arrays share one doc table) and "files" (the pool-2k runs written
   as TREC files and read back, so each run has its own 1M-id doc table, as with real runs). ranx is warmed up
   on a small input first so its numba JIT is excluded; each figure is the best of 5 repeats for mmfuse and of 2
   for ranx. Scores of both are compared (rel 1e-6) as a sanity check.
2. Loading a 1M-line TREC run file: ``mmfuse.Run.read`` vs ``ranx.Run.from_file`` (ranx warmed up on a small
   file first, which excludes the JIT compilation of its ``Run.from_dict``; best of 3 for both).
3. Peak memory of fusing 10,000 queries x 1000 candidates x 4 runs (CombSUM, zmuv), in a fresh subprocess:
   peak RSS of the whole process (inputs included) and tracemalloc's peak during ``fuse`` alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIGS = [("combsum", "zmuv", "sum", "zmuv", {}), ("combmnz", "min-max", "mnz", "min-max", {}),
           ("rrf", "none", "rrf", None, {"k": 60}), ("wsum", "min-max", "wsum", "min-max", {"weights": [0.4, 0.3, 0.2, 0.1]})]


def make_runs(n_q: int, n_c: int, n_runs: int, layout: str, seed: int = 0):
    """Runs built straight from arrays (sorted per query: score desc, doc desc), like a retriever would emit."""
    from mmfuse import Run

    rng = np.random.default_rng(seed)
    if layout == "corpus-1k":
        n_docs = max(n_c, 1000)
        doc_ids = np.array([f"d{i:07d}" for i in range(n_docs)], dtype=object)
    else:
        import pyarrow as pa
        import pyarrow.compute as pc

        from mmfuse.runs import LazyIds

        # an Arrow-backed table, as Run.read gives: 20M Python strings would dominate the memory figure
        n_docs = n_q * 2 * n_c
        digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(n_docs)), pa.string()), width=8, padding="0")
        doc_ids = LazyIds(pc.binary_join_element_wise("d", digits, ""))
    query_ids = np.array([f"q{i}" for i in range(n_q)], dtype=object)
    offsets = np.arange(n_q + 1, dtype=np.int64) * n_c
    runs = []
    for r in range(n_runs):
        if layout == "corpus-1k":
            docs = np.argsort(rng.random((n_q, n_docs)), axis=1)[:, :n_c]
        else:
            docs = np.argsort(rng.random((n_q, 2 * n_c)), axis=1)[:, :n_c] + (np.arange(n_q) * 2 * n_c)[:, None]
        scores = rng.normal(size=(n_q, n_c)) * (r + 1) + r
        order = np.argsort(-scores, axis=1, kind="stable")  # continuous scores: no ties to break
        docs = np.take_along_axis(docs, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        runs.append(Run(query_ids, doc_ids, offsets, docs.reshape(-1).astype(np.int64), scores.reshape(-1),
                        name=f"run{r}"))
    return runs


def best(fn, repeats: int) -> float:
    """Best of ``repeats`` timings, with the garbage collector off while timing (as ``timeit`` does)."""
    gc.collect()
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return min(times)


def bench_fusion(n_q: int, n_c: int, layout: str, repeats: int) -> list[dict]:
    import ranx

    from mmfuse import Run
    from mmfuse.fusion import fuse

    if layout == "files":
        with tempfile.TemporaryDirectory() as tmp:
            runs = []
            for i, r in enumerate(make_runs(n_q, n_c, 4, "pool-2k")):
                r.write(os.path.join(tmp, f"r{i}.trec"), tag=f"run{i}")
                runs.append(Run.read(os.path.join(tmp, f"r{i}.trec")))
    else:
        runs = make_runs(n_q, n_c, 4, layout)
    t = time.perf_counter()
    rruns = [r.to_ranx() for r in runs]
    build_ranx = time.perf_counter() - t
    small = [r.to_ranx() for r in make_runs(5, 20, 4, "pool-2k" if layout == "files" else layout, seed=1)]
    rows = []
    for method, norm, rmethod, rnorm, params in CONFIGS:
        rparams = dict(params)
        ranx.fuse(small, norm=rnorm, method=rmethod, params=rparams)  # JIT warm-up, excluded
        kw = dict(params)
        t_ranx = best(lambda: ranx.fuse(rruns, norm=rnorm, method=rmethod, params=rparams), 1 if repeats < 3 else 2)
        # warm-up on the same input after ranx has run: the first calls after ranx freed its memory pay page
        # faults that a process fusing repeatedly does not (measured: 50 ms, then 30 ms from the third call)
        for _ in range(2):
            fuse(runs, method=method, norm=norm, **kw)
        t_mm = best(lambda: fuse(runs, method=method, norm=norm, **kw), repeats)
        ours = fuse(runs, method=method, norm=norm, **kw).to_dict()
        theirs = ranx.fuse(rruns, norm=rnorm, method=rmethod, params=rparams).to_dict()
        q0 = next(iter(theirs))
        ok = all(abs(ours[q0][d] - s) <= 1e-6 * max(1.0, abs(s)) for d, s in theirs[q0].items())
        rows.append(dict(layout=layout, method=f"{method}({norm})", ranx_s=t_ranx, mmfuse_s=t_mm,
                         ratio=t_ranx / t_mm, same_scores=ok))
    rows.append(dict(layout=layout, method="build ranx.Run from dicts (4 runs)", ranx_s=build_ranx))
    return rows


def bench_load(n_q: int, n_c: int) -> dict:
    import ranx

    from mmfuse import Run

    runs = make_runs(n_q, n_c, 1, "pool-2k")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.trec")
        runs[0].write(path, tag="bench")
        small = os.path.join(tmp, "small.trec")
        make_runs(5, 20, 1, "pool-2k", seed=1)[0].write(small, tag="bench")
        ranx.Run.from_file(small, kind="trec")  # JIT warm-up, excluded
        Run.read(small)  # first-call imports, excluded
        t_mm = best(lambda: Run.read(path), 3)
        t_ranx = best(lambda: ranx.Run.from_file(path, kind="trec"), 3)
    return dict(lines=n_q * n_c, ranx_s=t_ranx, mmfuse_s=t_mm, ratio=t_ranx / t_mm)


def memory_child(n_q: int, n_c: int, layout: str) -> None:
    import tracemalloc

    from mmfuse.fusion import fuse

    fuse(make_runs(5, 20, 4, layout, seed=1), method="combsum", norm="zmuv")  # load the compiled kernels first
    runs = make_runs(n_q, n_c, 4, layout)
    gc.collect()
    tracemalloc.start()
    t = time.perf_counter()
    out = fuse(runs, method="combsum", norm="zmuv")
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # VmHWM, not ru_maxrss: the latter carries the parent's peak across fork/exec
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    print(json.dumps(dict(layout=layout, entries=4 * n_q * n_c, fused_entries=len(out), fuse_s_under_tracemalloc=dt,
                          fuse_peak_gb=peak / 2**30, process_peak_rss_gb=rss / 2**30)))


def bench_memory(n_q: int, n_c: int, layout: str) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", str(n_q), str(n_c), layout]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return dict(layout=layout, error=p.stderr.strip().splitlines()[-1] if p.stderr else f"exit {p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: fusion,load,memory")
    ap.add_argument("--layouts", default="corpus-1k,pool-2k,files", help="comma list of input layouts")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), int(args.memory_child[1]), args.memory_child[2])
        return
    skip = set(args.skip.split(","))
    nq, nc = (100, 200) if args.quick else (1000, 1000)
    report: dict = {"cpu_count": os.cpu_count()}
    if "fusion" not in skip:
        report["fusion"] = []
        for layout in args.layouts.split(","):
            for row in bench_fusion(nq, nc, layout, 5 if not args.quick else 2):
                report["fusion"].append(row)
                if "ratio" in row:
                    print(f"fuse {layout:9s} {row['method']:18s} ranx {row['ranx_s']:7.3f} s  mmfuse "
                          f"{row['mmfuse_s']:7.4f} s  ratio {row['ratio']:6.1f}x  same scores: {row['same_scores']}",
                          flush=True)
                else:
                    print(f"      {layout:9s} {row['method']}: ranx {row['ranx_s']:.2f} s", flush=True)
    if "load" not in skip:
        row = bench_load(*((100, 1000) if args.quick else (1000, 1000)))
        report["load"] = row
        print(f"load TREC {row['lines']} lines: ranx.Run.from_file {row['ranx_s']:.3f} s  mmfuse Run.read "
              f"{row['mmfuse_s']:.3f} s  ratio {row['ratio']:.1f}x", flush=True)
    if "memory" not in skip:
        report["memory"] = []
        # "files" would need 40M-line files; its fused arrays are those of pool-2k
        for layout in [x for x in args.layouts.split(",") if x != "files"]:
            row = bench_memory(1000 if args.quick else 10_000, 1000, layout)
            report["memory"].append(row)
            print("memory", json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
