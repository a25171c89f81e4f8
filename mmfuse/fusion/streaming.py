"""Fusion of runs larger than memory: Parquet runs read in query blocks, fused with ``fuse``, written incrementally.

Input layout: Parquet files with columns ``query_id`` (or ``q_id``), ``doc_id`` and a numeric ``score`` (``rank``
and other columns are ignored), as :meth:`mmfuse.Run.to_parquet` writes them.

* Files **sorted by query_id** (ascending, byte order: what ``Run.to_parquet`` of a Run whose queries are sorted
  writes, and what ``ORDER BY query_id`` gives) are streamed directly: one sequential pass, no temp files.
* Files in any other order are first **partitioned** (one extra pass) into per-block temp Parquet files in a
  hidden folder beside the output (disk: about the input size), removed at the end. Only the row order within a
  file matters; rows of a query need not be contiguous in that case.

How it works: pass 1 reads only the ``query_id`` column of every file (row counts per query, sortedness check), so
memory holds one entry per distinct query, never per row. The sorted union of query ids is cut into blocks of about
``block_rows`` input rows (all runs together) or ``block_queries`` queries; each block is fused in memory with
:func:`mmfuse.fusion.fuse` and appended to the output, so peak memory is bounded by the block size. Fusion is per
query, so the result equals in-memory ``fuse`` on the same input (queries in ascending id order); methods that
look across the query batch (``transductive`` in the registry, e.g. q2e_entropy) are refused. The output is written
to a temp file and renamed at the end: an interrupted run leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ParameterError
from mmfuse.utils.files import atomic_path

__all__ = ["fuse_stream", "DEFAULT_BLOCK_ROWS"]

Progress = Callable[[int, int, str], None]
# ~1M input rows per block keeps the working set of one block (ids, align tables, output) to a few hundred MB.
DEFAULT_BLOCK_ROWS = 1_000_000
_READ_BATCH = 1 << 17
_SENTINEL_DOC = ""


def _qcol(names: Sequence[str], path: Path) -> str:
    for c in ("query_id", "q_id"):
        if c in names:
            return c
    raise InputError(f"{path}: Parquet runs need columns query_id, doc_id, score (has {list(names)})")


class _Input:
    """One Parquet run: its schema, per-query row counts, and whether its rows are sorted by query id."""

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: file not found")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, expected a Parquet file")
        try:
            # No pre-buffering: its read cache keeps every row group read so far, so memory would grow with the
            # input instead of staying bounded by the block size.
            self.file = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{self.path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        names = self.file.schema_arrow.names
        self.q = _qcol(names, self.path)
        for c in ("doc_id", "score"):
            if c not in names:
                raise InputError(f"{self.path}: Parquet runs need columns query_id, doc_id, score (has {names})")
        st = self.file.schema_arrow.field("score").type
        if not (pa.types.is_floating(st) or pa.types.is_integer(st)):
            raise InputError(f"{self.path}: column 'score' is {st}, not numeric")
        self.name = self.path.stem
        self.rows = int(self.file.metadata.num_rows)

    def scan_queries(self) -> tuple[Any, Any]:
        """Pass 1: (distinct query ids, their row counts) as Arrow arrays; sets ``self.sorted``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        parts_q, parts_n = [], []
        self.sorted = True
        prev_last = None
        row = 0
        for batch in self.file.iter_batches(batch_size=_READ_BATCH, columns=[self.q]):
            q = batch.column(0)
            if not pa.types.is_string(q.type):
                q = q.cast(pa.string())
            if q.null_count:
                bad = row + int(pc.index(pc.is_null(q), True).as_py())
                raise InputError(f"{self.path}: row {bad + 1}: query_id is null")
            if self.sorted and len(q):
                if (prev_last is not None and q[0].as_py() < prev_last) or \
                        (len(q) > 1 and not pc.all(pc.greater_equal(q.slice(1), q.slice(0, len(q) - 1))).as_py()):
                    self.sorted = False
                prev_last = q[len(q) - 1].as_py()
            vc = pc.value_counts(q)
            parts_q.append(vc.field("values"))
            parts_n.append(vc.field("counts"))
            row += len(q)
        if not row:
            raise InputError(f"{self.path}: run has no entries")
        t = pa.table({"q": pa.concat_arrays(parts_q), "n": pa.concat_arrays(parts_n)})
        t = t.group_by("q").aggregate([("n", "sum")])
        return t.column("q").combine_chunks(), t.column("n_sum").combine_chunks()

    def batches(self):
        import pyarrow as pa

        for b in self.file.iter_batches(batch_size=_READ_BATCH, columns=[self.q, "doc_id", "score"]):
            yield pa.table({"query_id": b.column(0).cast(pa.string()), "doc_id": b.column(1).cast(pa.string()),
                            "score": b.column(2).cast(pa.float64())})


