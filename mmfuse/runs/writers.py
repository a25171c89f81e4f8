"""Writers of runs and qrels (TREC text, Parquet, JSON), all through ``mmfuse.utils.files`` (atomic for files, written
through for ``-``, devices and FIFOs, a symlink's target written).

They write what they are given in its order; ``Run.write``/``Qrels.write`` hand over the queries in natural order.
TREC text cannot hold every id: an empty id, or one with whitespace inside, would be read back as something else,
so such ids are refused (naming the id and its query) before anything is written. Scores are written in their
shortest round-trip form, so a file read back gives the same float64 scores.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfuse.errors import InputError, ParameterError
from mmfuse.utils.files import atomic_path, atomic_write

from .ids import ids_array

__all__ = ["arrow_ids", "check_trec_ids", "trec_text", "trec_number", "write_trec", "write_parquet", "write_json",
           "check_tag"]

_SPACE = r"[ \t\n\r\v\f]"  # what the readers split columns on (ASCII whitespace)
_CHUNK = 1 << 20  # lines joined per Arrow call: bounds the memory of the text being written


def arrow_ids(table) -> pa.Array:
    """An id table (``LazyIds`` or numpy object array) as an Arrow string array, without a Python copy if it is
    Arrow-backed already."""
    arrow = getattr(table, "arrow", None)
    if arrow is not None:
        return arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow
    return pa.array(ids_array(table), type=pa.string())


def check_tag(tag: str) -> str:
    if not tag or any(ch.isspace() for ch in tag):
        raise ParameterError(f"run tag {tag!r} must be non-empty and contain no whitespace")
    return tag


def _first_unwritable(table: pa.Array, used: np.ndarray) -> int | None:
    """Position of the first id among those ``used`` that TREC text cannot hold (empty, or with ASCII whitespace
    inside), or None."""
    if not len(table):
        return None
    bad = pc.or_(pc.match_substring_regex(table, _SPACE), pc.equal(pc.binary_length(table), 0))
    bad = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
    if bad.size:
        written = np.zeros(len(table), dtype=bool)
        written[used] = True
        bad = bad[written[bad]]
    return int(bad[0]) if bad.size else None


def check_trec_ids(path: str | os.PathLike, qtab: pa.Array, dtab: pa.Array, qidx: np.ndarray,
                   doc_idx: np.ndarray, at_start: bool = True) -> None:
    """Refuse, before writing, a query or doc id that would not read back the same from TREC text.

    Only ids that are written count (a doc table may hold more ids than the entries use). The first query id of a
    file (``at_start``) must not start with a byte-order mark either (readers drop one at the start of a file).
    """
    why = "TREC ids must be non-empty, without spaces, tabs or newlines"
    if not qidx.size:
        return
    q = _first_unwritable(qtab, qidx)
    if q is not None:
        raise InputError(f"{path}: cannot write query id {qtab[q].as_py()!r}: {why}")
    first = qtab[int(qidx[0])].as_py()
    if at_start and first.startswith("\ufeff"):
        raise InputError(f"{path}: cannot write query id {first!r}: a TREC file cannot start with a byte-order mark")
    d = _first_unwritable(dtab, doc_idx)
    if d is not None:
        e = int(np.flatnonzero(doc_idx == d)[0])
        raise InputError(f"{path}: cannot write doc id {dtab[d].as_py()!r} of query {qtab[int(qidx[e])].as_py()!r}: "
                         f"{why}")


def _joined(columns: list[Any]) -> memoryview:
    """The bytes of ``columns`` joined with spaces per row, one line per row."""
    if isinstance(columns[-1], str):
        arr = pc.binary_join_element_wise(*columns[:-1], columns[-1] + "\n", " ")
    else:
        arr = pc.binary_join_element_wise(pc.binary_join_element_wise(*columns, " "), "\n", "")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    return memoryview(arr.buffers()[2])[int(offsets[0]):int(offsets[-1])] if len(arr) else memoryview(b"")


def trec_text(columns: list[Any]):
    """Yield the TREC text of rows given as columns (Arrow arrays of one length, or str constants), in chunks.

    Numeric columns must come as Arrow arrays already (``trec_number`` gives the shortest round-trip text).
    """
    n = max((len(c) for c in columns if not isinstance(c, str)), default=0)
    for a in range(0, n, _CHUNK):
        yield _joined([c if isinstance(c, str) else c.slice(a, _CHUNK) for c in columns])


def trec_number(values) -> pa.Array:
    """Numbers as text: integers plainly, floats in their shortest round-trip form (what the readers parse back)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.cast(values if isinstance(values, pa.Array) else pa.array(values), pa.string())


def write_trec(path: str | os.PathLike, columns: list[Any]) -> None:
    """Write rows given as columns (see ``trec_text``), one line each."""
    with atomic_write(path, "wb") as fh:
        for chunk in trec_text(columns):
            fh.write(chunk)


def write_parquet(path: str | os.PathLike, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_write(path) as fh:
        json.dump(data, fh)
