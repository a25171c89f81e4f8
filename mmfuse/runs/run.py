"""Run and Qrels: the columnar ranked-list model every stage exchanges, with all its readers and writers.

A Run holds many queries' ranked lists as flat arrays: ``offsets`` (per-query slices), ``doc_idx`` (indices into a
sorted doc-id table) and float64 ``scores``. Because the doc table is sorted, "doc id descending" is "doc index
descending", so trec_eval's ordering (score desc, then doc id desc) is one ``np.lexsort`` over integer/float keys.

Text formats are parsed with pyarrow's CSV reader (C++) on a whitespace-normalised buffer; only when that fast path
fails do we re-read line by line in Python, which is where line-numbered error messages come from.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ParameterError, unknown
from mmfuse.utils.files import atomic_path, atomic_write

from .fastio import kernels

__all__ = ["Run", "Qrels", "FORMATS"]

FORMATS = ("trec", "parquet", "json")
_EXT = {
    ".trec": "trec", ".run": "trec", ".txt": "trec", ".tsv": "trec", ".res": "trec", ".qrels": "trec",
    ".parquet": "parquet", ".pq": "parquet", ".json": "json",
}
_DUP_MODES = ("error", "max", "first")


# ----------------------------------------------------------------------------------------------------------------
# id tables
# ----------------------------------------------------------------------------------------------------------------

def _as_str_array(values: Any) -> Any:
    """Return a pyarrow string array for ids given as a list, numpy array or pyarrow array."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        return values if pa.types.is_string(values.type) or pa.types.is_large_string(values.type) else values.cast(pa.string())
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        arr = arr.astype(str)
    elif arr.dtype.kind == "O" and arr.size and not isinstance(arr.flat[0], str):
        arr = np.array([str(v) for v in arr.tolist()], dtype=object)
    return pa.array(arr.tolist() if arr.dtype.kind == "U" else arr, type=pa.string())


