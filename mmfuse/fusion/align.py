"""Vectorised alignment of several Runs onto one query table, one doc table and one (query, doc) pair table.

After alignment every run's entries live in flat arrays (run, query, doc, score, rank) grouped in (run, query)
segments; each entry also knows its *pair*: the index of its (query, doc) in the union of all runs. Fusion methods
are then scatter-reductions over pairs (``np.bincount``) and one segmented sort orders the output. No Python loop
runs over queries or documents.

Conventions: the query table is the union of the runs' queries in first-seen order (run 0's order, then new
queries of run 1, ...); a query absent from a run is that run's *empty list* for it. The doc table is the sorted
union of the doc tables, so "doc id descending" is "doc index descending".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmfuse.errors import InputError
from mmfuse.runs import LazyIds
from mmfuse.runs.fastio import union_sorted

from ._kernels import kernels as _kernels

__all__ = ["Aligned", "FusionInput", "align", "order_pairs", "segment_reduce"]

# Dense (query x doc) bookkeeping is used for pair ids while it stays this small; beyond, a sort finds them.
_DENSE_LIMIT = 1 << 24


@dataclass
class Aligned:
    """Several runs' entries on shared query/doc tables. Per-entry arrays have length N (all runs' entries)."""

    query_ids: np.ndarray      # [Q] object
    doc_ids: np.ndarray        # [D] object, sorted
    names: list[str]           # [R]
    run: np.ndarray            # [N] run index of each entry
    qidx: np.ndarray           # [N] query index
    didx: np.ndarray           # [N] doc index
    score: np.ndarray          # [N] raw score (non-finite values already made finite)
    rank: np.ndarray           # [N] 1-based rank of the entry in its own run's list
    seg_offsets: np.ndarray    # [S+1] (run, query) segments over the entries
    seg_run: np.ndarray        # [S]
    seg_q: np.ndarray          # [S]
    n_ret: np.ndarray          # [R, Q] number of entries run r has for query q
    pair: np.ndarray           # [N] pair index of each entry
    pair_q: np.ndarray         # [P] query of each pair (pairs sorted by query, then doc asc)
    pair_d: np.ndarray         # [P] doc of each pair
    q_pair_offsets: np.ndarray  # [Q+1] pairs of query q are q_pair_offsets[q]:q_pair_offsets[q+1]

    @property
    def n_runs(self) -> int:
        return len(self.names)

    @property
    def n_queries(self) -> int:
        return int(self.query_ids.size)

    @property
    def n_pairs(self) -> int:
        return int(self.pair_q.size)

    @property
    def n_cand(self) -> np.ndarray:
        """[Q] number of distinct candidates (union over runs) of each query."""
        return np.diff(self.q_pair_offsets)


@dataclass
class FusionInput:
    """What a fusion method sees: per-entry run/pair/value/rank arrays plus the pair table and weights.

    ``value`` holds the normalised scores (the raw ones when no normalisation applies). Entries added by a
    normalisation that scores missing docs (Borda) have ``rank == 0``.
    """

    aligned: Aligned
    run: np.ndarray
    pair: np.ndarray
    qidx: np.ndarray
    value: np.ndarray
    rank: np.ndarray
    weights: np.ndarray        # [R] float, all ones when the caller gave none

    @property
    def n_runs(self) -> int:
        return self.aligned.n_runs

    @property
    def n_pairs(self) -> int:
        return self.aligned.n_pairs

    @property
    def n_queries(self) -> int:
        return self.aligned.n_queries

    @property
    def pair_q(self) -> np.ndarray:
        return self.aligned.pair_q

    def pair_sum(self, x: np.ndarray) -> np.ndarray:
        """Sum of per-entry ``x`` over each pair ([P])."""
        k = _kernels()
        if k is not None and self.pair.dtype == np.int64:
            return k["scatter_add"](self.pair, np.asarray(x, dtype=np.float64), self.n_pairs)
        return np.bincount(self.pair, weights=x, minlength=self.n_pairs)

    def pair_count(self) -> np.ndarray:
        """Number of runs holding each pair ([P], float)."""
        k = _kernels()
        if k is not None and self.pair.dtype == np.int64:
            return k["scatter_count"](self.pair, self.n_pairs)
        return np.bincount(self.pair, minlength=self.n_pairs).astype(np.float64)

    @property
    def uniform(self) -> bool:
        """True when every run has weight 1 (methods may then skip the per-entry weight gather)."""
        return bool((self.weights == 1.0).all())

    def entry_weight(self) -> np.ndarray:
        return self.weights[self.run]


def segment_reduce(ufunc: np.ufunc, values: np.ndarray, offsets: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """``ufunc.reduceat`` over segments ``offsets[i]:offsets[i+1]``, giving ``empty`` for empty segments."""
    counts = np.diff(offsets)
    out = np.full(counts.size, empty, dtype=np.float64)
    nz = counts > 0
    if nz.any():
        out[nz] = ufunc.reduceat(values, offsets[:-1][nz])
    return out


def _union_first_seen(tables: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Union of id tables in first-seen order and, per table, the position of each id in the union."""
    import pyarrow as pa

    enc = pa.chunked_array([pa.array(t, type=pa.string()) for t in tables]).combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    union = np.asarray(enc.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    bounds = np.cumsum([0] + [len(t) for t in tables])
    return union, [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def doc_tables(runs: list) -> list:
    """The runs' doc tables without turning Arrow-backed (lazy) ones into Python strings."""
    return [r.doc_table() for r in runs]


def _union_sorted(tables: list, lazy: bool = False) -> tuple:
    """Sorted union of sorted doc tables (numpy object or Arrow string arrays) and each table's positions in it.

    Identical tables cost nothing; otherwise the compiled key merge of ``mmfuse.runs.fastio`` runs, with Arrow's
    hash-and-sort as the fallback. ``lazy=True`` returns the union as ``mmfuse.runs.LazyIds`` (no Python strings).
    """
    import pyarrow as pa

    first = tables[0]
    is_arrow = [isinstance(t, (pa.Array, pa.ChunkedArray)) for t in tables]

    def same(t) -> bool:
        if t is first:
            return True
        if len(t) != len(first):
            return False
        if isinstance(t, pa.Array) and isinstance(first, pa.Array):
            return t.equals(first)
        if not any(isinstance(x, (pa.Array, pa.ChunkedArray)) for x in (t, first)):
            return np.array_equal(t, first)
        return False

    def out(table):
        if lazy:
            return table if not isinstance(table, (pa.Array, pa.ChunkedArray)) else LazyIds(table)
        return np.asarray(table.to_numpy(zero_copy_only=False), dtype=object) if isinstance(
            table, (pa.Array, pa.ChunkedArray)) else table

    if all(same(t) for t in tables[1:]):
        ident = np.arange(len(first), dtype=np.int64)
        return out(first), [ident] * len(tables)
    arrays = [t.combine_chunks() if isinstance(t, pa.ChunkedArray) else t if a else pa.array(t, type=pa.string())
              for t, a in zip(tables, is_arrow)]
    got = union_sorted(arrays)
    if got is not None:
        return out(got[0]), got[1]
    import pyarrow.compute as pc

    uni = pc.unique(pa.chunked_array(arrays))
    uni = uni.take(pc.sort_indices(uni))  # byte order, the order Run uses for its doc tables
    maps = [pc.index_in(a, value_set=uni).to_numpy(zero_copy_only=False).astype(np.int64) for a in arrays]
    return out(uni), maps


def _finite(score: np.ndarray, seg_offsets: np.ndarray, names: list[str], run: np.ndarray) -> np.ndarray:
    """Replace +-inf by a value just beyond the segment's finite range so that every method stays finite.

    -inf ranks below every finite score of its list, +inf above; a list of only infinities becomes all zeros.
    """
    bad = ~np.isfinite(score)
    if not bad.any():
        return score
    if np.isnan(score).any():
        i = int(np.flatnonzero(np.isnan(score))[0])
        raise InputError(f"run {names[int(run[i])]!r}: NaN score")
    fin = np.where(bad, np.nan, score)
    counts = np.diff(seg_offsets)
    lo = np.repeat(segment_reduce(np.fmin, fin, seg_offsets), counts)
    hi = np.repeat(segment_reduce(np.fmax, fin, seg_offsets), counts)
    span = np.where(np.isfinite(hi - lo) & (hi > lo), hi - lo, 1.0)
    out = score.copy()
    neg, pos = bad & (score < 0), bad & (score > 0)
    out[neg] = np.nan_to_num(lo[neg] - span[neg], nan=0.0)
    out[pos] = np.nan_to_num(hi[pos] + span[pos], nan=0.0)
    return out


def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys by 16-bit digits (numpy radix-sorts 16-bit ints in O(n))."""
    kmax = int(keys.max()) if keys.size else 0
    perm = None
    shift = 0
    while True:
        k = keys if perm is None else keys[perm]
        digit = ((k >> shift) & 0xFFFF).astype(np.uint16)
        p = np.argsort(digit, kind="stable")
        perm = p if perm is None else perm[p]
        shift += 16
        if (kmax >> shift) == 0:
            return perm


def _unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for non-negative int64 keys via an LSD radix sort."""
    n = keys.size
    if n == 0 or int(keys.max()) >= 1 << 48:  # more than 3 digit passes: the comparison sort is as fast
        ukeys, inv = np.unique(keys, return_inverse=True)
        return ukeys, inv.reshape(-1)
    perm = _radix_argsort(keys)
    sk = keys[perm]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    ukeys = sk[new]
    del sk
    pid = np.cumsum(new, dtype=np.int64)
    pid -= 1
    pair = np.empty(n, dtype=np.int64)
    pair[perm] = pid
    return ukeys, pair


def query_union(runs: list, queries: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The fused query table and each run's map into it: ``queries`` first (in their order, answered or not), then
    the runs' other queries in first-seen order."""
    if queries is None:
        return _union_first_seen([r.query_ids for r in runs])
    table, maps = _union_first_seen([np.asarray(queries, dtype=object)] + [r.query_ids for r in runs])
    return table, maps[1:]


RANKS = ("input", "score")


def input_ranks(run, ranks: str) -> np.ndarray | None:
    """The ranks a rank-based method reads for ``run``'s entries: its input order when ``ranks="input"`` and the run
    records one (a TREC file's order: pyserini's semantics), else None (the score order, trec_eval's)."""
    if ranks == "score":
        return None
    got = run.input_ranks()
    return None if got is None or np.array_equal(got, run.ranks()) else got


def align(runs: list, depth: int | None = None, queries: np.ndarray | None = None, ranks: str = "input") -> Aligned:
    """Put ``runs`` (each optionally cut to its top ``depth``) on shared tables; see the module docstring.
    ``queries`` leads the query table (see ``query_union``); ``ranks`` says where entries' ranks come from (see
    ``input_ranks``; the depth cut follows the same order)."""
    if depth is not None:
        runs = [r.cut(depth, by=ranks) for r in runs]
    names = [str(r.name) for r in runs]
    query_ids, qmaps = query_union(runs, queries)
    doc_ids, dmaps = _union_sorted(doc_tables(runs))
    R, Q, D = len(runs), int(query_ids.size), int(doc_ids.size)

    counts = [np.diff(r.offsets) for r in runs]
    n_ret = np.zeros((R, Q), dtype=np.int64)
    for i, (qm, c) in enumerate(zip(qmaps, counts)):  # loop over runs, never over queries
        n_ret[i, qm] = c
    seg_q = np.concatenate(qmaps)
    seg_run = np.repeat(np.arange(R, dtype=np.int64), [len(q) for q in qmaps])
    seg_counts = np.concatenate(counts)
    seg_offsets = np.zeros(seg_counts.size + 1, dtype=np.int64)
    np.cumsum(seg_counts, out=seg_offsets[1:])

    # Narrow index dtypes keep 40M-entry fusions within a few GB; products below are taken in int64.
    run = np.repeat(np.arange(R, dtype=np.int16 if R < 2**15 else np.int64), [len(r) for r in runs])
    qidx = np.repeat(seg_q.astype(np.int32 if Q < 2**31 else np.int64), seg_counts)
    ddt = np.int32 if D < 2**31 else np.int64
    # A sorted table maps strictly increasingly into the sorted union, so equal sizes mean the identity map.
    didx = np.concatenate([(r.doc_idx if dm.size == D else dm[r.doc_idx]).astype(ddt, copy=False)
                           for dm, r in zip(dmaps, runs)])
    score = np.concatenate([np.asarray(r.scores, dtype=np.float64) for r in runs])
    if seg_counts.size and seg_counts[0] > 0 and (seg_counts == seg_counts[0]).all():  # top-k lists: no repeat
        rank = np.tile(np.arange(1, int(seg_counts[0]) + 1, dtype=np.int32), seg_counts.size)
    else:
        rank = (np.arange(score.size, dtype=np.int64) - np.repeat(seg_offsets[:-1], seg_counts) + 1).astype(np.int32)
    given = [input_ranks(r, ranks) for r in runs]
    if any(g is not None for g in given):
        base = np.cumsum([0] + [len(r) for r in runs])
        for i, g in enumerate(given):
            if g is not None:
                rank[base[i]:base[i + 1]] = g
    score = _finite(score, seg_offsets, names, run)

    k = _kernels()
    if k is not None and score.size:
        run_base = np.cumsum([0] + [len(r) for r in runs])
        seg_start = np.zeros((R, Q), dtype=np.int64)
        for i, (qm, r) in enumerate(zip(qmaps, runs)):
            seg_start[i, qm] = r.offsets[:-1] + run_base[i]
        N = score.size
        pair = np.empty(N, dtype=np.int64)
        pq, pd = np.empty(N, dtype=np.int64), np.empty(N, dtype=np.int64)
        q_pair_offsets = np.zeros(Q + 1, dtype=np.int64)
        P = k["assign_pairs"](seg_start, n_ret, didx, D, int(n_ret.sum(axis=0).max()), pair, pq, pd,
                              q_pair_offsets)
        return Aligned(query_ids, doc_ids, names, run, qidx, didx, score, rank, seg_offsets, seg_run, seg_q, n_ret,
                       pair, pq[:P].copy(), pd[:P].copy(), q_pair_offsets)
    keys = qidx.astype(np.int64) * max(D, 1)
    keys += didx
    if Q * D <= max(_DENSE_LIMIT, 2 * keys.size):
        present = np.zeros(Q * D, dtype=bool)
        present[keys] = True
        ukeys = np.flatnonzero(present)
        pid = np.cumsum(present, dtype=np.int64)
        del present
        pid -= 1
        pair = pid[keys]
        del pid
    else:
        ukeys, pair = _unique_inverse(keys)
    del keys
    pair_q, pair_d = np.divmod(ukeys, max(D, 1))
    q_pair_offsets = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_q, minlength=Q), out=q_pair_offsets[1:])
    return Aligned(query_ids, doc_ids, names, run, qidx, didx, score, rank, seg_offsets, seg_run, seg_q, n_ret,
                   pair, pair_q.astype(np.int64), pair_d.astype(np.int64), q_pair_offsets)


def order_pairs(pair_q: np.ndarray, pair_d: np.ndarray, score: np.ndarray, q_offsets: np.ndarray) -> np.ndarray:
    """Permutation ordering pairs by query (asc), score (desc), doc index (desc): trec_eval's order.

    Pairs arrive grouped by query. Rows of a padded (query x max-candidates) matrix are sorted with one row-wise
    argsort (cheaper than a global three-key lexsort); runs of equal scores, the only places where that unstable
    sort may be wrong, are then re-ordered by doc index with a lexsort over just those entries.
    """
    P = pair_q.size
    if P == 0:
        return np.zeros(0, dtype=np.int64)
    if np.isnan(score).any():
        raise InputError("fusion produced NaN scores")
    counts = np.diff(q_offsets)
    L = int(counts.max())
    Q = counts.size
    if Q * L > 3 * P + 4096:  # very uneven lists: padding would cost more than it saves
        return np.lexsort((-pair_d, -score, pair_q))
    k = _kernels()
    if k is not None and np.isfinite(score).all():  # finite: the +inf padding sorts after every real entry
        from ._kernels import row_argsort

        if Q * L == P:
            order = row_argsort(np.negative(score).reshape(Q, L))
        else:
            order = row_argsort(k["pad_neg"](score, q_offsets, L))
        return k["gather_order"](order, q_offsets, score, pair_d)
    if Q * L == P:  # every query has L candidates (full rankings): the matrix is a reshape
        out = np.argsort(-score.reshape(Q, L), axis=1)
        out += q_offsets[:-1, None]
        out = out.reshape(-1)
    else:
        col = np.arange(P, dtype=np.int64) - np.repeat(q_offsets[:-1], counts)
        mat = np.full((Q, L), np.inf)
        mat[pair_q, col] = -score
        idx = np.zeros((Q, L), dtype=np.int64)
        idx[pair_q, col] = np.arange(P, dtype=np.int64)
        order = np.argsort(mat, axis=1)
        del mat
        out = np.take_along_axis(idx, order, axis=1)[np.arange(L)[None, :] < counts[:, None]]
    s, q = score[out], pair_q[out]
    tie = (s[1:] == s[:-1]) & (q[1:] == q[:-1])
    if tie.any():
        involved = np.zeros(P, dtype=bool)
        involved[1:] |= tie
        involved[:-1] |= tie
        pos = np.flatnonzero(involved)
        sub = out[pos]
        # tie groups occupy the same slots whatever their inner order, so a full-key sort of the subset fits back
        out[pos] = sub[np.lexsort((-pair_d[sub], -score[sub], pair_q[sub]))]
    return out
