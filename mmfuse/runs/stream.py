"""Runs larger than memory: Parquet runs read in blocks of whole queries, and result rows written incrementally.

Input layout: Parquet files with columns ``query_id`` (or ``q_id``), ``doc_id`` and a numeric ``score`` (``rank``
and other columns are ignored), as :meth:`mmfuse.Run.to_parquet` writes them.

* Files whose rows are **sorted by query id in natural order** (``q2`` before ``q10``: what ``Run.to_parquet``
  writes; ids of one width, as ``ORDER BY query_id`` gives them, are in that order too) are streamed directly:
  one sequential pass, no temp files.
* Files in any other order are first **partitioned** (one extra pass) into per-block temp Parquet files in a
  hidden folder beside the output (disk: about the input size), removed at the end. Only the row order within a
  file matters; rows of a query need not be contiguous in that case.

Pass 1 reads only the ``query_id`` column of every file (row counts per query, sortedness check), so memory holds
one entry per distinct query, never per row. The union of query ids, in natural order, is cut into blocks of about
``block_rows`` input rows (all runs together; a query larger than that is a block of its own) or ``block_queries``
queries; :meth:`RunBlocks.blocks` yields each block's rows per input. :class:`RunStreamWriter` appends result rows
to a Parquet or TREC output that appears (atomically) only when everything was written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfuse.errors import InputError, ParameterError
from mmfuse.utils.files import atomic_path

from .ids import natural_key, natural_order
from .writers import check_tag, check_trec_ids, trec_number, trec_text

__all__ = ["RunBlocks", "RunStreamWriter", "plan_blocks"]

READ_BATCH = 1 << 17
_COLUMNS = ("query_id", "doc_id", "score")


def _first_null(col: Any) -> int:
    return int(pc.index(pc.is_null(col), True).as_py())


class _ParquetRun:
    """One Parquet run: its schema, per-query row counts, and whether its rows are sorted by query id."""

    def __init__(self, path: str | os.PathLike) -> None:
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
        q = next((c for c in ("query_id", "q_id") if c in names), None)
        if q is None or "doc_id" not in names or "score" not in names:
            raise InputError(f"{self.path}: Parquet runs need columns query_id, doc_id, score (has {list(names)})")
        self.q = q
        st = self.file.schema_arrow.field("score").type
        if not (pa.types.is_floating(st) or pa.types.is_integer(st)):
            raise InputError(f"{self.path}: column 'score' is {st}, not numeric")
        self.name = self.path.stem
        self.rows = int(self.file.metadata.num_rows)
        self.sorted = True

    def _string(self, col: Any, name: str, row: int) -> Any:
        if col.null_count:
            raise InputError(f"{self.path}: row {row + _first_null(col) + 1}: {name} is null")
        if not pa.types.is_string(col.type):
            try:
                col = col.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(f"{self.path}: column {name!r} is {col.type}, not text") from None
        return col

    def scan_queries(self) -> tuple[Any, Any]:
        """Pass 1: (distinct query ids, their row counts) as Arrow arrays; sets ``self.sorted`` (natural order)."""
        parts_q, parts_n = [], []
        last_key = None
        row = 0
        for batch in self.file.iter_batches(batch_size=READ_BATCH, columns=[self.q]):
            q = self._string(batch.column(0), "query_id", row)
            if self.sorted and len(q):
                # rows of one query are contiguous, and query ids ascend (natural order) from one group to the next
                heads = q.filter(pa.array(_group_starts(q))).to_pylist()
                keys = [natural_key(x) for x in heads]
                if last_key is not None and keys[0] < last_key or any(b <= a for a, b in zip(keys, keys[1:])):
                    self.sorted = False
                last_key = keys[-1]
            vc = pc.value_counts(q)
            parts_q.append(vc.field("values"))
            parts_n.append(vc.field("counts"))
            row += len(q)
        if not row:
            raise InputError(f"{self.path}: run has no entries")
        t = pa.table({"q": pa.concat_arrays(parts_q), "n": pa.concat_arrays(parts_n)})
        t = t.group_by("q").aggregate([("n", "sum")])
        return t.column("q").combine_chunks(), t.column("n_sum").combine_chunks()

    def batches(self) -> Iterator[pa.Table]:
        """The rows as tables of ``query_id``, ``doc_id`` (strings) and float64 ``score``; nulls are errors."""
        row = 0
        for b in self.file.iter_batches(batch_size=READ_BATCH, columns=[self.q, "doc_id", "score"]):
            q = self._string(b.column(0), "query_id", row)
            d = self._string(b.column(1), "doc_id", row)
            s = b.column(2)
            if s.null_count:
                raise InputError(f"{self.path}: row {row + _first_null(s) + 1}: score is null")
            yield pa.table({"query_id": q, "doc_id": d, "score": s.cast(pa.float64(), safe=False)})  # rounds as numpy
            row += b.num_rows


def _group_starts(q: Any) -> np.ndarray:
    """Per row, True where a new run of equal query ids starts."""
    n = len(q)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = pc.not_equal(q.slice(1), q.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return starts


class _SortedReader:
    """Sequential reader of a sorted run: ``block(b)`` returns the rows of block b (asked in increasing order)."""

    def __init__(self, inp: _ParquetRun, block_of_query: dict[str, int]) -> None:
        self.it = inp.batches()
        self.block_of_query = block_of_query
        self.buf: list[tuple[pa.Table, np.ndarray]] = []
        self.done = False

    def _blocks(self, t: pa.Table) -> np.ndarray:
        q = t.column("query_id").combine_chunks()
        starts = _group_starts(q)
        heads = q.filter(pa.array(starts)).to_pylist()
        return np.repeat(np.asarray([self.block_of_query[x] for x in heads], dtype=np.int64),
                         np.diff(np.append(np.flatnonzero(starts), len(q))))

    def block(self, b: int) -> pa.Table | None:
        while not self.done and (not self.buf or self.buf[-1][1][-1] <= b):
            nxt = next(self.it, None)
            if nxt is None:
                self.done = True
            elif nxt.num_rows:
                self.buf.append((nxt, self._blocks(nxt)))
        if not self.buf:
            return None
        t = pa.concat_tables([x[0] for x in self.buf])
        blk = np.concatenate([x[1] for x in self.buf])
        cut = int(np.searchsorted(blk, b, side="right"))
        self.buf = [(t.slice(cut), blk[cut:])] if cut < blk.size else []
        return t.slice(0, cut) if cut else None


class _PartitionedReader:
    """An unsorted run split once into per-block Parquet files; ``block(b)`` reads block b back."""

    def __init__(self, inp: _ParquetRun, tmp: Path, queries: Any, block_of: np.ndarray, index: int) -> None:
        self.files: dict[int, Path] = {}
        writers: dict[int, Any] = {}
        try:
            for t in inp.batches():
                pos = pc.index_in(t.column("query_id"), value_set=queries).to_numpy(zero_copy_only=False)
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

    def block(self, b: int) -> pa.Table | None:
        f = self.files.get(b)
        return pq.read_table(f) if f is not None else None


def plan_blocks(counts: np.ndarray, block_rows: int | None, block_queries: int | None) -> np.ndarray:
    """Block number (0, 1, 2 ... with no gaps) of each query, cutting by cumulative rows or by query count.

    By rows, a block starts at each query where the rows before it cross a multiple of ``block_rows``: a query
    larger than ``block_rows`` is a block of its own, never split.
    """
    n = counts.size
    if block_queries is not None:
        return np.arange(n, dtype=np.int64) // int(block_queries)
    cum = np.cumsum(counts) - counts  # rows before each query
    raw = cum // int(block_rows)
    if not n:
        return raw.astype(np.int64)
    return np.cumsum(np.concatenate(([0], raw[1:] != raw[:-1]))).astype(np.int64)


class RunBlocks:
    """Several Parquet runs read block by block over the natural-ordered union of their query ids.

    After construction (pass 1): ``queries`` (Arrow, natural order), ``counts`` (rows per query, all runs),
    ``coverage`` (how many runs have each query), ``block_of`` (block of each query), ``n_blocks``, ``rows``,
    ``names``, ``paths`` and ``sorted_inputs``. ``blocks()`` yields, per block, one table per run (None where a run
    has no rows there); use it as a context manager so that partition files are removed.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, block_rows: int | None = None,
                 block_queries: int | None = None, scratch: str | os.PathLike | None = None) -> None:
        if block_queries is not None and int(block_queries) < 1:
            raise ParameterError(f"block_queries must be >= 1, got {block_queries}")
        if block_queries is None and (block_rows is None or int(block_rows) < 1):
            raise ParameterError(f"block_rows must be >= 1, got {block_rows}")
        self.inputs = [_ParquetRun(p) for p in paths]
        self.paths = [i.path for i in self.inputs]
        self.names = [i.name for i in self.inputs]
        scans = [inp.scan_queries() for inp in self.inputs]
        t = pa.table({"q": pa.concat_arrays([s[0] for s in scans]), "n": pa.concat_arrays([s[1] for s in scans])})
        t = t.group_by("q").aggregate([("n", "sum"), ("n", "count")])
        order = natural_order(t.column("q").to_pylist())
        t = t.take(pa.array(order))
        self.queries = t.column("q").combine_chunks()
        self.counts = t.column("n_sum").to_numpy()
        self.coverage = t.column("n_count").to_numpy()
        self.block_of = plan_blocks(self.counts, block_rows, block_queries)
        self.n_blocks = int(self.block_of[-1]) + 1 if self.block_of.size else 0
        self.rows = int(self.counts.sum())
        self.sorted_inputs = [inp.sorted for inp in self.inputs]
        self._scratch = Path(scratch) if scratch is not None else None
        self._tmp: Path | None = None

    def __enter__(self) -> RunBlocks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def blocks(self) -> Iterator[list[pa.Table | None]]:
        readers: list[Any] = []
        block_of_query = None
        for i, inp in enumerate(self.inputs):
            if inp.sorted:
                if block_of_query is None:
                    block_of_query = dict(zip(self.queries.to_pylist(), self.block_of.tolist()))
                readers.append(_SortedReader(inp, block_of_query))
            else:
                if self._tmp is None:
                    parent = self._scratch if self._scratch is not None and self._scratch.is_dir() else None
                    self._tmp = Path(tempfile.mkdtemp(prefix=".mmfuse-parts-", dir=parent))
                readers.append(_PartitionedReader(inp, self._tmp, self.queries, self.block_of, i))
        for b in range(self.n_blocks):
            yield [r.block(b) for r in readers]