class _SortedReader:
    """Sequential reader of a sorted run: ``take_until(hi)`` returns all rows with query_id < hi (None: the rest)."""

    def __init__(self, inp: _Input) -> None:
        self.it = inp.batches()
        self.buf: list[Any] = []
        self.done = False

    def take_until(self, hi: str | None) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        while not self.done and (hi is None or not self.buf or self.buf[-1].column("query_id")[-1].as_py() < hi):
            nxt = next(self.it, None)
            if nxt is None:
                self.done = True
            elif nxt.num_rows:
                self.buf.append(nxt)
        if not self.buf:
            return None
        t = pa.concat_tables(self.buf)
        if hi is None:
            self.buf = []
            return t
        cut = int(pc.sum(pc.less(t.column("query_id"), hi)).as_py() or 0)
        rest = t.slice(cut)
        self.buf = [rest] if rest.num_rows else []
        return t.slice(0, cut)


class _PartitionedReader:
    """An unsorted run split once into per-block Parquet files; ``block(b)`` reads block b back."""

    def __init__(self, inp: _Input, tmp: Path, sorted_q: Any, block_of: np.ndarray, index: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.files: dict[int, Path] = {}
        writers: dict[int, Any] = {}
        try:
            for t in inp.batches():
                pos = pc.index_in(t.column("query_id"), value_set=sorted_q).to_numpy(zero_copy_only=False)
                blk = block_of[pos.astype(np.int64)]
                order = np.argsort(blk, kind="stable")
                blk_sorted = blk[order]
                t = t.take(pa.array(order))
                starts = np.flatnonzero(np.concatenate(([True], blk_sorted[1:] != blk_sorted[:-1])))
                ends = np.concatenate((starts[1:], [blk_sorted.size]))
                for a, e in zip(starts.tolist(), ends.tolist()):
                    b = int(blk_sorted[a])
                    w = writers.get(b)
                    if w is None:
                        self.files[b] = tmp / f"run{index}-block{b}.parquet"
                        w = writers[b] = pq.ParquetWriter(self.files[b], t.schema)
                    w.write_table(t.slice(a, e - a))
        finally:
            for w in writers.values():
                w.close()

    def block(self, b: int) -> Any:
        import pyarrow.parquet as pq

        f = self.files.get(b)
        return pq.read_table(f) if f is not None else None


def _plan_blocks(counts: np.ndarray, block_rows: int | None, block_queries: int | None) -> np.ndarray:
    """Block number of each query (queries in sorted order), cutting by cumulative rows or by query count."""
    n = counts.size
    if block_queries is not None:
        return np.arange(n, dtype=np.int64) // int(block_queries)
    cum = np.cumsum(counts) - counts  # rows before each query
    return (cum // int(block_rows)).astype(np.int64)


def _output_writer(path: Path, tmp: Path) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """An incremental writer for the fused rows: Parquet, or TREC text for any other extension."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if path.suffix.lower() in (".parquet", ".pq"):
        schema = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float64()),
                            ("rank", pa.int64())])
        w = pq.ParquetWriter(tmp, schema)
        return (lambda t: w.write_table(t.select(schema.names).cast(schema))), w.close
    import pyarrow.csv as pcsv

    tag = path.stem if path.stem and not any(ch.isspace() for ch in path.stem) else "mmfuse"
    fh = open(tmp, "wb")
    opts = pcsv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none")

    def write(t: Any) -> None:
        n = t.num_rows
        out = pa.table({"q": t.column("query_id"), "q0": pa.array(["Q0"] * n), "d": t.column("doc_id"),
                        "r": t.column("rank"), "s": pc.cast(t.column("score"), pa.string()),
                        "t": pa.array([tag] * n)})
        pcsv.write_csv(out, fh, write_options=opts)

    def close() -> None:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()

    return write, close


def fuse_stream(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, method: str | None = None,
                norm: str | None = None, weights: Sequence[float] | None = None, depth: int | None = None, *,
                block_queries: int | None = None, block_rows: int | None = DEFAULT_BLOCK_ROWS,
                on_duplicate: str = "error", progress: Progress | None = None, **params: Any) -> dict[str, Any]:
    """Fuse Parquet runs block by block into ``out_path`` (Parquet by extension, otherwise TREC text).

    Same arguments as :func:`mmfuse.fusion.fuse` plus the block size: ``block_queries`` queries per block, or (the
    default) about ``block_rows`` input rows per block over all runs. Memory is bounded by the block size, not by
    the input size. Returns statistics: rows in/out, queries, blocks, seconds, which inputs were sorted.
    ``progress(rows_done, rows_total, label)`` is called after each block.
    """
    from mmfuse.runs.run import Run

    from . import fuse
    from .fuse import check_weights
    from .registry import get_method

    t_start = time.perf_counter()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ParameterError("fuse_stream: no runs given")
    if block_queries is not None and int(block_queries) < 1:
        raise ParameterError(f"block_queries must be >= 1, got {block_queries}")
    if block_queries is None and (block_rows is None or int(block_rows) < 1):
        raise ParameterError(f"block_rows must be >= 1, got {block_rows}")
    m = get_method(method)
    if m.transductive:
        raise ParameterError(f"method {m.name!r} uses the whole query batch at once, so it cannot be fused in query "
                             "blocks; fuse in memory instead (mmfuse.fusion.fuse)")
    check_weights(weights, len(paths))
    m.resolve({k: v for k, v in params.items() if not k.startswith("norm_")})
    out_path = Path(out_path)

    inputs = [_Input(p) for p in paths]
    import pyarrow as pa

    scans = [inp.scan_queries() for inp in inputs]
    allq = pa.concat_arrays([s[0] for s in scans])
    alln = pa.concat_arrays([s[1] for s in scans])
    t = pa.table({"q": allq, "n": alln}).group_by("q").aggregate([("n", "sum"), ("n", "count")])
    t = t.sort_by("q")
    sorted_q = t.column("q").combine_chunks()
    counts = t.column("n_sum").to_numpy()
    if len(inputs) > 1 and not (t.column("n_count").to_numpy() == len(inputs)).any():
        raise InputError(f"runs {', '.join(repr(i.name) for i in inputs)} have no query in common")
    block_of = _plan_blocks(counts, block_rows, block_queries)
    n_blocks = int(block_of[-1]) + 1
    starts = np.flatnonzero(np.concatenate(([True], block_of[1:] != block_of[:-1])))
    his = [sorted_q[int(s)].as_py() for s in starts[1:]] + [None]  # exclusive upper query id of each block
    total = int(counts.sum())

    stats: dict[str, Any] = {"rows_in": total, "rows_out": 0, "queries": int(len(sorted_q)), "blocks": n_blocks,
                             "sorted_inputs": [inp.sorted for inp in inputs]}
    tmpdir: Path | None = None
    try:
        readers: list[Any] = []
        for i, inp in enumerate(inputs):
            if inp.sorted:
                readers.append(_SortedReader(inp))
            else:
                if tmpdir is None:
                    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.parts-", dir=out_path.parent
                                                   if out_path.parent.is_dir() else None))
                readers.append(_PartitionedReader(inp, tmpdir, sorted_q, block_of, i))
        done = 0
        with atomic_path(out_path) as tmp:
            write, close = _output_writer(out_path, tmp)
            try:
                for b in range(n_blocks):
                    tables = [r.take_until(his[b]) if isinstance(r, _SortedReader) else r.block(b) for r in readers]
                    fused = _fuse_block(tables, inputs, fuse, Run, m.name, norm, weights, depth, on_duplicate, params)
                    if fused is not None:
                        out = fused
                        write(out)
                        stats["rows_out"] += out.num_rows
                    done += sum(x.num_rows for x in tables if x is not None)
                    if progress is not None:
                        progress(done, total, f"block {b + 1}/{n_blocks}")
            finally:
                close()
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    stats["seconds"] = time.perf_counter() - t_start
    return stats


def _encode_sorted(cols: list[Any]) -> tuple[list[np.ndarray], Any]:
    """Dictionary-encode several string arrays at once: per-array int64 codes into ONE sorted (byte-order) table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enc = pa.concat_arrays(cols).dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = pc.sort_indices(enc.dictionary).to_numpy().astype(np.int64)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    codes = rank[codes]
    bounds = np.cumsum([0] + [len(c) for c in cols])
    return [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])], enc.dictionary.take(pa.array(order))