def _encode(values: Any, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode ids: (codes int64, table of unique ids). ``sort`` orders the table by UTF-8 bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _as_str_array(values)
    n = len(arr)
    if sort and n > 1000:
        from .fastio import encode_sorted

        got = encode_sorted(arr)  # integer keys sorted with numpy (see mmfuse.runs.fastio)
        if got is not None:
            return got[0], LazyIds(got[1])
    if sort and n > 50_000 and arr.null_count == 0 and len(arr.slice(0, 20_000).unique()) > 5_000:
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


def _ids(table) -> np.ndarray:
    return table.materialize() if isinstance(table, LazyIds) else np.asarray(table, dtype=object)


def _offsets_from_codes(qcodes_sorted: np.ndarray, n_queries: int) -> np.ndarray:
    counts = np.bincount(qcodes_sorted, minlength=n_queries)
    offsets = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _read_json_object(path: Path, shape: str) -> dict:
    """Load a JSON file that must hold one object; errors name the file (and line for bad JSON)."""
    _check_readable(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {shape}")
    return data


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise unknown("format", fmt, FORMATS)
        return fmt
    return _EXT.get(path.suffix.lower(), "trec")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


# ----------------------------------------------------------------------------------------------------------------
# whitespace-separated text tables (TREC runs and qrels)
# ----------------------------------------------------------------------------------------------------------------

_WS = re.compile(rb"[ \t\r\f\v]+")
_EDGE = re.compile(rb"(?m)^ | $")
_NONSPACE = re.compile(rb"\S")


def _read_columns(path: Path, kinds: Sequence[str], wanted: Sequence[str],
                  group: str | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """Fast path: parse a whitespace-separated file into pyarrow columns; returns (columns, None) or raises.

    ``kinds`` names the columns; the last one may be optional (a TREC run's tag). Numeric columns come back parsed
    ("score" as float64, "rel" as int64). Column ``group`` (one of ``wanted``) may come back already encoded as
    (codes, first-seen table). Raises ``_SlowPath`` when the file needs the line-by-line reader (bad column
    counts, bad numbers, invalid UTF-8), which then produces the exact error.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from . import fastio as _fastio

    names = [k.rstrip("?") for k in kinds]
    if _fastio.kernels() is not None:
        data = _map_file(path)
        n_max = len(kinds)
        n_min = n_max - 1 if kinds[-1].endswith("?") else n_max
        # the score column is parsed to float64 while tokenizing; other numeric columns go through Arrow's cast
        copied = [w for w in wanted if w not in (group, "score")]
        got = _fastio.tokenize_columns(data, n_min, n_max, tuple(names.index(w) for w in copied),
                                       names.index("rank") if "rank" in names else -1,
                                       names.index("tag") if "tag" in names else -1,
                                       names.index(group) if group else -1,
                                       names.index("score") if "score" in wanted else -1)
        if got is None:
            raise _SlowPath
        arrays, encoded, floats, tag = got
        if encoded is None and floats is None and not arrays:
            raise InputError(f"{path}: file is empty")
        out: dict[str, Any] = dict(zip(copied, arrays))
        if group:
            out[group] = encoded
        if floats is not None:
            out["score"] = pa.array(floats)
        if "rel" in out:
            try:
                out["rel"] = pc.cast(out["rel"], pa.int64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise _SlowPath from None
        if tag is not None:
            out["tag"] = tag
        return out, None
    return _read_columns_csv(path.read_bytes(), path, kinds, wanted)


def _map_file(path: Path):
    """The file's bytes, memory-mapped read-only when it is large (no copy of a file already in the page cache)."""
    import mmap

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 1 << 20:
            return fh.read()
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _read_columns_csv(data: bytes, path: Path, kinds: Sequence[str], wanted: Sequence[str]):
    """``_read_columns`` through pyarrow's CSV reader (used when numba is unavailable)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if _NONSPACE.search(data) is None:
        raise InputError(f"{path}: file is empty")
    if b"\t" in data or b"  " in data or b"\r" in data or data[:1] in (b" ", b"\n") or b"\n " in data or b" \n" in data:
        data = _EDGE.sub(b"", _WS.sub(b" ", data))
    start = 0  # index arithmetic, not lstrip/split: those copy the whole file
    while data[start:start + 1] == b"\n":
        start += 1
    end = data.find(b"\n", start)
    first = data[start:end if end >= 0 else len(data)]
    n = len(first.split(b" "))
    names = list(kinds[:n])
    if n not in (len(kinds), len(kinds) - 1) or (n == len(kinds) - 1 and not kinds[-1].endswith("?")):
        raise _SlowPath
    names = [k.rstrip("?") for k in names]
    keep = [k for k in names if k in wanted]
    if "rank" in names:  # validated (malformed lines must fail), not kept: order comes from the scores
        keep.append("rank")
    types = {name: (pa.float64() if name == "score" else pa.int64() if name == "rank" else pa.string())
             for name in keep}
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 26),
            parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False, double_quote=False),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=keep, strings_can_be_null=False,
                                                null_values=[], quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        raise _SlowPath from None
    cols = {name: table.column(name) for name in keep}
    if "rel" in cols:
        try:
            cols["rel"] = pa.array(cols["rel"].to_numpy(zero_copy_only=False).astype(np.int64))
        except ValueError:
            raise _SlowPath from None
    if "tag" in names:
        cols["tag"] = first.split(b" ")[names.index("tag")].decode("utf-8", "replace")
    return cols, None


class _SlowPath(Exception):
    pass


def _read_columns_slow(path: Path, kinds: Sequence[str], numeric: Mapping[str, type]) -> tuple[dict[str, list], np.ndarray]:
    """Line-by-line reader: exact error messages with file and line number. Returns columns and line numbers."""
    n_req = sum(1 for k in kinds if not k.endswith("?"))
    names = [k.rstrip("?") for k in kinds]
    cols: dict[str, list] = {name: [] for name in names}
    lines: list[int] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            parts = raw.split()
            if not parts:
                continue
            if not (n_req <= len(parts) <= len(kinds)):
                want = f"{n_req}" if n_req == len(kinds) else f"{n_req} or {len(kinds)}"
                raise InputError(f"{path}:{lineno}: expected {want} columns ({' '.join(names)}), got {len(parts)}: "
                                 f"{raw.decode('utf-8', 'replace').strip()[:80]!r}")
            for name, part in zip(names, parts):
                try:
                    text = part.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{lineno}: column {name!r} is not valid UTF-8") from None
                conv = numeric.get(name)
                if conv is not None:
                    try:
                        val = conv(text)
                    except ValueError:
                        raise InputError(f"{path}:{lineno}: {name} {text!r} is not a number") from None
                    if conv is float and math.isnan(val):
                        raise InputError(f"{path}:{lineno}: {name} is NaN")
                    cols[name].append(val)
                else:
                    cols[name].append(text)
            for name in names[len(parts):]:
                cols[name].append("")
            lines.append(lineno)
    if not lines:
        raise InputError(f"{path}: file is empty")
    return cols, np.asarray(lines, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# shared base
# ----------------------------------------------------------------------------------------------------------------

class _Ranked:
    """Shared columnar layout of Run and Qrels: query table, sorted doc table, offsets, doc indices, values."""

    _value_name = "score"

    def __init__(self, query_ids, doc_ids, offsets, doc_idx, values, name: str = "run", evidence=None):
        self._query_ids = query_ids if isinstance(query_ids, LazyIds) else np.asarray(query_ids, dtype=object)
        self._doc_ids = doc_ids if isinstance(doc_ids, LazyIds) else np.asarray(doc_ids, dtype=object)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.doc_idx = np.asarray(doc_idx, dtype=np.int64)
        self._values = values
        self.name = name
        self.evidence = evidence or None

    @property
    def query_ids(self) -> np.ndarray:
        """Query id table (numpy object array of str)."""
        if isinstance(self._query_ids, LazyIds):
            return self._query_ids.materialize()
        return self._query_ids

    @property
    def doc_ids(self) -> np.ndarray:
        """Doc id table, sorted ascending (numpy object array of str)."""
        if isinstance(self._doc_ids, LazyIds):
            return self._doc_ids.materialize()
        return self._doc_ids

    # -- sizes and per-entry views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.doc_idx.size)

    @property
    def n_queries(self) -> int:
        return int(len(self._query_ids))

    def counts(self) -> np.ndarray:
        """Number of entries of each query."""
        return np.diff(self.offsets)

    def qidx(self) -> np.ndarray:
        """Query index of each entry."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.counts())

    def ranks(self) -> np.ndarray:
        """1-based rank of each entry within its query."""
        return np.arange(len(self), dtype=np.int64) - np.repeat(self.offsets[:-1], self.counts()) + 1

    def entry_query_ids(self) -> np.ndarray:
        return self.query_ids[self.qidx()]

    def entry_doc_ids(self) -> np.ndarray:
        return self.doc_ids[self.doc_idx]

    def _slice(self, qid: str) -> slice:
        hits = np.flatnonzero(self.query_ids == qid)
        if hits.size == 0:
            raise KeyError(qid)
        i = int(hits[0])
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def __contains__(self, qid: object) -> bool:
        return bool(np.any(self.query_ids == qid))

    def keys(self) -> list[str]:
        return self.query_ids.tolist()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, queries={self.n_queries}, entries={len(self)}, docs={self.doc_ids.size})"

    def _take(self, keep: np.ndarray) -> dict[str, Any]:
        """Arrays restricted to a boolean entry mask, keeping every query (possibly empty)."""
        qidx = self.qidx()[keep]
        offsets = _offsets_from_codes(qidx, self.n_queries)
        ev = {k: v[keep] for k, v in self.evidence.items()} if self.evidence else None
        return dict(offsets=offsets, doc_idx=self.doc_idx[keep], values=self._values[keep], evidence=ev)


def _is_ordered(qcodes: np.ndarray, scores: np.ndarray, dcodes: np.ndarray) -> bool:
    """True when entries are grouped by ascending query code, score desc, then doc code desc."""
    if qcodes.size < 2:
        return True
    dq = np.diff(qcodes)
    if (dq < 0).any():
        return False
    same_q = dq == 0
    ds = np.diff(scores)
    if (same_q & (ds > 0)).any():
        return False
    tie = same_q & (ds == 0)
    return not (tie & (np.diff(dcodes) >= 0)).any()


def _check_dup_mode(on_duplicate: str) -> None:
    if on_duplicate not in _DUP_MODES:
        raise unknown("on_duplicate mode", on_duplicate, _DUP_MODES)


def _dedupe(qcodes, dcodes, values, on_duplicate, describe) -> np.ndarray | None:
    """Return a keep-mask when (query, doc) pairs repeat, raising for on_duplicate='error'.

    'first' keeps the earliest entry of each pair; 'max' the highest-scoring one (earliest among equals).
    """
    n = qcodes.size
    if n < 2:
        return None
    import pyarrow as pa

    n_docs = int(dcodes.max()) + 1
    k = kernels()
    found = k["grouped_has_dup"](qcodes, dcodes, int(qcodes.max()) + 1, n_docs) if k is not None else -1
    if found == 0:  # entries grouped by query (the usual file layout) and no pair repeats: one linear pass
        return None
    # A hash-based distinct count is ~10x cheaper than the sort below, which only runs when pairs repeat.
    if found < 0 and len(pa.array(qcodes * n_docs + dcodes).unique()) == n:
        return None
    order = np.lexsort((dcodes, qcodes))  # stable: equal pairs keep input order
    qs, ds = qcodes[order], dcodes[order]
    same = (qs[1:] == qs[:-1]) & (ds[1:] == ds[:-1])
    if not same.any():
        return None
    if on_duplicate == "error":
        j = int(np.flatnonzero(same)[0])
        raise InputError(describe(int(order[j]), int(order[j + 1])))
    if on_duplicate == "max":
        order = np.lexsort((-values, dcodes, qcodes))
    head = np.concatenate(([True], ~same))
    keep = np.zeros(n, dtype=bool)
    keep[order[head]] = True
    return keep


# ----------------------------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------------------------

class Run(_Ranked):
    """Ranked lists of many queries, stored columnar; entries ordered by score desc, then doc id desc."""

    @property
    def scores(self) -> np.ndarray:
        return self._values

    @scores.setter
    def scores(self, value: np.ndarray) -> None:
        self._values = value

    def __init__(self, query_ids, doc_ids, offsets, doc_idx, scores, name: str = "run", evidence=None):
        super().__init__(query_ids, doc_ids, offsets, doc_idx, np.asarray(scores, dtype=np.float64), name, evidence)

    # -- constructors ---------------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, query_ids, doc_ids, scores, *, name: str = "run", on_duplicate: str = "error",
                    evidence: Mapping[str, Any] | None = None, queries: Sequence[str] | None = None,
                    source: str | None = None, _lines: np.ndarray | None = None) -> Run:
        """Build a Run from per-entry arrays in any order.

        ``queries`` fixes the query table (and its order), which may include queries with no entries.
        ``on_duplicate``: 'error' (default), 'max' (keep the highest score) or 'first' (keep the first seen).
        """
        _check_dup_mode(on_duplicate)
        where = source or name
        scores = np.asarray(scores, dtype=np.float64)
        listed = np.asarray(list(queries) if queries is not None else [], dtype=object)
        if len(listed):
            # Encoding the listed queries first fixes the table order; any id past them was not listed.
            codes, qtable = _encode(np.concatenate([listed, np.asarray(query_ids, dtype=object)]), sort=False)
            if len(qtable) != len(listed):
                extra = _ids(qtable)[len(listed):][:3].tolist()
                raise InputError(f"{where}: entries for queries not listed in `queries`: {extra}")
            qcodes = codes[len(listed):]
        else:
            qcodes, qtable = _encode(query_ids, sort=False)
        dcodes, dtable = _encode(doc_ids, sort=True)
        return cls._from_encoded(qcodes, qtable, dcodes, dtable, scores, name=name, on_duplicate=on_duplicate,
                                 evidence=evidence, where=where, _lines=_lines)

    @classmethod
    def _from_encoded(cls, qcodes, qtable, dcodes, dtable, scores, *, name: str, on_duplicate: str, evidence,
                      where: str, _lines: np.ndarray | None) -> Run:
        """from_arrays after id encoding: codes into a query table (first-seen order) and a sorted doc table."""
        scores = np.asarray(scores, dtype=np.float64)
        if not (qcodes.size == dcodes.size == scores.size):
            raise InputError(f"{where}: query_ids, doc_ids and scores differ in length "
                             f"({qcodes.size}, {dcodes.size}, {scores.size})")
        if evidence:
            evidence = {k: np.asarray(v) for k, v in evidence.items()}
            for k, v in evidence.items():
                if v.shape[0] != scores.size:
                    raise InputError(f"{where}: evidence column {k!r} has {v.shape[0]} rows, expected {scores.size}")

        def at(i: int) -> str:
            return f"{where}:{int(_lines[i])}" if _lines is not None else where

        bad = np.isnan(scores)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{at(i)}: NaN score for query {qtable[qcodes[i]]!r}, doc {dtable[dcodes[i]]!r}")
        k = kernels()
        if k is not None and scores.size:
            # the usual file layout (grouped, ordered, no repeated pair) in one compiled pass
            offsets = np.empty(len(qtable) + 1, dtype=np.int64)
            state = k["check_grouped"](np.asarray(qcodes, dtype=np.int64), scores, np.asarray(dcodes, dtype=np.int64),
                                       len(qtable), len(dtable), offsets)
            if state == 0:
                return cls(qtable, dtable, offsets, dcodes, scores, name=name, evidence=evidence)
        keep = _dedupe(qcodes, dcodes, scores, on_duplicate,
                       lambda i, j: f"{at(j)}: duplicate (query, doc) pair ({qtable[qcodes[j]]!r}, {dtable[dcodes[j]]!r})"
                                    + (f", first at line {int(_lines[i])}" if _lines is not None else "")
                                    + "; use on_duplicate='max' or 'first' (CLI: --on-duplicate)")
        if keep is not None:
            qcodes, dcodes, scores = qcodes[keep], dcodes[keep], scores[keep]
            if evidence:
                evidence = {k: v[keep] for k, v in evidence.items()}
        if _is_ordered(qcodes, scores, dcodes):  # files written by ranking tools usually are
            return cls(qtable, dtable, _offsets_from_codes(qcodes, len(qtable)), dcodes, scores, name=name, evidence=evidence)
        order = np.lexsort((-dcodes, -scores, qcodes))
        ev = {k: v[order] for k, v in evidence.items()} if evidence else None
        return cls(qtable, dtable, _offsets_from_codes(qcodes[order], len(qtable)), dcodes[order], scores[order],
                   name=name, evidence=ev)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]], name: str = "run", source: str | None = None) -> Run:
        """From ``{query_id: {doc_id: score}}``; queries with an empty dict are kept (with no entries)."""
        qids, dids, scores = [], [], []
        for q, docs in data.items():
            if not isinstance(docs, Mapping):
                raise InputError(f"{source or name}: query {q!r} must map doc ids to scores, got {type(docs).__name__}")
            for d, s in docs.items():
                qids.append(str(q))
                dids.append(str(d))
                try:
                    scores.append(float(s))
                except (TypeError, ValueError):
                    raise InputError(f"{source or name}: score {s!r} of query {q!r}, doc {d!r} is not a number") from None
        return cls.from_arrays(np.asarray(qids, dtype=object), np.asarray(dids, dtype=object), np.asarray(scores, dtype=np.float64),
                               name=name, queries=[str(q) for q in data], source=source)

    @classmethod
    def from_matrix(cls, scores, query_ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None,
                    depth: int | None = None, threshold: float | None = None, name: str = "run") -> Run:
        """From a dense [queries x docs] score matrix.

        ``depth`` keeps each query's top ``depth`` (ties at the cut resolved like trec_eval: higher doc id first);
        ``threshold`` keeps only scores strictly above it (e.g. ``threshold=0`` drops the zero fill of a retriever
        that scored only its top-k). Both may be combined.
        """
        mat = np.asarray(scores, dtype=np.float64)
        if mat.ndim != 2:
            raise InputError(f"{name}: score matrix must be 2-D, got shape {mat.shape}")
        nq, nd = mat.shape
        query_ids = np.asarray([str(i) for i in range(nq)] if query_ids is None else [str(q) for q in query_ids], dtype=object)
        doc_ids = np.asarray([str(i) for i in range(nd)] if doc_ids is None else [str(d) for d in doc_ids], dtype=object)
        if query_ids.size != nq or doc_ids.size != nd:
            raise InputError(f"{name}: matrix is {nq}x{nd} but got {query_ids.size} query ids and {doc_ids.size} doc ids")
        if np.isnan(mat).any():
            r, c = map(int, np.argwhere(np.isnan(mat))[0])
            raise InputError(f"{name}: NaN score at row {r}, column {c}")
        if depth is not None and depth < 1:
            raise ParameterError(f"depth must be >= 1, got {depth}")
        dcodes, dtable = _encode(doc_ids, sort=True)
        if len(dtable) != nd:
            raise InputError(f"{name}: doc ids are not unique")
        if len(set(query_ids.tolist())) != nq:
            raise InputError(f"{name}: query ids are not unique")
        mask = np.ones(mat.shape, dtype=bool) if threshold is None else mat > threshold
        if depth is not None and depth < nd:
            kth = np.partition(np.where(mask, mat, -np.inf), nd - depth, axis=1)[:, nd - depth]
            mask &= mat >= kth[:, None]  # keeps every tie at the cut; trimmed below after ordering
        rows, cols = np.nonzero(mask)
        vals = mat[rows, cols]
        dc = dcodes[cols]
        order = np.lexsort((-dc, -vals, rows))
        rows, dc, vals = rows[order], dc[order], vals[order]
        run = cls(query_ids, dtable, _offsets_from_codes(rows, nq), dc, vals, name=name)
        return run.cut(depth) if depth is not None else run

    @classmethod
    def from_pandas(cls, df, name: str = "run", on_duplicate: str = "error") -> Run:
        """From a DataFrame with query/doc/score columns (``query_id``/``q_id``, ``doc_id``, ``score``)."""
        q = "query_id" if "query_id" in df.columns else "q_id"
        for col in (q, "doc_id", "score"):
            if col not in df.columns:
                raise InputError(f"{name}: DataFrame lacks column {col!r} (has {list(df.columns)})")
        extra = [c for c in df.columns if c not in (q, "doc_id", "score", "rank")]
        ev = {c: df[c].to_numpy() for c in extra} or None
        return cls.from_arrays(df[q].astype(str).to_numpy(dtype=object), df["doc_id"].astype(str).to_numpy(dtype=object),
                               df["score"].to_numpy(dtype=np.float64), name=name, on_duplicate=on_duplicate, evidence=ev)

    @classmethod
    def from_ranx(cls, run) -> Run:
        """From a ``ranx.Run``."""
        return cls.from_dict(run.to_dict(), name=getattr(run, "name", None) or "run")

    @classmethod
    def from_trec(cls, path: str | os.PathLike, name: str | None = None, on_duplicate: str = "error") -> Run:
        """Read a TREC run: ``qid Q0 docid rank score [tag]`` per line, any whitespace between columns.

        The file's rank column is ignored (order comes from scores, as in trec_eval); the name defaults to the tag.
        """
        path = Path(path)
        _check_readable(path)
        _check_dup_mode(on_duplicate)
        kinds = ("qid", "q0", "doc", "rank", "score", "tag?")
        try:
            cols, lines = _read_columns(path, kinds, ("qid", "doc", "score"), group="qid")
            q, d, s = cols["qid"], cols["doc"], cols["score"].to_numpy()
            tag = cols.get("tag")
            if np.isnan(s).any():
                raise _SlowPath
        except _SlowPath:
            c, lines = _read_columns_slow(path, kinds, {"score": float, "rank": int})
            q, d, s = np.asarray(c["qid"], dtype=object), np.asarray(c["doc"], dtype=object), np.asarray(c["score"], dtype=np.float64)
            tag = c["tag"][0] or None
        try:
            if isinstance(q, tuple):  # the compiled reader encoded the query column already (first-seen order)
                dcodes, dtable = _encode(d, sort=True)
                return cls._from_encoded(q[0], q[1], dcodes, dtable, s, name=name or tag or path.stem,
                                         on_duplicate=on_duplicate, evidence=None, where=str(path), _lines=lines)
            return cls.from_arrays(q, d, s, name=name or tag or path.stem, on_duplicate=on_duplicate, source=str(path), _lines=lines)
        except InputError:
            if lines is None:  # re-read to report the line number
                c, lines = _read_columns_slow(path, kinds, {"score": float, "rank": int})
                return cls.from_arrays(np.asarray(c["qid"], dtype=object), np.asarray(c["doc"], dtype=object),
                                       np.asarray(c["score"], dtype=np.float64), name=name or tag or path.stem,
                                       on_duplicate=on_duplicate, source=str(path), _lines=lines)
            raise

    @classmethod
    def from_parquet(cls, path: str | os.PathLike, name: str | None = None, on_duplicate: str = "error") -> Run:
        """Read a Parquet run with columns ``query_id, doc_id, score`` (``rank`` optional; others become evidence)."""
        import pyarrow.parquet as pq

        path = Path(path)
        _check_readable(path)
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise InputError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        cols = table.column_names
        q = "query_id" if "query_id" in cols else "q_id" if "q_id" in cols else None
        if q is None or "doc_id" not in cols or "score" not in cols:
            raise InputError(f"{path}: Parquet run needs columns query_id, doc_id, score (has {cols})")
        try:
            scores = table.column("score").to_numpy().astype(np.float64)
        except Exception:
            raise InputError(f"{path}: column 'score' is not numeric") from None
        extra = [c for c in cols if c not in (q, "doc_id", "score", "rank")]
        ev = {c: table.column(c).to_numpy() for c in extra} or None
        return cls.from_arrays(table.column(q), table.column("doc_id"), scores, name=name or path.stem,
                               on_duplicate=on_duplicate, evidence=ev, source=str(path))

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> Run:
        """Read ``{query_id: {doc_id: score}}`` JSON."""
        path = Path(path)
        return cls.from_dict(_read_json_object(path, "{query_id: {doc_id: score}}"), name=name or path.stem,
                             source=str(path))

    @classmethod
    def read(cls, path: str | os.PathLike, format: str | None = None, name: str | None = None,
             on_duplicate: str = "error") -> Run:
        """Read a run, choosing the format from the extension (.parquet, .json, anything else TREC)."""
        path = Path(path)
        fmt = _format_of(path, format)
        if fmt == "parquet":
            run = cls.from_parquet(path, name=name, on_duplicate=on_duplicate)
        elif fmt == "json":
            run = cls.from_json(path, name=name)
        else:
            run = cls.from_trec(path, name=name, on_duplicate=on_duplicate)
        if len(run) == 0:
            raise InputError(f"{path}: run has no entries")
        return run

    # -- writers --------------------------------------------------------------------------------------------------
    def to_pandas(self):
        import pandas as pd

        df = pd.DataFrame({"query_id": self.entry_query_ids(), "doc_id": self.entry_doc_ids(),
                           "score": self.scores, "rank": self.ranks()})
        for k, v in (self.evidence or {}).items():
            df[k] = v
        return df

    def to_arrow(self):
        import pyarrow as pa

        cols = {"query_id": pa.array(self.entry_query_ids(), type=pa.string()),
                "doc_id": pa.array(self.entry_doc_ids(), type=pa.string()),
                "score": pa.array(self.scores), "rank": pa.array(self.ranks())}
        for k, v in (self.evidence or {}).items():
            cols[k] = pa.array(v)
        return pa.table(cols)

    def to_dict(self) -> dict[str, dict[str, float]]:
        docs = self.entry_doc_ids().tolist()
        scores = self.scores.tolist()
        return {q: dict(zip(docs[a:b], scores[a:b])) for q, a, b in
                zip(self.query_ids.tolist(), self.offsets[:-1].tolist(), self.offsets[1:].tolist())}

    def to_ranx(self):
        import ranx

        return ranx.Run({q: d for q, d in self.to_dict().items() if d}, name=self.name)

    def to_trec(self, path: str | os.PathLike, tag: str | None = None) -> None:
        """Write ``qid Q0 doc rank score tag`` lines atomically (scores in shortest round-trip form)."""
        import pyarrow as pa
        import pyarrow.compute  # noqa: F401  (pa.compute)
        import pyarrow.csv as pcsv

        tag = tag or self.name or "mmfuse"
        if any(ch.isspace() for ch in tag):
            raise ParameterError(f"run tag {tag!r} must not contain whitespace")
        n = len(self)
        table = pa.table({
            "q": pa.array(self.entry_query_ids(), type=pa.string()),
            "q0": pa.array(np.full(n, "Q0", dtype=object), type=pa.string()),
            "d": pa.array(self.entry_doc_ids(), type=pa.string()),
            "r": pa.array(self.ranks()),
            "s": pa.compute.cast(pa.array(self.scores), pa.string()),  # shortest round-trip form
            "t": pa.array(np.full(n, tag, dtype=object), type=pa.string()),
        })
        with atomic_path(path) as tmp:
            pcsv.write_csv(table, tmp, write_options=pcsv.WriteOptions(include_header=False, delimiter=" ",
                                                                       quoting_style="none"))

    def to_parquet(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(self.to_arrow(), tmp)

    def to_json(self, path: str | os.PathLike) -> None:
        with atomic_write(path) as fh:
            json.dump(self.to_dict(), fh)

    def write(self, path: str | os.PathLike, format: str | None = None, tag: str | None = None) -> None:
        """Write atomically in the format named by ``format`` or the extension (TREC by default)."""
        path = Path(path)
        fmt = _format_of(path, format)
        if fmt == "parquet":
            self.to_parquet(path)
        elif fmt == "json":
            self.to_json(path)
        else:
            self.to_trec(path, tag=tag)

    # -- transformations ------------------------------------------------------------------------------------------
    def cut(self, depth: int | None) -> Run:
        """Keep the top ``depth`` entries of each query."""
        if depth is None or (len(self) and self.counts().max(initial=0) <= depth):
            return self
        if depth < 1:
            raise ParameterError(f"depth must be >= 1, got {depth}")
        parts = self._take(self.ranks() <= depth)
        return Run(self.query_ids, self.doc_ids, parts["offsets"], parts["doc_idx"], parts["values"], self.name, parts["evidence"])

    def with_name(self, name: str) -> Run:
        return Run(self.query_ids, self.doc_ids, self.offsets, self.doc_idx, self.scores, name, self.evidence)

    def subset(self, query_ids: Iterable[str]) -> Run:
        """The run restricted to the given queries, in the given order (unknown ids raise KeyError)."""
        query_ids = [str(q) for q in query_ids]
        pos = {q: i for i, q in enumerate(self.query_ids.tolist())}
        idx = np.asarray([pos[q] for q in query_ids], dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        counts = ends - starts
        take = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(counts.sum())
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        ev = {k: v[take] for k, v in self.evidence.items()} if self.evidence else None
        return Run(np.asarray(query_ids, dtype=object), self.doc_ids, offsets, self.doc_idx[take], self.scores[take], self.name, ev)

    def query(self, qid: str) -> list[tuple[str, float]]:
        """The ranked (doc id, score) list of one query."""
        s = self._slice(str(qid))
        return list(zip(self.doc_ids[self.doc_idx[s]].tolist(), self.scores[s].tolist()))

    def __getitem__(self, qid: str) -> dict[str, float]:
        return dict(self.query(qid))

    def equals(self, other: Run, rtol: float = 0.0) -> bool:
        """Same queries, same ranked doc ids, scores equal within ``rtol``."""
        return (np.array_equal(self.query_ids, other.query_ids) and np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.entry_doc_ids(), other.entry_doc_ids())
                and np.allclose(self.scores, other.scores, rtol=rtol, atol=0.0))


# ----------------------------------------------------------------------------------------------------------------
# Qrels
# ----------------------------------------------------------------------------------------------------------------

class Qrels(_Ranked):
    """Graded relevance judgements: per query, doc ids (ascending) with integer relevance."""

    _value_name = "relevance"

    @property
    def relevance(self) -> np.ndarray:
        return self._values

    def __init__(self, query_ids, doc_ids, offsets, doc_idx, relevance, name: str = "qrels", evidence=None):
        super().__init__(query_ids, doc_ids, offsets, doc_idx, np.asarray(relevance, dtype=np.int64), name, evidence)

    @classmethod
    def from_arrays(cls, query_ids, doc_ids, relevance, *, name: str = "qrels", on_duplicate: str = "error",
                    source: str | None = None, _lines: np.ndarray | None = None) -> Qrels:
        _check_dup_mode(on_duplicate)
        where = source or name
        qcodes, qtable = _encode(query_ids, sort=False)
        dcodes, dtable = _encode(doc_ids, sort=True)
        rel = np.asarray(relevance)
        if rel.dtype.kind == "f":
            if np.isnan(rel).any() or (rel != np.round(rel)).any():
                raise InputError(f"{where}: relevance must be integers")
        rel = rel.astype(np.int64)
        if not (qcodes.size == dcodes.size == rel.size):
            raise InputError(f"{where}: query_ids, doc_ids and relevance differ in length")

        def at(i: int) -> str:
            return f"{where}:{int(_lines[i])}" if _lines is not None else where

        keep = _dedupe(qcodes, dcodes, rel.astype(np.float64), on_duplicate,
                       lambda i, j: f"{at(j)}: duplicate judgement for ({qtable[qcodes[j]]!r}, {dtable[dcodes[j]]!r})")
        if keep is not None:
            qcodes, dcodes, rel = qcodes[keep], dcodes[keep], rel[keep]
        order = np.lexsort((dcodes, qcodes))
        return cls(qtable, dtable, _offsets_from_codes(qcodes[order], len(qtable)), dcodes[order], rel[order], name=name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, int]], name: str = "qrels") -> Qrels:
        qids, dids, rels = [], [], []
        for q, docs in data.items():
            for d, r in docs.items():
                qids.append(str(q))
                dids.append(str(d))
                rels.append(int(r))
        return cls.from_arrays(np.asarray(qids, dtype=object), np.asarray(dids, dtype=object), np.asarray(rels, dtype=np.int64), name=name)

    @classmethod
    def from_ranx(cls, qrels) -> Qrels:
        return cls.from_dict(qrels.to_dict(), name=getattr(qrels, "name", None) or "qrels")

    @classmethod
    def from_pandas(cls, df, name: str = "qrels") -> Qrels:
        q = "query_id" if "query_id" in df.columns else "q_id"
        rel = "relevance" if "relevance" in df.columns else "score"
        return cls.from_arrays(df[q].astype(str).to_numpy(dtype=object), df["doc_id"].astype(str).to_numpy(dtype=object),
                               df[rel].to_numpy(), name=name)

    @classmethod
    def from_trec(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        """Read TREC qrels ``qid iter docid rel``; the iteration column is ignored (may be '0', 'Q0', '1.5')."""
        path = Path(path)
        _check_readable(path)
        kinds = ("qid", "iter", "doc", "rel")
        try:
            cols, lines = _read_columns(path, kinds, ("qid", "doc", "rel"))
            rel = np.asarray(cols["rel"].to_numpy(zero_copy_only=False), dtype=np.int64)
            q, d = cols["qid"], cols["doc"]
        except _SlowPath:
            c, lines = _read_columns_slow(path, kinds, {"rel": int})
            q, d, rel = np.asarray(c["qid"], dtype=object), np.asarray(c["doc"], dtype=object), np.asarray(c["rel"], dtype=np.int64)
        return cls.from_arrays(q, d, rel, name=name or path.stem, source=str(path), _lines=lines)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        import pyarrow.parquet as pq

        path = Path(path)
        _check_readable(path)
        try:
            table = pq.read_table(path)
        except Exception as e:
            raise InputError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
        cols = table.column_names
        q = "query_id" if "query_id" in cols else "q_id"
        rel = "relevance" if "relevance" in cols else "score"
        for c in (q, "doc_id", rel):
            if c not in cols:
                raise InputError(f"{path}: Parquet qrels need columns query_id, doc_id, relevance (has {cols})")
        return cls.from_arrays(table.column(q), table.column("doc_id"), table.column(rel).to_numpy(), name=name or path.stem, source=str(path))

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        path = Path(path)
        return cls.from_dict(_read_json_object(path, "{query_id: {doc_id: relevance}}"), name=name or path.stem)

    @classmethod
    def read(cls, path: str | os.PathLike, format: str | None = None, name: str | None = None) -> Qrels:
        path = Path(path)
        fmt = _format_of(path, format)
        q = (cls.from_parquet if fmt == "parquet" else cls.from_json if fmt == "json" else cls.from_trec)(path, name=name)
        if len(q) == 0:
            raise InputError(f"{path}: qrels have no judgements")
        return q

    def to_dict(self) -> dict[str, dict[str, int]]:
        docs = self.entry_doc_ids().tolist()
        rel = self.relevance.tolist()
        return {q: dict(zip(docs[a:b], rel[a:b])) for q, a, b in
                zip(self.query_ids.tolist(), self.offsets[:-1].tolist(), self.offsets[1:].tolist())}

    def to_ranx(self):
        import ranx

        return ranx.Qrels(self.to_dict(), name=self.name)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame({"query_id": self.entry_query_ids(), "doc_id": self.entry_doc_ids(), "relevance": self.relevance})

    def to_trec(self, path: str | os.PathLike) -> None:
        q, d, r = self.entry_query_ids().tolist(), self.entry_doc_ids().tolist(), self.relevance.tolist()
        with atomic_write(path) as fh:
            fh.write("".join(f"{a} 0 {b} {c}\n" for a, b, c in zip(q, d, r)))

    def write(self, path: str | os.PathLike, format: str | None = None) -> None:
        path = Path(path)
        fmt = _format_of(path, format)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with atomic_path(path) as tmp:
                pq.write_table(self.to_pandas().pipe(__import__("pyarrow").Table.from_pandas, preserve_index=False), tmp)
        elif fmt == "json":
            with atomic_write(path) as fh:
                json.dump(self.to_dict(), fh)
        else:
            self.to_trec(path)

    def __getitem__(self, qid: str) -> dict[str, int]:
        s = self._slice(str(qid))
        return dict(zip(self.doc_ids[self.doc_idx[s]].tolist(), self.relevance[s].tolist()))
