"""Compiled (numba) kernels for the fusion hot paths; numba comes with ranx and is imported lazily."""

from __future__ import annotations

import numpy as np

from mmfuse.utils.compiled import LazyKernels, threads


def _build() -> dict:
    import numba

    @numba.njit(cache=True, nogil=True)
    def assign_pairs(seg_start, seg_len, didx, n_docs, max_q, pair, pair_q, pair_d, q_pair_offsets):
        """Pair id of every entry (``max_q``: most entries of one query); pairs grouped by query (asc), then doc index (asc). Returns the pair count.

        ``seg_start``/``seg_len`` [R, Q]: where run r's entries for query q lie. One scratch slot per doc marks the
        docs seen in the current query; a query's docs are then ordered by a scan of their doc-index range when
        it is narrow, else by sorting the query's own docs.
        """
        R, Q = seg_start.shape
        slot = np.full(n_docs, -1, dtype=np.int64)
        local = np.empty(min(n_docs, max_q), dtype=np.int64)
        base = 0
        for q in range(Q):
            n = 0
            lo, hi = n_docs, -1
            for r in range(R):
                s = seg_start[r, q]
                for e in range(s, s + seg_len[r, q]):
                    d = didx[e]
                    if slot[d] < 0:
                        slot[d] = 0
                        local[n] = d
                        n += 1
                        lo = min(lo, d)
                        hi = max(hi, d)
            if n == 0:
                q_pair_offsets[q + 1] = base
                continue
            if hi - lo < 8 * n * (1 + int(np.log2(n))):
                k = 0
                for d in range(lo, hi + 1):
                    if slot[d] >= 0:
                        local[k] = d
                        k += 1
            else:
                local[:n] = np.sort(local[:n])
            for i in range(n):
                d = local[i]
                slot[d] = base + i
                pair_d[base + i] = d
                pair_q[base + i] = q
            for r in range(R):
                s = seg_start[r, q]
                for e in range(s, s + seg_len[r, q]):
                    pair[e] = slot[didx[e]]
            for i in range(n):
                slot[local[i]] = -1
            base += n
            q_pair_offsets[q + 1] = base
        return base

    @numba.njit(cache=True, nogil=True)
    def pad_neg(score, q_offsets, L):
        """(Q x L) matrix of -score per query, padded with +inf (sorts last)."""
        Q = q_offsets.size - 1
        mat = np.empty((Q, L), dtype=np.float64)
        for q in range(Q):
            a, b = q_offsets[q], q_offsets[q + 1]
            for j in range(b - a):
                mat[q, j] = -score[a + j]
            for j in range(b - a, L):
                mat[q, j] = np.inf
        return mat

    @numba.njit(cache=True, nogil=True)
    def gather_order(order, q_offsets, score, pair_d):
        """Flat pair permutation from per-row argsorts; runs of equal scores re-ordered by doc index desc."""
        Q = q_offsets.size - 1
        out = np.empty(q_offsets[Q], dtype=np.int64)
        for q in range(Q):
            a, b = q_offsets[q], q_offsets[q + 1]
            for j in range(b - a):
                out[a + j] = a + order[q, j]
            i = a
            while i < b:
                j = i + 1
                s = score[out[i]]
                while j < b and score[out[j]] == s:
                    j += 1
                if j - i > 1:  # insertion sort of the tie group by doc index desc
                    for u in range(i + 1, j):
                        x = out[u]
                        v = u - 1
                        while v >= i and pair_d[out[v]] < pair_d[x]:
                            out[v + 1] = out[v]
                            v -= 1
                        out[v + 1] = x
                i = j
        return out

    @numba.njit(cache=True, nogil=True)
    def scatter_add(pair, x, n_pairs):
        """``np.bincount(pair, weights=x, minlength=n_pairs)`` in one pass."""
        out = np.zeros(n_pairs, dtype=np.float64)
        for e in range(pair.size):
            out[pair[e]] += x[e]
        return out

    @numba.njit(cache=True, nogil=True)
    def scatter_count(pair, n_pairs):
        out = np.zeros(n_pairs, dtype=np.float64)
        for e in range(pair.size):
            out[pair[e]] += 1.0
        return out

    return {"assign_pairs": assign_pairs,
            "pad_neg": pad_neg, "gather_order": gather_order, "scatter_add": scatter_add, "scatter_count": scatter_count}


kernels = LazyKernels(_build)  # the compiled kernels, or None (callers then use the numpy paths)


def row_argsort(mat: np.ndarray) -> np.ndarray:
    """``np.argsort(mat, axis=1)``, split over two threads for large matrices (numpy's sort releases the GIL)."""
    Q = mat.shape[0]
    if mat.size < 1 << 18 or Q < 2:
        return np.argsort(mat, axis=1)
    out = np.empty(mat.shape, dtype=np.int64)
    cuts = (0, Q // 2, Q)

    def part(i: int) -> None:
        out[cuts[i]:cuts[i + 1]] = np.argsort(mat[cuts[i]:cuts[i + 1]], axis=1)

    threads(part, 2)
    return out
