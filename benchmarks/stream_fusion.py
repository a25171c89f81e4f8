"""Streaming fusion benchmark: fuse Parquet runs larger than memory by query blocks; rows/s and peak RSS.

Generates ``--runs`` Parquet runs of ``--rows`` rows each (``--cands`` candidates per query, sorted by query id as
``Run.to_parquet`` writes them; ``--shuffle`` writes them in random row order to exercise the partitioning pass),
then fuses them with :func:`mmfuse.fusion.streaming.fuse_stream` in a child process, whose peak RSS is what is reported,
next to the input size on disk and in memory (Arrow). ``--check`` also fuses in memory and compares (small inputs).

    .venv/bin/python benchmarks/stream_fusion.py                      # 3 runs x 20M rows (60M rows), CombSUM
    .venv/bin/python benchmarks/stream_fusion.py --rows 1000000 --check  # quick check against in-memory fuse
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_run(path: Path, rows: int, cands: int, seed: int, n_docs: int, shuffle: bool, chunk_queries: int = 2000) -> int:
    """Write a synthetic run: queries q0000000.. with ``cands`` distinct random docs each, scores ~ N(0, 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_q = rows // cands
    schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float64()), ("rank", pa.int64())])
    perm_chunks = []
    with pq.ParquetWriter(path, schema) as w:
        for s in range(0, n_q, chunk_queries):
            m = min(chunk_queries, n_q - s)
            q = np.repeat(np.arange(s, s + m), cands)
            # distinct docs per query: a random offset plus a stride walk over the doc space
            base = rng.integers(0, n_docs, m)[:, None]
            docs = ((base + np.arange(cands)[None, :] * 7919) % n_docs).ravel()
            score = -np.sort(-rng.standard_normal((m, cands)), axis=1).ravel()
            rank = np.tile(np.arange(1, cands + 1), m)
            t = pa.table({
                "query_id": pc.binary_join_element_wise("q", pc.utf8_lpad(pa.array(q).cast(pa.string()), 7, "0"), ""),
                "doc_id": pc.binary_join_element_wise("d", pc.utf8_lpad(pa.array(docs).cast(pa.string()), 7, "0"), ""),
                "score": score, "rank": rank}, schema=schema)
            if shuffle:
                perm_chunks.append(t)
                if sum(x.num_rows for x in perm_chunks) >= 4_000_000 or s + m >= n_q:
                    big = pa.concat_tables(perm_chunks)
                    w.write_table(big.take(pa.array(rng.permutation(big.num_rows))))
                    perm_chunks = []
            else:
                w.write_table(t, row_group_size=1 << 20)
    return n_q * cands


def child(args: dict) -> None:
    """Run fuse_stream in this (fresh) process and print its figures, so peak RSS is the fusion's alone."""
    from mmfuse.fusion.streaming import fuse_stream

    base = _status_mb("VmRSS")
    t = time.perf_counter()
    stats = fuse_stream(args["paths"], args["out"], method=args["method"], block_rows=args["block_rows"])
    stats["seconds"] = time.perf_counter() - t
    stats["peak_rss_mb"] = _status_mb("VmHWM")
    stats["import_rss_mb"] = base
    print(json.dumps(stats))


def _status_mb(key: str) -> float:
    """VmHWM/VmRSS of this process in MB. Not ru_maxrss: Linux keeps that high-water mark across execve, so a
    child would inherit the parent's peak (the forked copy of the generator process)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=20_000_000, help="rows per run")
    ap.add_argument("--cands", type=int, default=1000, help="candidates per query")
    ap.add_argument("--docs", type=int, default=5_000_000, help="size of the doc-id space")
    ap.add_argument("--method", default="combsum")
    ap.add_argument("--block-rows", type=int, default=None, help="rows per block (default: the library's)")
    ap.add_argument("--shuffle", action="store_true", help="write unsorted runs (exercises the partition pass)")
    ap.add_argument("--check", action="store_true", help="also fuse in memory and compare (small --rows only)")
    ap.add_argument("--dir", default=None, help="where to write the runs (default: a temp dir, removed)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        child(json.loads(args._child))
        return {}

    from mmfuse.fusion.streaming import DEFAULT_BLOCK_ROWS

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mmfuse-stream-"))
    need = args.runs * args.rows * 30 / 2**30  # generous bytes per row on disk, incl. output and partitions
    free = shutil.disk_usage(root).free / 2**30
    if free < need + 2:
        sys.exit(f"need ~{need:.1f} GiB free in {root}, have {free:.1f} GiB")
    out: dict = {"runs": args.runs, "rows_per_run": args.rows, "cands": args.cands, "method": args.method,
                 "block_rows": args.block_rows or DEFAULT_BLOCK_ROWS, "shuffled": args.shuffle}
    try:
        t = time.perf_counter()
        paths = []
        for i in range(args.runs):
            p = root / f"run{i}.parquet"
            write_run(p, args.rows, args.cands, seed=i, n_docs=args.docs, shuffle=args.shuffle)
            paths.append(str(p))
        out["generate_s"] = round(time.perf_counter() - t, 1)
        import pyarrow.parquet as pq

        out["input_rows"] = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        out["input_mb_on_disk"] = round(sum(os.path.getsize(p) for p in paths) / 2**20, 1)
        # Arrow in-memory size of one run, read back: what loading everything would need at the very least.
        first = pq.read_table(paths[0])
        out["input_mb_in_arrow"] = round(first.nbytes * args.runs / 2**20, 1)
        del first
        print(f"generated {out['input_rows']:,} rows in {args.runs} runs: {out['input_mb_on_disk']} MB on disk, "
              f"~{out['input_mb_in_arrow']} MB as Arrow in memory ({out['generate_s']} s)", flush=True)

        fused = root / "fused.parquet"
        cargs = {"paths": paths, "out": str(fused), "method": args.method,
                 "block_rows": args.block_rows or DEFAULT_BLOCK_ROWS}
        res = subprocess.run([sys.executable, __file__, "--_child", json.dumps(cargs)], capture_output=True, text=True)
        if res.returncode:
            sys.exit(res.stderr[-3000:])
        stats = json.loads(res.stdout.strip().splitlines()[-1])
        out.update({"fuse_s": round(stats["seconds"], 2), "rows_per_s": round(out["input_rows"] / stats["seconds"]),
                    "peak_rss_mb": round(stats["peak_rss_mb"], 1), "import_rss_mb": round(stats["import_rss_mb"], 1),
                    "blocks": stats["blocks"], "queries": stats["queries"], "rows_out": stats["rows_out"],
                    "output_mb_on_disk": round(os.path.getsize(fused) / 2**20, 1)})
        print(f"fused {out['input_rows']:,} rows ({stats['queries']:,} queries, {stats['blocks']} blocks) in "
              f"{out['fuse_s']} s = {out['rows_per_s']:,} rows/s; peak RSS {out['peak_rss_mb']} MB "
              f"(vs {out['input_mb_in_arrow']} MB of input as Arrow, {out['input_mb_on_disk']} MB on disk)", flush=True)
        if args.check:
            from mmfuse import Run
            from mmfuse.fusion import fuse

            t = time.perf_counter()
            mem = fuse([Run.read(p) for p in paths], method=args.method)
            out["in_memory_fuse_s"] = round(time.perf_counter() - t, 2)
            mem = mem.subset(sorted(mem.query_ids.tolist()))
            out["identical_to_in_memory"] = bool(Run.read(fused).equals(mem, rtol=1e-12))
            print(f"in-memory fuse: {out['in_memory_fuse_s']} s; identical: {out['identical_to_in_memory']}", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
