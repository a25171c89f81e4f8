"""ANN benchmark: build time, recall@10 against exact search, and p50/p95 single-query latency of LanceDB's index.

Synthetic *clustered* segment vectors (not uniform noise, where every point is about equally far from every other
and "nearest neighbours" mean nothing): 100 super-clusters x 10 clusters, each cluster a low-dimensional (16-d
latent) blob plus small isotropic noise, L2-normalised like CLIP embeddings. Queries come from the same generator
(fresh samples, not rows of the table). Exact neighbours are a numpy matrix product over all rows.

    .venv/bin/python benchmarks/ann_speed.py                    # 1,000,000 x 512, 200 queries, the nprobes grid
    .venv/bin/python benchmarks/ann_speed.py --rows 100000      # quick check

Targets (issue 7): recall@10 >= 0.95 at p50 <= 20 ms on 2 cores. The script prints one line per
(nprobes, refine_factor) setting and which settings meet both targets; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LANCE_LOG", "error")


def clustered(n: int, dim: int, seed: int, n_super: int = 100, per_super: int = 10, latent: int = 16,
              spread: float = 0.6, noise: float = 0.3, sub_spread: float = 0.4, chunk: int = 50_000):
    """Yield float32 [m, dim] chunks of L2-normalised clustered vectors (cluster structure fixed by seed 0)."""
    g = np.random.default_rng(0)
    n_clusters = n_super * per_super
    sup = g.standard_normal((n_super, dim))
    centers = np.repeat(sup, per_super, axis=0) + sub_spread * g.standard_normal((n_clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    bases = (g.standard_normal((n_clusters, latent, dim)) / np.sqrt(dim)).astype(np.float32)
    centers = centers.astype(np.float32)
    rng = np.random.default_rng(seed)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = np.sort(rng.integers(0, n_clusters, m))
        z = rng.standard_normal((m, latent)).astype(np.float32) * (spread / np.sqrt(latent))
        x = centers[c] + (noise / np.sqrt(dim)) * rng.standard_normal((m, dim)).astype(np.float32)
        bounds = np.flatnonzero(np.diff(np.concatenate(([-1], c, [n_clusters])))) if m else []
        for a, b in zip(bounds[:-1], bounds[1:]):
            x[a:b] += z[a:b] @ bases[c[a]]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Exact top-k row indices by cosine (vectors are normalised), chunked to bound memory."""
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for s in range(0, len(x), chunk):
        sims = q @ x[s:s + chunk].T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        top = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
    return best_i


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kind", default="ivf_pq", choices=["ivf_pq", "hnsw"])
    ap.add_argument("--grid", default="1:0,2:0,4:0,8:0,2:10,4:10,8:10,16:5,16:10,32:10,32:20,64:20",
                    help="comma-separated nprobes:refine_factor settings (refine 0 = none)")
    ap.add_argument("--noise", type=float, default=0.3, help="isotropic noise norm (harder: larger)")
    ap.add_argument("--sub-spread", type=float, default=0.4,
                    help="spread of the 10 clusters of a group around it, relative to the group (harder: smaller)")
    ap.add_argument("--max-iterations", type=int, default=20, help="k-means iterations for the IVF/PQ training")
    ap.add_argument("--dir", default=None, help="where to put the LanceDB table (default: a temp dir, removed)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    import lancedb
    import pyarrow as pa

    from mmfuse.store.ann import ensure_vector_index, search

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="mmfuse-ann-"))
    need = args.rows * args.dim * 4 * 1.2 / 2**30
    free = shutil.disk_usage(root).free / 2**30
    if free < need + 1:
        sys.exit(f"need ~{need:.1f} GiB free in {root}, have {free:.1f} GiB")
    out: dict = {"noise": args.noise, "sub_spread": args.sub_spread, "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": args.k, "kind": args.kind,
                 "cpus": os.cpu_count()}
    try:
        x = np.empty((args.rows, args.dim), dtype=np.float32)
        t0 = time.perf_counter()
        pos = 0

        def batches():
            nonlocal pos
            for chunk in clustered(args.rows, args.dim, seed=1, noise=args.noise, sub_spread=args.sub_spread):
                x[pos:pos + len(chunk)] = chunk
                ids = pa.array(np.arange(pos, pos + len(chunk)))
                pos += len(chunk)
                yield pa.record_batch([ids, pa.FixedSizeListArray.from_arrays(pa.array(chunk.ravel()), args.dim)],
                                      names=["row", "vector"])

        schema = pa.schema([("row", pa.int64()), ("vector", pa.list_(pa.float32(), args.dim))])
        db = lancedb.connect(str(root / "db"))
        table = db.create_table("vec_bench", batches(), schema=schema, mode="overwrite")
        out["write_s"] = round(time.perf_counter() - t0, 2)
        print(f"wrote {table.count_rows():,} x {args.dim} vectors in {out['write_s']:.1f} s", flush=True)

        info = ensure_vector_index(table, "vector", min_rows=0, kind=args.kind, max_iterations=args.max_iterations)
        out["build_s"] = round(info["seconds"], 2)
        out["index"] = {k: v for k, v in info.items() if k not in ("seconds",)}
        print(f"built {args.kind} index in {info['seconds']:.1f} s: {out['index']}", flush=True)

        q = next(clustered(args.queries, args.dim, seed=2, noise=args.noise, sub_spread=args.sub_spread,
                           chunk=args.queries))
        t0 = time.perf_counter()
        truth = exact_topk(q, x, args.k)
        out["exact_numpy_ms_per_query"] = round((time.perf_counter() - t0) / len(q) * 1e3, 2)
        del x

        # Flat scan inside LanceDB (what search does without an index) for reference, on a few queries.
        lat = []
        for i in range(min(10, len(q))):
            t = time.perf_counter()
            search(table, "vector", q[i], args.k, exact=True)
            lat.append(time.perf_counter() - t)
        out["flat_scan_p50_ms"] = round(float(np.median(lat)) * 1e3, 1)
        print(f"exact flat scan in LanceDB: p50 {out['flat_scan_p50_ms']} ms/query", flush=True)

        curve = []
        for setting in args.grid.split(","):
            nprobes, refine = (int(v) for v in setting.split(":"))
            for i in range(5):  # warm the index cache
                search(table, "vector", q[i], args.k, nprobes=nprobes, refine_factor=refine or None, columns=["row"])
            lat, hits = [], []
            for i in range(len(q)):
                t = time.perf_counter()
                res = search(table, "vector", q[i], args.k, nprobes=nprobes, refine_factor=refine or None,
                             columns=["row"])
                lat.append(time.perf_counter() - t)
                hits.append(len(set(res["row"].to_pylist()) & set(truth[i].tolist())) / args.k)
            row = {"nprobes": nprobes, "refine_factor": refine, "recall": round(float(np.mean(hits)), 4),
                   "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
                   "p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 2)}
            row["meets_target"] = row["recall"] >= 0.95 and row["p50_ms"] <= 20.0
            curve.append(row)
            print(f"nprobes={nprobes:>4} refine={refine:>3}  recall@{args.k}={row['recall']:.3f}  "
                  f"p50={row['p50_ms']:6.2f} ms  p95={row['p95_ms']:6.2f} ms  {'MEETS' if row['meets_target'] else ''}",
                  flush=True)
        out["curve"] = curve
        ok = [r for r in curve if r["meets_target"]]
        out["best"] = min(ok, key=lambda r: r["p50_ms"]) if ok else None
        print("best setting meeting recall@10>=0.95 and p50<=20 ms:", out["best"], flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
