"""Run and Qrels: the columnar ranked-list model every stage exchanges, and its operations.

A Run holds many queries' ranked lists as flat arrays: ``offsets`` (per-query slices), ``doc_idx`` (indices into a
sorted doc-id table) and float64 ``scores``, with optional per-entry evidence columns. Because the doc table is
sorted, "doc id descending" is "doc index descending", so trec_eval's ordering (score desc, then doc id desc) is one
``np.lexsort`` over integer/float keys.

Callers never walk ``offsets``/``doc_idx`` by hand: ``Run.lists()``/``Run.list(qid)`` give per-query views
(:class:`RankedList`: query id, doc ids, scores, evidence) and ``Run.from_lists`` builds a Run back from them; the
operations (``cut``, ``subset``, ``ensure_queries``, ``empty``, ``in_natural_order``) keep the columnar layout.
Files are parsed by ``readers`` and written by ``writers``; every writer gets the queries in natural order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmfuse.errors import InputError, ParameterError, unknown

from . import fastio
from .ids import LazyIds, as_str_array, encode, ids_array, natural_order
from .readers import (
    TREC_QRELS,
    TREC_RUN,
    SlowPath,
    check_readable,
    format_of,
    read_json_object,
    read_parquet,
    read_text_columns,
    read_text_lines,
)
from .writers import arrow_ids, check_tag, check_trec_ids, trec_number, write_json, write_parquet, write_trec

__all__ = ["Run", "Qrels", "RankedList", "INPUT_ORDER"]

# Evidence column of runs read from TREC files: each entry's position in the file (see Run.input_ranks).
INPUT_ORDER = "input_order"

_DUP_MODES = ("error", "max", "first")


@dataclass(frozen=True)
class RankedList:
    """One query's ranked list, as ``Run.lists()`` gives it: doc ids (best first), their scores, and the evidence
    columns of those entries (``{}`` when the run has none)."""

    query_id: str
    doc_ids: np.ndarray
    scores: np.ndarray
    evidence: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.doc_ids)


def _offsets_from_codes(qcodes_sorted: np.ndarray, n_queries: int) -> np.ndarray:
    counts = np.bincount(qcodes_sorted, minlength=n_queries)
    offsets = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _numbers(values: Any, what: str, where: str, dtype=np.float64) -> np.ndarray:
    """A one-dimensional numeric array, or one clear error."""
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where}: {what} must be numbers") from None
    if arr.ndim != 1:
        raise InputError(f"{where}: {what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _evidence(evidence: Mapping[str, Any] | None, n: int, where: str) -> dict[str, np.ndarray] | None:
    if not evidence:
        return None
    if not isinstance(evidence, Mapping):
        raise InputError(f"{where}: evidence must map column names to arrays")
    out = {}
    for k, v in evidence.items():
        a = np.asarray(v)
        if a.ndim == 0 or a.shape[0] != n:
            raise InputError(f"{where}: evidence column {k!r} has {a.shape[0] if a.ndim else 0} rows, expected {n}")
        out[str(k)] = a
    return out


def _nested(data: Any, where: str, what: str) -> Iterator[tuple[Any, Any, Any]]:
    """(query id, doc id, value) of ``{query_id: {doc_id: value}}``; a non-mapping or a None id is one error."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a mapping {{query_id: {{doc_id: {what}}}}}, got {type(data).__name__}")
    for q, docs in data.items():
        if q is None:
            raise InputError(f"{where}: a query id is None")
        if not isinstance(docs, Mapping):
            raise InputError(f"{where}: query {q!r} must map doc ids to {what}, got {type(docs).__name__}")
        for d, v in docs.items():
            if d is None:
                raise InputError(f"{where}: query {q!r} has a doc id None")
            yield q, d, v


def _check_dup_mode(on_duplicate: str) -> None:
    if on_duplicate not in _DUP_MODES:
        raise unknown("on_duplicate mode", on_duplicate, _DUP_MODES)