class RunStreamWriter:
    """Append result rows (``query_id, doc_id, score, rank``) to ``path``: Parquet by extension (.parquet, .pq),
    otherwise TREC text tagged ``tag`` (default: the file stem, or "mmfuse"). The rows appear at ``path`` only when
    the ``with`` block ends without error (``mmfuse.utils.files`` rules); they are written in the order given."""

    _SCHEMA = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float64()),
                         ("rank", pa.int64())])

    def __init__(self, path: str | os.PathLike, tag: str | None = None) -> None:
        self.path = path
        p = Path(os.fspath(path))
        self.parquet = p.suffix.lower() in (".parquet", ".pq")
        stem_ok = p.stem and not any(ch.isspace() for ch in p.stem) and os.fspath(path) != "-"
        self.tag = check_tag(tag or (p.stem if stem_ok else "mmfuse"))
        self.rows = 0

    def __enter__(self) -> RunStreamWriter:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._out = stack.enter_context(pq.ParquetWriter(tmp, self._SCHEMA) if self.parquet else open(tmp, "wb"))
            self._stack = stack.pop_all()
        return self

    def write(self, table: pa.Table) -> None:
        t = table.select(list(self._SCHEMA.names)).cast(self._SCHEMA)
        if self.parquet:
            self._out.write_table(t)
        else:
            q, d = t.column("query_id").combine_chunks(), t.column("doc_id").combine_chunks()
            idx = np.arange(len(q))
            check_trec_ids(self.path, q, d, idx, idx, at_start=self.rows == 0)
            for chunk in trec_text([q, "Q0", d, trec_number(t.column("rank")), trec_number(t.column("score")),
                                    self.tag]):
                self._out.write(chunk)
        self.rows += t.num_rows

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)
