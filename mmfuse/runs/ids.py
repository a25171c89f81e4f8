"""Id tables: ids as Arrow strings (nulls refused here, the one door every reader and constructor goes through),
dictionary encoding into (codes, table), the Arrow-backed ``LazyIds`` table, and the natural order of ids.

A Run keeps its doc ids in a table sorted by UTF-8 bytes, so "doc id descending" is "doc code descending" and
trec_eval's order is one integer sort. Encoding is the hot part of reading a file: the compiled byte-order keys of
``fastio`` first, then a sort of a mostly-distinct column, else Arrow's hash-and-sort.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmfuse.errors import InputError

from . import fastio

__all__ = ["LazyIds", "as_str_array", "encode", "encode_together", "ids_array", "natural_key", "natural_order"]


class LazyIds:
    """An Arrow id table that becomes a numpy object array only when someone looks at it (saves ~0.1 s/1M ids).

    The Arrow table is kept after that, so that fusion can still merge doc tables without Python strings.
    """

    __slots__ = ("arrow", "_np")

    def __init__(self, arrow):
        self.arrow = arrow
        self._np = None

    def __len__(self) -> int:
        return len(self.arrow)

    def __getitem__(self, i):
        return self.arrow[int(i)].as_py()

    def materialize(self) -> np.ndarray:
        if self._np is None:
            self._np = np.asarray(self.arrow.to_numpy(zero_copy_only=False), dtype=object)
        return self._np


def ids_array(table) -> np.ndarray:
    """An id table (``LazyIds`` or array-like) as a numpy object array."""
    return table.materialize() if isinstance(table, LazyIds) else np.asarray(table, dtype=object)


def _refuse_nulls(arr: pa.Array, column: str, where: str) -> None:
    if arr.null_count:
        row = int(pc.index(pc.is_null(arr), True).as_py())
        raise InputError(f"{where}: row {row + 1}: {column} is null (ids must be strings)")


def _from_objects(values: np.ndarray, column: str, where: str) -> pa.Array:
    """Strings from a mixed object array: ints become their decimal text; None, NaN and anything else are refused."""
    out = []
    for i, v in enumerate(values.tolist()):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(str(v))
        elif v is None or (isinstance(v, float) and v != v):
            raise InputError(f"{where}: row {i + 1}: {column} is null (ids must be strings)")
        else:
            raise InputError(f"{where}: row {i + 1}: {column} {v!r} is a {type(v).__name__}, not a string id")
    return pa.array(out, type=pa.string())


def as_str_array(values: Any, column: str = "id", where: str = "input") -> pa.Array:
    """Ids given as a list, numpy array, Arrow array or ``LazyIds`` as one Arrow string array.

    Integers become their decimal text; a null (None, NaN, Arrow null) is an error naming ``column`` and the row
    (counted from 1), as is anything that is not a one-dimensional sequence of strings or integers.
    """
    if isinstance(values, LazyIds):
        values = values.arrow
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        t = values.type
        if pa.types.is_dictionary(t):
            values = values.cast(t.value_type)
            t = values.type
        if pa.types.is_integer(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t):
            _refuse_nulls(values, column, where)
            try:
                values = values.cast(pa.string())
            except pa.ArrowInvalid:
                raise InputError(f"{where}: {column} is not valid UTF-8 text") from None
        elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise InputError(f"{where}: {column} must hold strings, got Arrow type {t}")
        _refuse_nulls(values, column, where)
        return values
    try:
        arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object if
                                                                        isinstance(values, (list, tuple)) else None)
    except (ValueError, TypeError):
        raise InputError(f"{where}: {column} must be a flat sequence of ids") from None
    if arr.ndim != 1:
        raise InputError(f"{where}: {column} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return pa.array([], type=pa.string())
    if arr.dtype.kind in "iu":
        return pa.array(arr.astype(str).tolist(), type=pa.string())
    if arr.dtype.kind == "U":
        return pa.array(arr.tolist(), type=pa.string())
    if arr.dtype.kind == "O":
        try:
            out = pa.array(arr, type=pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError):
            return _from_objects(arr, column, where)
        _refuse_nulls(out, column, where)
        return out
    raise InputError(f"{where}: {column} must hold strings or integers, got {arr.dtype}")


def encode(values: Any, sort: bool, column: str = "id", where: str = "input") -> tuple[np.ndarray, LazyIds]:
    """Dictionary-encode ids: (codes int64, table of unique ids). ``sort`` orders the table by UTF-8 bytes."""
    arr = as_str_array(values, column, where)
    n = len(arr)
    if sort and n > 1000:
        got = fastio.encode_sorted(arr)  # integer keys sorted with numpy (see mmfuse.runs.fastio)
        if got is not None:
            return got[0], LazyIds(got[1])
    if sort and n > 50_000 and len(arr.slice(0, 20_000).unique()) > 5_000:
        # Mostly-distinct ids (doc ids of a large run): one sort of the column beats hashing it and then
        # sorting the (almost as large) dictionary.
        order = pc.sort_indices(arr).to_numpy().astype(np.int64)
        s = arr.take(order)
        new = np.empty(n, dtype=bool)
        new[0] = True
        new[1:] = pc.not_equal(s.slice(1), s.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        codes = np.empty(n, dtype=np.int64)
        codes[order] = np.cumsum(new) - 1
        return codes, LazyIds(s.filter(pa.array(new)))
    enc = arr.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    table = enc.dictionary
    if sort and len(table) > 1:
        order = pc.sort_indices(table).to_numpy().astype(np.int64)  # uint64 would wrap under negation
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        codes = rank[codes]
        table = table.take(order)
    return codes, LazyIds(table)


def encode_together(arrays: list[pa.Array]) -> tuple[list[np.ndarray], pa.Array]:
    """Dictionary-encode several null-free string arrays at once: per-array int64 codes into ONE byte-sorted table."""
    enc = pa.concat_arrays(arrays).dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = pc.sort_indices(enc.dictionary).to_numpy().astype(np.int64)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    codes = rank[codes]
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])], enc.dictionary.take(pa.array(order))


_DIGITS = re.compile(r"([0-9]+)")


def natural_key(s: str) -> tuple:
    """Sort key of the natural order: runs of ASCII digits compare as numbers (``q2`` < ``q10``), the rest by code
    point (= UTF-8 byte order); ids equal that way (``q01``, ``q1``) fall back to plain string order."""
    parts = _DIGITS.split(s)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), s


def natural_order(ids) -> np.ndarray:
    """Positions that put ``ids`` in natural order (stable)."""
    keys = [natural_key(x) for x in ids]
    return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