def _parquet_numbers(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """A numeric Parquet column as numpy (integers stay integers: relevance grades past 2^53 must not round); nulls
    and non-numeric types are errors naming the column (and row)."""
    col = table.column(column)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise InputError(f"{path}: column {column!r} is {t}, not numeric")
    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise InputError(f"{path}: row {row + 1}: {column} is null")
    return col.cast(pa.float64()).to_numpy() if pa.types.is_decimal(t) else col.to_numpy()


def _parquet_evidence(table: pa.Table, names: list[str]) -> dict[str, np.ndarray] | None:
    out = {}
    for c in names:
        col = table.column(c)
        try:
            out[c] = col.to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # nested types
            out[c] = np.asarray(col.to_pylist(), dtype=object)
    return out or None


# ----------------------------------------------------------------------------------------------------------------
# shared base
# ----------------------------------------------------------------------------------------------------------------

class _Ranked:
    """Shared columnar layout of Run and Qrels: query table, sorted doc table, offsets, doc indices, values."""

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
        return ids_array(self._query_ids)

    @property
    def doc_ids(self) -> np.ndarray:
        """Doc id table, sorted ascending by UTF-8 bytes (numpy object array of str)."""
        return ids_array(self._doc_ids)

    def doc_table(self):
        """The doc id table as stored, without conversion: an Arrow string array when it is Arrow-backed (runs read
        from files, fusion output: no Python strings are made), else a numpy object array. Sorted by UTF-8 bytes;
        ``doc_idx`` indexes it. For code that merges tables (fusion); everyone else reads ``doc_ids``."""
        return self._doc_ids.arrow if isinstance(self._doc_ids, LazyIds) else self._doc_ids

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
        return (f"{type(self).__name__}(name={self.name!r}, queries={self.n_queries}, entries={len(self)}, "
                f"docs={len(self._doc_ids)})")

    def _take(self, keep: np.ndarray) -> dict[str, Any]:
        """Arrays restricted to a boolean entry mask, keeping every query (possibly empty)."""
        qidx = self.qidx()[keep]
        offsets = _offsets_from_codes(qidx, self.n_queries)
        ev = {k: v[keep] for k, v in self.evidence.items()} if self.evidence else None
        return dict(offsets=offsets, doc_idx=self.doc_idx[keep], values=self._values[keep], evidence=ev)

    # -- query-level operations ----------------------------------------------------------------------------------
    def _gather(self, src: np.ndarray, query_ids: np.ndarray):
        """A copy with query table ``query_ids`` whose query i holds this object's query ``src[i]`` (-1: none)."""
        ok = src >= 0
        if self.n_queries == 0:
            starts = counts = np.zeros(src.size, dtype=np.int64)
        else:
            at = np.maximum(src, 0)
            starts = np.where(ok, self.offsets[at], 0)
            counts = np.where(ok, self.offsets[at + 1] - starts, 0)
        offsets = np.zeros(src.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        take = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        ev = {k: np.asarray(v)[take] for k, v in self.evidence.items()} if self.evidence else None
        return type(self)(np.asarray(query_ids, dtype=object), self._doc_ids, offsets, self.doc_idx[take],
                          self._values[take], self.name, ev)

    def subset(self, query_ids: Iterable[str]):
        """Restricted to the given queries, in the given order (unknown ids raise KeyError)."""
        query_ids = [str(q) for q in query_ids]
        pos = {q: i for i, q in enumerate(self.query_ids.tolist())}
        return self._gather(np.asarray([pos[q] for q in query_ids], dtype=np.int64), query_ids)

    def ensure_queries(self, query_ids: Sequence[str] | np.ndarray):
        """Exactly ``query_ids``, in that order: queries it lacks get no entries, queries not listed are dropped."""
        qids = np.asarray(query_ids).astype(str).astype(object)
        pos = {q: i for i, q in enumerate(self.query_ids.tolist())}
        return self._gather(np.asarray([pos.get(q, -1) for q in qids.tolist()], dtype=np.int64), qids)

    def in_natural_order(self):
        """The queries in natural order (``q2`` before ``q10``, then byte order): the order every writer uses."""
        qids = self.query_ids
        order = natural_order(qids.tolist())
        if np.array_equal(order, np.arange(order.size)):
            return self
        return self._gather(order, qids[order])


# ----------------------------------------------------------------------------------------------------------------
# ordering and duplicates
# ----------------------------------------------------------------------------------------------------------------

def _is_ordered(qcodes: np.ndarray, scores: np.ndarray, dcodes: np.ndarray) -> bool:
    """True when entries are grouped by ascending query code, score desc, then doc code desc."""
    if qcodes.size < 2:
        return True
    dq = np.diff(qcodes)
    if (dq < 0).any():
        return False
    same_q = dq == 0
    # comparisons, not np.diff: inf - inf is NaN, which would hide a tie of two infinite scores
    if (same_q & (scores[1:] > scores[:-1])).any():
        return False
    tie = same_q & (scores[1:] == scores[:-1])
    return not (tie & (np.diff(dcodes) >= 0)).any()


def _dedupe(qcodes, dcodes, values, on_duplicate, describe) -> np.ndarray | None:
    """Return a keep-mask when (query, doc) pairs repeat, raising for on_duplicate='error'.

    'first' keeps the earliest entry of each pair; 'max' the highest-scoring one (earliest among equals).
    """
    n = qcodes.size
    if n < 2:
        return None
    n_docs = int(dcodes.max()) + 1
    k = fastio.kernels()
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


def _where(where: str, lines: np.ndarray | None, i: int) -> str:
    return f"{where}:{int(lines[i])}" if lines is not None else where


def _query_codes(query_ids, queries, where: str) -> tuple[np.ndarray, LazyIds]:
    """Query codes in first-seen order; a ``queries`` list fixes the table (and its order) first."""
    if queries is None:
        return encode(query_ids, sort=False, column="query_id", where=where)
    listed = as_str_array(queries, "queries", where)
    if not len(listed):
        return encode(query_ids, sort=False, column="query_id", where=where)
    if len(listed.unique()) != len(listed):
        raise InputError(f"{where}: `queries` lists a query id twice")
    q = as_str_array(query_ids, "query_id", where)
    if q.type != listed.type:
        q = q.cast(listed.type)
    codes, qtable = encode(pa.concat_arrays([listed, q]), sort=False, column="query_id", where=where)
    if len(qtable) != len(listed):
        extra = ids_array(qtable)[len(listed):][:3].tolist()
        raise InputError(f"{where}: entries for queries not listed in `queries`: {extra}")
    return codes[len(listed):], qtable


def _trec_lines(path: Path, kinds: Sequence[str], numeric: Mapping[str, type]) -> tuple[dict[str, Any], np.ndarray]:
    c, lines = read_text_lines(path, kinds, numeric)
    cols = {k: np.asarray(v, dtype=object) for k, v in c.items() if k not in numeric}
    cols.update({k: np.asarray(c[k], dtype=np.float64 if t is float else np.int64) for k, t in numeric.items()})
    cols["tag"] = c["tag"][0] or None if "tag" in c else None
    return cols, lines


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
    def empty(cls, query_ids: Sequence[str] | np.ndarray = (), name: str = "run") -> Run:
        """A Run with the given queries and no entries (e.g. a retriever with nothing indexed yet)."""
        qids = np.asarray(query_ids).astype(str).astype(object)
        e = np.empty(0, dtype=np.int64)
        return cls(qids, np.empty(0, dtype=object), np.zeros(qids.size + 1, dtype=np.int64), e, np.empty(0), name=name)

    @classmethod
    def from_arrays(cls, query_ids, doc_ids, scores, *, name: str = "run", on_duplicate: str = "error",
                    evidence: Mapping[str, Any] | None = None, queries: Sequence[str] | None = None,
                    source: str | None = None, _lines: np.ndarray | None = None) -> Run:
        """Build a Run from per-entry arrays in any order.

        ``queries`` fixes the query table (and its order), which may include queries with no entries.
        ``on_duplicate``: 'error' (default), 'max' (keep the highest score) or 'first' (keep the first seen).
        Null ids, non-numeric or multi-dimensional scores and arrays of different lengths are errors.
        """
        _check_dup_mode(on_duplicate)
        where = source or name
        scores = _numbers(scores, "scores", where)
        qcodes, qtable = _query_codes(query_ids, queries, where)
        dcodes, dtable = encode(doc_ids, sort=True, column="doc_id", where=where)
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
        evidence = _evidence(evidence, scores.size, where)
        bad = np.isnan(scores)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{_where(where, _lines, i)}: NaN score for query {qtable[qcodes[i]]!r}, "
                             f"doc {dtable[dcodes[i]]!r}")
        k = fastio.kernels()
        if k is not None and scores.size:
            # the usual file layout (grouped, ordered, no repeated pair) in one compiled pass
            offsets = np.empty(len(qtable) + 1, dtype=np.int64)
            state = k["check_grouped"](np.asarray(qcodes, dtype=np.int64), scores, np.asarray(dcodes, dtype=np.int64),
                                       len(qtable), len(dtable), offsets)
            if state == 0:
                return cls(qtable, dtable, offsets, dcodes, scores, name=name, evidence=evidence)
        keep = _dedupe(qcodes, dcodes, scores, on_duplicate,
                       lambda i, j: f"{_where(where, _lines, j)}: duplicate (query, doc) pair "
                                    f"({qtable[qcodes[j]]!r}, {dtable[dcodes[j]]!r})"
                                    + (f", first at line {int(_lines[i])}" if _lines is not None else "")
                                    + "; use on_duplicate='max' or 'first' (CLI: --on-duplicate)")
        if keep is not None:
            qcodes, dcodes, scores = qcodes[keep], dcodes[keep], scores[keep]
            if evidence:
                evidence = {k: v[keep] for k, v in evidence.items()}
        if _is_ordered(qcodes, scores, dcodes):  # files written by ranking tools usually are
            return cls(qtable, dtable, _offsets_from_codes(qcodes, len(qtable)), dcodes, scores, name=name,
                       evidence=evidence)
        order = np.lexsort((-dcodes, -scores, qcodes))
        ev = {k: v[order] for k, v in evidence.items()} if evidence else None
        return cls(qtable, dtable, _offsets_from_codes(qcodes[order], len(qtable)), dcodes[order], scores[order],
                   name=name, evidence=ev)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]], name: str = "run", source: str | None = None) -> Run:
        """From ``{query_id: {doc_id: score}}``; queries with an empty dict are kept (with no entries)."""
        where = source or name
        qids, dids, scores = [], [], []
        for q, d, s in _nested(data, where, "scores"):
            qids.append(str(q))
            dids.append(str(d))
            try:
                scores.append(float(s))
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{where}: score {s!r} of query {q!r}, doc {d!r} is not a number") from None
        return cls.from_arrays(np.asarray(qids, dtype=object), np.asarray(dids, dtype=object),
                               np.asarray(scores, dtype=np.float64), name=name, queries=[str(q) for q in data],
                               source=source)

    @classmethod
    def from_lists(cls, lists: Iterable[RankedList], name: str = "run", on_duplicate: str = "error") -> Run:
        """From per-query lists (``RankedList``, e.g. views of ``Run.lists()`` reordered or filtered): every query is
        kept in the given order, also one with an empty list. Evidence columns must be the same in every list."""
        lists = list(lists)
        keys = {tuple(sorted(rl.evidence)) for rl in lists if len(rl)}
        if len(keys) > 1:
            raise InputError(f"{name}: lists carry different evidence columns {sorted(keys)}")
        cols = keys.pop() if keys else ()
        for rl in lists:
            if len(rl.scores) != len(rl.doc_ids):
                raise InputError(f"{name}: query {rl.query_id!r} has {len(rl.doc_ids)} doc ids but "
                                 f"{len(rl.scores)} scores")
        counts = [len(rl) for rl in lists]
        docs = [np.asarray(rl.doc_ids, dtype=object) for rl in lists]
        ev = {c: np.concatenate([np.asarray(rl.evidence[c]) for rl in lists if len(rl)]) for c in cols}
        return cls.from_arrays(np.repeat(np.asarray([rl.query_id for rl in lists], dtype=object), counts),
                               np.concatenate(docs) if docs else np.empty(0, dtype=object),
                               np.concatenate([np.asarray(rl.scores, dtype=np.float64) for rl in lists])
                               if lists else np.empty(0), name=name, on_duplicate=on_duplicate, evidence=ev or None,
                               queries=[rl.query_id for rl in lists])

    @classmethod
    def from_matrix(cls, scores, query_ids: Sequence[str] | None = None, doc_ids: Sequence[str] | None = None,
                    depth: int | None = None, threshold: float | None = None, name: str = "run") -> Run:
        """From a dense [queries x docs] score matrix.

        ``depth`` keeps each query's top ``depth`` (ties at the cut resolved like trec_eval: higher doc id first);
        ``threshold`` keeps only scores strictly above it (e.g. ``threshold=0`` drops the zero fill of a retriever
        that scored only its top-k). Both may be combined.
        """
        try:
            mat = np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name}: score matrix must be numbers") from None
        if mat.ndim != 2:
            raise InputError(f"{name}: score matrix must be 2-D, got shape {mat.shape}")
        nq, nd = mat.shape
        query_ids = np.asarray([str(i) for i in range(nq)] if query_ids is None else [str(q) for q in query_ids],
                               dtype=object)
        doc_ids = np.asarray([str(i) for i in range(nd)] if doc_ids is None else [str(d) for d in doc_ids],
                             dtype=object)
        if query_ids.size != nq or doc_ids.size != nd:
            raise InputError(f"{name}: matrix is {nq}x{nd} but got {query_ids.size} query ids and {doc_ids.size} "
                             "doc ids")
        if np.isnan(mat).any():
            r, c = map(int, np.argwhere(np.isnan(mat))[0])
            raise InputError(f"{name}: NaN score at row {r}, column {c}")
        if depth is not None and depth < 1:
            raise ParameterError(f"depth must be >= 1, got {depth}")
        dcodes, dtable = encode(doc_ids, sort=True, column="doc_id", where=name)
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
        return cls.from_arrays(df[q].to_numpy(), df["doc_id"].to_numpy(), df["score"].to_numpy(), name=name,
                               on_duplicate=on_duplicate, evidence=ev)

    @classmethod
    def from_ranx(cls, run) -> Run:
        """From a ``ranx.Run``."""
        return cls.from_dict(run.to_dict(), name=getattr(run, "name", None) or "run")

    # -- readers --------------------------------------------------------------------------------------------------
    @classmethod
    def from_trec(cls, path: str | os.PathLike, name: str | None = None, on_duplicate: str = "error") -> Run:
        """Read a TREC run: ``qid Q0 docid rank score [tag]`` per line, any whitespace between columns.

        The run's order comes from the scores (score desc, then doc id desc, as in trec_eval); the file's own order
        is kept as evidence, which rank-based fusion uses as each document's rank (``Run.input_ranks``: pyserini's
        semantics, which differ from the score order only inside groups of tied scores). The file's rank column is
        ignored; the name defaults to the tag.
        """
        path = Path(path)
        check_readable(path)
        _check_dup_mode(on_duplicate)
        numeric = {"score": float, "rank": int}
        try:
            cols, lines = read_text_columns(path, TREC_RUN, ("qid", "doc", "score"), group="qid"), None
        except SlowPath:
            cols, lines = _trec_lines(path, TREC_RUN, numeric)
        name = name or cols["tag"] or path.stem
        try:
            return cls._from_trec_columns(cols, lines, name, on_duplicate, path)
        except InputError:
            if lines is not None:
                raise
            cols, lines = _trec_lines(path, TREC_RUN, numeric)  # re-read to report the line number
            return cls._from_trec_columns(cols, lines, name, on_duplicate, path)

    @classmethod
    def _from_trec_columns(cls, cols: dict[str, Any], lines, name: str, on_duplicate: str, path: Path) -> Run:
        q, d, s = cols["qid"], cols["doc"], cols["score"]
        n = len(s)
        # the file's order, kept as evidence: rank-based fusion reads it as each document's rank (Run.input_ranks)
        evidence = {INPUT_ORDER: np.asarray(lines, dtype=np.int64) if lines is not None else np.arange(n)}
        if isinstance(q, tuple):  # the compiled reader encoded the query column already (first-seen order)
            dcodes, dtable = encode(d, sort=True, column="doc_id", where=str(path))
            return cls._from_encoded(q[0], q[1], dcodes, dtable, s, name=name, on_duplicate=on_duplicate,
                                     evidence=evidence, where=str(path), _lines=lines)
        return cls.from_arrays(q, d, s, name=name, on_duplicate=on_duplicate, source=str(path), _lines=lines,
                               evidence=evidence)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike, name: str | None = None, on_duplicate: str = "error") -> Run:
        """Read a Parquet run with columns ``query_id, doc_id, score`` (``rank`` optional; others become evidence)."""
        path = Path(path)
        table = read_parquet(path)
        cols = table.column_names
        q = "query_id" if "query_id" in cols else "q_id" if "q_id" in cols else None
        if q is None or "doc_id" not in cols or "score" not in cols:
            raise InputError(f"{path}: Parquet run needs columns query_id, doc_id, score (has {cols})")
        scores = _parquet_numbers(table, "score", path)
        ev = _parquet_evidence(table, [c for c in cols if c not in (q, "doc_id", "score", "rank")])
        return cls.from_arrays(table.column(q), table.column("doc_id"), scores, name=name or path.stem,
                               on_duplicate=on_duplicate, evidence=ev, source=str(path))

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> Run:
        """Read ``{query_id: {doc_id: score}}`` JSON."""
        path = Path(path)
        return cls.from_dict(read_json_object(path, "{query_id: {doc_id: score}}"), name=name or path.stem,
                             source=str(path))

    @classmethod
    def read(cls, path: str | os.PathLike, format: str | None = None, name: str | None = None,
             on_duplicate: str = "error") -> Run:
        """Read a run, choosing the format from the extension (.parquet, .json, anything else TREC)."""
        path = Path(path)
        fmt = format_of(path, format)
        if fmt == "parquet":
            run = cls.from_parquet(path, name=name, on_duplicate=on_duplicate)
        elif fmt == "json":
            run = cls.from_json(path, name=name)
        else:
            run = cls.from_trec(path, name=name, on_duplicate=on_duplicate)
        if len(run) == 0:
            raise InputError(f"{path}: run has no entries")
        return run

    # -- conversions and writers -----------------------------------------------------------------------------------
    def to_pandas(self):
        import pandas as pd  # pandas and ranx load only for these conversions: `import mmfuse` stays light

        df = pd.DataFrame({"query_id": self.entry_query_ids(), "doc_id": self.entry_doc_ids(),
                           "score": self.scores, "rank": self.ranks()})
        for k, v in (self.evidence or {}).items():
            df[k] = v
        return df

    def to_arrow(self) -> pa.Table:
        cols = {"query_id": arrow_ids(self._query_ids).take(self.qidx()),
                "doc_id": arrow_ids(self._doc_ids).take(self.doc_idx),
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
        """Write ``qid Q0 doc rank score tag`` lines: queries in natural order (``q2`` before ``q10``, as trec_eval
        users expect; then byte order), entries best first, scores in shortest round-trip form. An id TREC text
        cannot hold (empty, or with whitespace) is an error naming it and its query; nothing is written then."""
        tag = check_tag(tag or self.name or "mmfuse")
        run = self.in_natural_order()
        qtab, dtab, qidx = arrow_ids(run._query_ids), arrow_ids(run._doc_ids), run.qidx()
        check_trec_ids(path, qtab, dtab, qidx, run.doc_idx)
        write_trec(path, [qtab.take(qidx), "Q0", dtab.take(run.doc_idx), trec_number(run.ranks()),
                          trec_number(run.scores), tag])

    def to_parquet(self, path: str | os.PathLike) -> None:
        """Write columns ``query_id, doc_id, score, rank`` (and evidence), queries in natural order."""
        write_parquet(path, self.in_natural_order().to_arrow())

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``{query_id: {doc_id: score}}``, queries in natural order, docs best first."""
        write_json(path, self.in_natural_order().to_dict())

    def write(self, path: str | os.PathLike, format: str | None = None, tag: str | None = None) -> None:
        """Write in the format named by ``format`` or the extension (TREC by default), queries in natural order.

        ``path`` follows ``mmfuse.utils.files``: a file is replaced atomically, ``-`` is stdout, devices and FIFOs
        are written through, a symlink's target is written."""
        path = path if os.fspath(path) == "-" else Path(path)
        fmt = format_of(Path(path), format)
        if fmt == "parquet":
            self.to_parquet(path)
        elif fmt == "json":
            self.to_json(path)
        else:
            self.to_trec(path, tag=tag)

    # -- transformations ------------------------------------------------------------------------------------------
    def input_ranks(self) -> np.ndarray | None:
        """Per entry, its 1-based position in its query's list *as the input listed it* (a TREC file's line order),
        or None when the run records no input order (built from arrays, dicts, matrices, Parquet or JSON).

        Within a group of equal scores the Run itself is ordered by doc id (trec_eval's tie-break); the input order
        is what pyserini and the fused TREC runs made with it use as each document's rank."""
        order = (self.evidence or {}).get(INPUT_ORDER)
        if order is None:
            return None
        seg = self.qidx()
        by_input = np.lexsort((np.asarray(order), seg))
        ranks = np.empty(len(self), dtype=np.int64)
        ranks[by_input] = np.arange(len(self)) - self.offsets[seg[by_input]] + 1
        return ranks

    def cut(self, depth: int | None, by: str = "score") -> Run:
        """Keep the top ``depth`` entries of each query: the highest scored (``by="score"``) or the first ones in
        input order (``by="input"``, as pyserini's depth does; the score order when the run records no input
        order)."""
        if depth is None or (len(self) and self.counts().max(initial=0) <= depth):
            return self
        if depth < 1:
            raise ParameterError(f"depth must be >= 1, got {depth}")
        if by not in ("score", "input"):
            raise unknown("cut order", by, ["score", "input"])
        ranks = self.input_ranks() if by == "input" else None
        parts = self._take((self.ranks() if ranks is None else ranks) <= depth)
        return Run(self._query_ids, self._doc_ids, parts["offsets"], parts["doc_idx"], parts["values"], self.name,
                   parts["evidence"])

    def with_name(self, name: str) -> Run:
        return Run(self._query_ids, self._doc_ids, self.offsets, self.doc_idx, self.scores, name, self.evidence)

    def lists(self) -> Iterator[RankedList]:
        """Each query's ranked list, in query-table order (a query without entries gives an empty list)."""
        docs = self.doc_ids
        off = self.offsets.tolist()
        ev = self.evidence or {}
        for i, q in enumerate(self.query_ids.tolist()):
            a, b = off[i], off[i + 1]
            yield RankedList(q, docs[self.doc_idx[a:b]], self.scores[a:b], {k: v[a:b] for k, v in ev.items()})

    def list(self, qid: str) -> RankedList:
        """One query's ranked list (KeyError when the run does not have the query)."""
        s = self._slice(str(qid))
        return RankedList(str(qid), self.doc_ids[self.doc_idx[s]], self.scores[s],
                          {k: v[s] for k, v in (self.evidence or {}).items()})

    def query(self, qid: str) -> list[tuple[str, float]]:
        """The ranked (doc id, score) list of one query."""
        rl = self.list(qid)
        return list(zip(rl.doc_ids.tolist(), rl.scores.tolist()))

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

def _relevance(relevance: Any, where: str) -> np.ndarray:
    """Relevance grades as int64: integers, or floats with integral values; anything else is one clear error."""
    try:
        rel = np.asarray(relevance)
    except (TypeError, ValueError):
        raise InputError(f"{where}: relevance must be integers") from None
    if rel.ndim != 1:
        raise InputError(f"{where}: relevance must be one-dimensional, got shape {rel.shape}")
    if rel.dtype.kind in "iub":
        if rel.dtype.kind == "u" and rel.size and rel.max() > np.iinfo(np.int64).max:
            raise InputError(f"{where}: relevance {int(rel.max())} is too large")
        return rel.astype(np.int64)
    if rel.dtype.kind != "f":
        rel = _numbers(relevance, "relevance", where)
    if not np.isfinite(rel).all() or (rel != np.round(rel)).any() or (np.abs(rel) >= 2.0 ** 63).any():
        raise InputError(f"{where}: relevance must be integers")
    return rel.astype(np.int64)


class Qrels(_Ranked):
    """Graded relevance judgements: per query, doc ids (ascending) with integer relevance."""

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
        rel = _relevance(relevance, where)
        qcodes, qtable = encode(query_ids, sort=False, column="query_id", where=where)
        dcodes, dtable = encode(doc_ids, sort=True, column="doc_id", where=where)
        if not (qcodes.size == dcodes.size == rel.size):
            raise InputError(f"{where}: query_ids, doc_ids and relevance differ in length "
                             f"({qcodes.size}, {dcodes.size}, {rel.size})")
        keep = _dedupe(qcodes, dcodes, rel.astype(np.float64), on_duplicate,
                       lambda i, j: f"{_where(where, _lines, j)}: duplicate judgement for "
                                    f"({qtable[qcodes[j]]!r}, {dtable[dcodes[j]]!r})")
        if keep is not None:
            qcodes, dcodes, rel = qcodes[keep], dcodes[keep], rel[keep]
        order = np.lexsort((dcodes, qcodes))
        return cls(qtable, dtable, _offsets_from_codes(qcodes[order], len(qtable)), dcodes[order], rel[order],
                   name=name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, int]], name: str = "qrels", source: str | None = None) -> Qrels:
        where = source or name
        qids, dids, rels = [], [], []
        for q, d, r in _nested(data, where, "relevance"):
            ok = isinstance(r, (int, np.integer)) or (isinstance(r, (float, np.floating)) and float(r).is_integer())
            if not ok or not -(2 ** 63) <= int(r) < 2 ** 63:
                raise InputError(f"{where}: relevance {r!r} of query {q!r}, doc {d!r} is not an integer")
            qids.append(str(q))
            dids.append(str(d))
            rels.append(int(r))
        return cls.from_arrays(np.asarray(qids, dtype=object), np.asarray(dids, dtype=object),
                               np.asarray(rels, dtype=np.int64), name=name, source=source)

    @classmethod
    def from_ranx(cls, qrels) -> Qrels:
        return cls.from_dict(qrels.to_dict(), name=getattr(qrels, "name", None) or "qrels")

    @classmethod
    def from_pandas(cls, df, name: str = "qrels") -> Qrels:
        q = "query_id" if "query_id" in df.columns else "q_id"
        rel = "relevance" if "relevance" in df.columns else "score"
        for col in (q, "doc_id", rel):
            if col not in df.columns:
                raise InputError(f"{name}: DataFrame lacks column {col!r} (has {list(df.columns)})")
        return cls.from_arrays(df[q].to_numpy(), df["doc_id"].to_numpy(), df[rel].to_numpy(), name=name)

    @classmethod
    def from_trec(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        """Read TREC qrels ``qid iter docid rel``; the iteration column is ignored (may be '0', 'Q0', '1.5')."""
        path = Path(path)
        check_readable(path)
        name = name or path.stem
        try:
            cols, lines = read_text_columns(path, TREC_QRELS, ("qid", "doc", "rel")), None
        except SlowPath:
            cols, lines = _trec_lines(path, TREC_QRELS, {"rel": int})
        try:
            return cls.from_arrays(cols["qid"], cols["doc"], cols["rel"], name=name, source=str(path), _lines=lines)
        except InputError:
            if lines is not None:
                raise
            cols, lines = _trec_lines(path, TREC_QRELS, {"rel": int})  # re-read to report the line number
            return cls.from_arrays(cols["qid"], cols["doc"], cols["rel"], name=name, source=str(path), _lines=lines)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        path = Path(path)
        table = read_parquet(path)
        cols = table.column_names
        q = "query_id" if "query_id" in cols else "q_id"
        rel = "relevance" if "relevance" in cols else "score"
        for c in (q, "doc_id", rel):
            if c not in cols:
                raise InputError(f"{path}: Parquet qrels need columns query_id, doc_id, relevance (has {cols})")
        return cls.from_arrays(table.column(q), table.column("doc_id"), _parquet_numbers(table, rel, path),
                               name=name or path.stem, source=str(path))

    @classmethod
    def from_json(cls, path: str | os.PathLike, name: str | None = None) -> Qrels:
        path = Path(path)
        return cls.from_dict(read_json_object(path, "{query_id: {doc_id: relevance}}"), name=name or path.stem,
                             source=str(path))

    @classmethod
    def read(cls, path: str | os.PathLike, format: str | None = None, name: str | None = None) -> Qrels:
        path = Path(path)
        fmt = format_of(path, format)
        q = (cls.from_parquet if fmt == "parquet" else cls.from_json if fmt == "json" else cls.from_trec)(path,
                                                                                                           name=name)
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

        return pd.DataFrame({"query_id": self.entry_query_ids(), "doc_id": self.entry_doc_ids(),
                             "relevance": self.relevance})

    def to_arrow(self) -> pa.Table:
        return pa.table({"query_id": arrow_ids(self._query_ids).take(self.qidx()),
                         "doc_id": arrow_ids(self._doc_ids).take(self.doc_idx),
                         "relevance": pa.array(self.relevance)})

    def to_trec(self, path: str | os.PathLike) -> None:
        """Write ``qid 0 docid rel`` lines, queries in natural order, docs ascending (ids checked as for runs)."""
        q = self.in_natural_order()
        qtab, dtab, qidx = arrow_ids(q._query_ids), arrow_ids(q._doc_ids), q.qidx()
        check_trec_ids(path, qtab, dtab, qidx, q.doc_idx)
        write_trec(path, [qtab.take(qidx), "0", dtab.take(q.doc_idx), trec_number(q.relevance)])

    def write(self, path: str | os.PathLike, format: str | None = None) -> None:
        """Write in the format named by ``format`` or the extension (TREC by default), queries in natural order."""
        path = path if os.fspath(path) == "-" else Path(path)
        fmt = format_of(Path(path), format)
        if fmt == "parquet":
            write_parquet(path, self.in_natural_order().to_arrow())
        elif fmt == "json":
            write_json(path, self.in_natural_order().to_dict())
        else:
            self.to_trec(path)

    def __getitem__(self, qid: str) -> dict[str, int]:
        s = self._slice(str(qid))
        return dict(zip(self.doc_ids[self.doc_idx[s]].tolist(), self.relevance[s].tolist()))
