"""Fusion of runs larger than memory: Parquet runs fused in query blocks with ``fuse``, written incrementally.

The block I/O lives in :mod:`mmfuse.runs.stream` (input layouts, sortedness, partitioning, the block plan). Here
each block is fused in memory with :func:`mmfuse.fusion.fuse` and appended to the output, so peak memory is bounded
by the block size. Fusion is per query, so the result equals in-memory ``fuse`` on the same input (queries in
natural id order, as every writer orders them); methods that look across the query batch (``transductive`` in the
registry, e.g. q2e_entropy) are refused. The output appears only when every block was written: an interrupted run
leaves no partial output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmfuse.errors import InputError, ParameterError
from mmfuse.runs import Run
from mmfuse.runs.ids import encode_together
from mmfuse.runs.stream import RunBlocks, RunStreamWriter
from mmfuse.utils.files import check_writable, refuse_input_overwrite

from .fuse import check_weights, fuse
from .registry import get_method

__all__ = ["fuse_stream", "DEFAULT_BLOCK_ROWS"]

Progress = Callable[[int, int, str], None]
# ~1M input rows per block keeps the working set of one block (ids, align tables, output) to a few hundred MB.
DEFAULT_BLOCK_ROWS = 1_000_000


def fuse_stream(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, method: str | None = None,
                norm: str | None = None, weights: Sequence[float] | None = None, depth: int | None = None, *,
                block_queries: int | None = None, block_rows: int | None = DEFAULT_BLOCK_ROWS,
                on_duplicate: str = "error", progress: Progress | None = None, force: bool = False,
                **params: Any) -> dict[str, Any]:
    """Fuse Parquet runs block by block into ``out_path`` (Parquet by extension, otherwise TREC text).

    Same arguments as :func:`mmfuse.fusion.fuse` plus the block size: ``block_queries`` queries per block, or (the
    default) about ``block_rows`` input rows per block over all runs. Memory is bounded by the block size, not by
    the input size. An ``out_path`` that is one of the inputs is refused unless ``force``. Returns statistics: rows
    in/out, queries, blocks, seconds, which inputs were sorted. ``progress(rows_done, rows_total, label)`` is called
    after each block.
    """
    t_start = time.perf_counter()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("fuse_stream: no runs given")
    m = get_method(method)
    if m.transductive:
        raise ParameterError(f"method {m.name!r} uses the whole query batch at once, so it cannot be fused in query "
                             "blocks; fuse in memory instead (mmfuse.fusion.fuse)")
    check_weights(weights, len(paths))
    m.resolve({k: v for k, v in params.items() if not k.startswith("norm_")})
    check_writable(out_path)
    refuse_input_overwrite(out_path, paths, force)
    scratch = Path(os.path.realpath(os.fspath(out_path))).parent if os.fspath(out_path) != "-" else None
    with RunBlocks(paths, block_rows=block_rows, block_queries=block_queries, scratch=scratch) as src:
        stats: dict[str, Any] = {"rows_in": src.rows, "rows_out": 0, "queries": int(len(src.queries)),
                                 "shared_queries": int((src.coverage == len(paths)).sum()),
                                 "blocks": src.n_blocks, "sorted_inputs": src.sorted_inputs}
        done = 0
        with RunStreamWriter(out_path) as out:
            for b, tables in enumerate(src.blocks()):
                fused = _fuse_block(tables, src, m.name, norm, weights, depth, on_duplicate, params)
                if fused is not None:
                    out.write(fused)
                    stats["rows_out"] += fused.num_rows
                done += sum(x.num_rows for x in tables if x is not None)
                if progress is not None:
                    progress(done, src.rows, f"block {b + 1}/{src.n_blocks}")
    stats["seconds"] = time.perf_counter() - t_start
    return stats


def _fuse_block(tables, src: RunBlocks, method, norm, weights, depth, on_duplicate, params):
    """Fuse one block, returning its rows as an Arrow table (None when the block is empty).

    Every run of the block is built on ONE shared doc table and ONE sorted query table, so that alignment inside
    ``fuse`` finds identical tables (no per-run string conversion) and the output keeps ascending query order.
    Queries only some runs hold follow ``fuse``'s coverage rule, exactly as in memory.
    """
    if not any(t is not None and t.num_rows for t in tables):
        return None
    qcols = [t.column("query_id").combine_chunks() if t is not None else pa.array([], pa.string()) for t in tables]
    dcols = [t.column("doc_id").combine_chunks() if t is not None else pa.array([], pa.string()) for t in tables]
    scols = [t.column("score").to_numpy() if t is not None else np.zeros(0) for t in tables]
    qcodes, qtab = encode_together(qcols)
    dcodes, dtab = encode_together(dcols)
    q_np = np.asarray(qtab.to_numpy(zero_copy_only=False), dtype=object)
    d_np = np.asarray(dtab.to_numpy(zero_copy_only=False), dtype=object)
    n_q, n_d = len(qtab), len(dtab)
    runs = []
    for q, d, sc, qc, dc, name, path in zip(qcols, dcols, scols, qcodes, dcodes, src.names, src.paths):
        if np.isnan(sc).any():
            raise InputError(f"{path}: NaN score for query {q[int(np.flatnonzero(np.isnan(sc))[0])].as_py()!r}")
        if len(pa.array(qc * n_d + dc).unique()) != qc.size:
            # Repeated (query, doc) pairs: Run.from_arrays applies on_duplicate and names the offending pair.
            runs.append(Run.from_arrays(q, d, sc, name=name, on_duplicate=on_duplicate, source=str(path)))
            continue
        order = np.lexsort((-dc, -sc, qc))  # query asc, then score desc, then doc id desc (trec_eval)
        offsets = np.zeros(n_q + 1, dtype=np.int64)
        np.cumsum(np.bincount(qc, minlength=n_q), out=offsets[1:])
        runs.append(Run(q_np, d_np, offsets, dc[order], sc[order], name=name))
    fused = fuse(runs, method=method, norm=norm, weights=weights, depth=depth, **params)
    fused = fused.in_natural_order()  # the block's queries are in the stream's order: natural
    qi = pa.array(fused.qidx())
    di = pa.array(fused.doc_idx)
    docs = dtab.take(di) if fused.doc_table() is d_np else pa.array(fused.doc_ids, pa.string()).take(di)
    return pa.table({"query_id": pa.array(fused.query_ids, pa.string()).take(qi), "doc_id": docs,
                     "score": pa.array(fused.scores), "rank": pa.array(fused.ranks())})