def _fuse_block(tables, inputs, fuse, Run, method, norm, weights, depth, on_duplicate, params):
    """Fuse one block, returning its rows as an Arrow table (None when the block is empty).

    Every run of the block is built on ONE shared doc table and ONE sorted query table, so that alignment inside
    ``fuse`` finds identical tables (no per-run string conversion) and the output keeps ascending query order.
    Runs without rows (or without a query shared by all) get a sentinel query, which ``fuse`` needs (it refuses
    empty runs and runs without a common query) and which, fusion being per query, changes nothing else.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not any(t is not None and t.num_rows for t in tables):
        return None
    qcols = [t.column("query_id").combine_chunks() if t is not None else pa.array([], pa.string()) for t in tables]
    dcols = [t.column("doc_id").combine_chunks() if t is not None else pa.array([], pa.string()) for t in tables]
    scols = [t.column("score").to_numpy() if t is not None else np.zeros(0) for t in tables]
    uq = [pc.unique(q) for q in qcols]
    qtab = pc.unique(pa.chunked_array(uq, type=pa.string()))
    counts = pa.chunked_array(uq, type=pa.string()).value_counts().field("counts")
    common = bool(pc.any(pc.equal(counts, len(uq))).as_py())
    sentinel = None
    if not common or any(len(q) == 0 for q in qcols):
        sentinel = "\x00mmfuse-sentinel"
        while pc.any(pc.equal(qtab, sentinel)).as_py():
            sentinel += "\x00"
        qcols = [pa.concat_arrays([q, pa.array([sentinel])]) for q in qcols]
        dcols = [pa.concat_arrays([d, pa.array([_SENTINEL_DOC])]) for d in dcols]
        scols = [np.concatenate([x, [0.0]]) for x in scols]
    qcodes, qtab = _encode_sorted(qcols)
    dcodes, dtab = _encode_sorted(dcols)
    q_np = np.asarray(qtab.to_numpy(zero_copy_only=False), dtype=object)
    d_np = np.asarray(dtab.to_numpy(zero_copy_only=False), dtype=object)
    n_q, n_d = len(qtab), len(dtab)
    runs = []
    for q, d, sc, qc, dc, inp in zip(qcols, dcols, scols, qcodes, dcodes, inputs):
        if np.isnan(sc).any():
            raise InputError(f"{inp.path}: NaN score for query {q[int(np.flatnonzero(np.isnan(sc))[0])].as_py()!r}")
        if len(pa.array(qc * n_d + dc).unique()) != qc.size:
            # Repeated (query, doc) pairs: Run.from_arrays applies on_duplicate and names the offending pair.
            runs.append(Run.from_arrays(q, d, sc, name=inp.name, on_duplicate=on_duplicate, source=str(inp.path)))
            continue
        order = np.lexsort((-dc, -sc, qc))  # query asc, then score desc, then doc id desc (trec_eval)
        offsets = np.zeros(n_q + 1, dtype=np.int64)
        np.cumsum(np.bincount(qc, minlength=n_q), out=offsets[1:])
        runs.append(Run(q_np, d_np, offsets, dc[order], sc[order], name=inp.name))
    fused = fuse(runs, method=method, norm=norm, weights=weights, depth=depth, **params)
    fq = fused.query_ids
    if sentinel is not None or fq is not q_np and not (fq[1:] >= fq[:-1]).all():
        fused = fused.subset([x for x in sorted(fq.tolist()) if x != sentinel])
    qi = pa.array(fused.qidx())
    di = pa.array(fused.doc_idx)
    docs = dtab.take(di) if fused.doc_ids is d_np else pa.array(fused.doc_ids, pa.string()).take(di)
    return pa.table({"query_id": pa.array(fused.query_ids, pa.string()).take(qi), "doc_id": docs,
                     "score": pa.array(fused.scores), "rank": pa.array(fused.ranks())})
