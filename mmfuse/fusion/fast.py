"""Single-pass compiled fusion for the "sum of per-entry contributions" methods (CombSUM, CombMNZ, wsum, RRF, ...).

The general path (``align`` -> ``normalize_entries`` -> method -> ``order_pairs``) materialises several arrays per
entry and per (query, doc) pair; for the methods whose fused score is ``combine(sum_r w_r * c(entry), hits)`` one
compiled pass per query does it all: per-list normalisation statistics, contributions, accumulation in a per-doc
scratch slot, and the candidates written in doc-id-descending order. Queries are split over threads (the kernels
release the GIL; plain threads avoid numba's threading layers, which abort on concurrent calls).

Ordering uses ``np.sort`` on packed uint64 keys instead of an argsort: key = query | top bits of the
order-preserving image of the score | position. Truncating the score bits is monotone, so entries whose truncated
keys are equal are contiguous after the sort; those groups (exact ties, or scores within ~2^-30 relative of each
other) are then re-ordered exactly by (score desc, doc desc). Since candidates are written in doc-desc order and
the position breaks truncated-key ties, exact ties already come out right and the fix-up is a linear check.

Every method keeps its general implementation; this module is only used when ``fuse`` finds it applicable and it
gives the same scores (up to float summation order within a list's statistics) and the same ordering rule.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["FastSpec", "fast_fuse", "CONTRIB", "COMBINE"]

CONTRIB = {"value": 0, "rrf": 1, "isr": 2, "rbc": 3}
COMBINE = {"sum": 0, "mnz": 1, "anz": 2, "pow": 3, "log": 4}
NORM_CODE = {"none": 0, "min-max": 1, "min-max-inverted": 2, "zmuv": 3, "sum": 4, "max": 5, "rank": 6, "softmax": 7}
_EPS = 1e-9
_MIN_SCORE_BITS = 24  # fewer bits left for the score in a key would make the exact fix-up the main cost


class FastSpec(tuple):
    """(contribution, combination, name of the contribution's parameter, name of the combination's parameter)."""

    def __new__(cls, contrib: str, combine: str = "sum", p1: str | None = None, p2: str | None = None):
        if contrib not in CONTRIB or combine not in COMBINE:
            raise ValueError(f"unknown fast spec ({contrib!r}, {combine!r})")
        return super().__new__(cls, (contrib, combine, p1, p2))


_K: dict | None = None


def _kernels() -> dict | None:
    global _K
    if _K is None:
        try:
            _K = _build()
        except Exception:  # noqa: BLE001 - no numba: fuse uses the general numpy path
            _K = {}
    return _K or None


def _build() -> dict:
    import numba

    @numba.njit(cache=True, nogil=True)
    def list_values(score, s, m, norm, temp, contrib, p1, wr, buf):
        """Contributions of one (run, query) list ``score[s:s+m]`` into ``buf[:m]``; False if a score is not finite.

        Same formulas and 1e-9 floors as norm.py / the method functions, one branch per list, not per entry.
        """
        mn = score[s]
        mx = score[s]
        tot = 0.0
        for e in range(s, s + m):
            v = score[e]
            if not np.isfinite(v):
                return False
            mn = min(mn, v)
            mx = max(mx, v)
            tot += v
        if contrib == 1:
            for i in range(m):
                buf[i] = 1.0 / (p1 + (i + 1)) * wr
        elif contrib == 2:
            for i in range(m):
                buf[i] = 1.0 / (float(i + 1) ** 2) * wr
        elif contrib == 3:
            for i in range(m):
                buf[i] = (1.0 - p1) * p1 ** float(i) * wr
        elif norm == 0:
            for i in range(m):
                buf[i] = score[s + i] * wr
        elif norm == 6:
            for i in range(m):
                buf[i] = (1.0 - i / m) * wr
        elif norm == 2:
            den = max(mx - mn, 1e-9)
            for i in range(m):
                buf[i] = (mx - score[s + i]) / den * wr
        elif norm == 7:
            z = 0.0
            for i in range(m):
                buf[i] = np.exp((score[s + i] - mx) / temp)
                z += buf[i]
            for i in range(m):
                buf[i] = buf[i] / z * wr
        else:
            if norm == 1:
                a, b = mn, max(mx - mn, 1e-9)
            elif norm == 3:
                a = tot / m
                ss = 0.0
                for e in range(s, s + m):
                    d = score[e] - a
                    ss += d * d
                b = max(np.sqrt(ss / m), 1e-9)
            elif norm == 4:
                a, b = mn, max(tot - m * mn, 1e-9)
            else:  # 5: max
                a, b = 0.0, max(mx, 1e-9)
            for i in range(m):
                buf[i] = (score[s + i] - a) / b * wr
        return True

    @numba.njit(cache=True, nogil=True)
    def accumulate(q0, q1, seg_start, seg_len, didx, scores, w, n_docs, norm, temp, contrib, p1, combine, p2,
                   ub_off, out_doc, out_score, counts):
        """Fuse queries q0..q1-1, writing their candidates (doc-desc order) densely from ``ub_off[q0]`` on.

        ``didx``/``scores`` are tuples with one array per run; ``seg_start[r, q]`` indexes run r's arrays. Only
        the memory actually filled is touched (``ub_off`` is an upper bound: every entry a new doc).
        Returns False (and stops) at the first non-finite score: the caller then takes the general path.
        """
        R = len(didx)
        maxn = 1
        maxm = 1
        for q in range(q0, q1):
            maxn = max(maxn, ub_off[q + 1] - ub_off[q])
            for r in range(R):
                maxm = max(maxm, seg_len[r, q])
        slot = np.full(n_docs, -1, dtype=np.int32)
        local = np.empty(maxn, dtype=np.int64)
        acc = np.empty(maxn, dtype=np.float64)
        cnt = np.empty(maxn, dtype=np.float64)
        buf = np.empty(maxm, dtype=np.float64)
        base = ub_off[q0]
        for q in range(q0, q1):
            n = 0
            lo, hi = n_docs, -1
            for r in range(R):
                s = seg_start[r, q]
                m = seg_len[r, q]
                if m == 0:
                    continue
                if not list_values(scores[r], s, m, norm, temp, contrib, p1, w[r], buf):
                    return False
                dr = didx[r]
                for i in range(m):
                    d = dr[s + i]
                    j = slot[d]
                    if j < 0:
                        slot[d] = n
                        local[n] = d
                        acc[n] = buf[i]
                        cnt[n] = 1.0
                        n += 1
                        lo = min(lo, d)
                        hi = max(hi, d)
                    else:
                        acc[j] += buf[i]
                        cnt[j] += 1.0
            counts[q] = n
            if n == 0:
                continue
            # doc-desc order: scan the doc range when it is narrow, else sort the query's own docs
            if hi - lo < 8 * n * (1 + int(np.log2(n))):
                k = 0
                for d in range(hi, lo - 1, -1):
                    if slot[d] >= 0:
                        local[k] = d
                        k += 1
            else:
                srt = np.sort(local[:n])
                for i in range(n):
                    local[i] = srt[n - 1 - i]
            for i in range(n):
                d = local[i]
                j = slot[d]
                x = acc[j]
                c = cnt[j]
                if combine == 1:
                    x = x * c
                elif combine == 2:
                    x = x / c
                elif combine == 3:
                    x = x * c ** p2
                elif combine == 4:
                    x = x * np.log(c + p2)
                out_doc[base + i] = d
                out_score[base + i] = x + 0.0  # -0.0 -> 0.0: equal scores must get equal keys
                slot[d] = -1
            base += n
        return True

    @numba.njit(cache=True, nogil=True)
    def make_keys(q0, q1, ub_off, off, bits, qshift, idxbits, keys):
        """Sort keys (query | truncated desc score | position) of queries q0..q1-1, in place of their candidates.

        Query q's candidates lie at ``off[q] + shift`` with ``shift = ub_off[q0] - off[q0]`` (see accumulate).
        """
        sign = np.uint64(1) << np.uint64(63)
        shift = ub_off[q0] - off[q0]
        for q in range(q0, q1):
            a = off[q] + shift
            qk = np.uint64(q) << np.uint64(qshift) if qshift < 64 else np.uint64(0)
            for i in range(off[q + 1] - off[q]):
                b = bits[a + i]
                asc = b ^ sign if (b & sign) == 0 else ~b
                keys[a + i] = qk | ((~asc >> np.uint64(64 - qshift + idxbits)) << np.uint64(idxbits)) | np.uint64(i)

    @numba.njit(cache=True, nogil=True)
    def emit(q0, q1, keys, ub_off, off, doc, sc, idxbits, depth, out_off, out_doc, out_score):
        """Write queries q0..q1-1 in key order to ``out_off``, re-ordering truncated-key groups exactly."""
        mask = (np.uint64(1) << np.uint64(idxbits)) - np.uint64(1)
        shift = ub_off[q0] - off[q0]
        maxn = 1
        for q in range(q0, q1):
            maxn = max(maxn, off[q + 1] - off[q])
        perm = np.empty(maxn, dtype=np.int64)
        for q in range(q0, q1):
            a = off[q] + shift
            n = off[q + 1] - off[q]
            o = out_off[q]
            for i in range(n):
                perm[i] = a + np.int64(keys[a + i] & mask)
            i = 0
            while i < n:
                j = i + 1
                hk = keys[a + i] >> np.uint64(idxbits)
                while j < n and (keys[a + j] >> np.uint64(idxbits)) == hk:
                    j += 1
                if j - i > 1:  # exact order inside the group: score desc, then doc desc
                    for u in range(i + 1, j):
                        x = perm[u]
                        v = u - 1
                        while v >= i and (sc[perm[v]] < sc[x] or (sc[perm[v]] == sc[x] and doc[perm[v]] < doc[x])):
                            perm[v + 1] = perm[v]
                            v -= 1
                        perm[v + 1] = x
                i = j
            for i in range(min(n, depth)):
                out_doc[o + i] = doc[perm[i]]
                out_score[o + i] = sc[perm[i]]

    return {"accumulate": accumulate, "make_keys": make_keys, "emit": emit}


def _readonly(x: np.ndarray, dtype) -> np.ndarray:
    """A read-only contiguous view (no copy when possible): numba types read-only and writable arrays apart, and a
    tuple of arrays must be of one type, whatever mix of Arrow-backed (read-only) and numpy inputs arrives."""
    v = np.ascontiguousarray(x, dtype=dtype).view()
    v.flags.writeable = False
    return v


def _n_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _chunks(weight: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split queries into ``parts`` contiguous ranges of about equal total ``weight``."""
    Q = weight.size
    if parts <= 1 or Q < 2:
        return [(0, Q)]
    cum = np.cumsum(weight, dtype=np.float64)
    total = cum[-1] if Q else 0.0
    cuts = [0] + [int(np.searchsorted(cum, total * i / parts, side="left")) for i in range(1, parts)] + [Q]
    cuts = sorted(set(min(max(c, 0), Q) for c in cuts))
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _parallel(fn, ranges, *args) -> list:
    """``fn(q0, q1, *args)`` for each query range, on threads (the kernels release the GIL); the results."""
    if len(ranges) == 1:
        return [fn(ranges[0][0], ranges[0][1], *args)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ranges)) as ex:
        futures = [ex.submit(fn, a, b, *args) for a, b in ranges[1:]]
        first = fn(ranges[0][0], ranges[0][1], *args)
        return [first] + [f.result() for f in futures]


def fast_fuse(runs: list, spec: FastSpec, norm: str, norm_kw: dict, weights: np.ndarray | None, params: dict,
              depth: int | None, name: str):
    """Fuse with the compiled single pass; returns None when it does not apply (caller takes the general path)."""
    k = _kernels()
    if k is None or norm not in NORM_CODE:
        return None
    from ..errors import InputError, ParameterError
    from ..run import Run
    from .align import _union_first_seen, _union_sorted, doc_tables

    temp = float(norm_kw.get("temperature", 1.0))
    if norm == "softmax" and not temp > 0:
        raise ParameterError(f"softmax normalization: temperature must be > 0, got {temp}")
    if depth is not None:
        runs = [r.cut(depth) for r in runs]
    R = len(runs)
    query_ids, qmaps = _union_first_seen([r.query_ids for r in runs])
    doc_ids, dmaps = _union_sorted(doc_tables(runs), lazy=True)
    Q, D = int(query_ids.size), len(doc_ids)
    seg_start = np.zeros((R, Q), dtype=np.int64)
    seg_len = np.zeros((R, Q), dtype=np.int64)
    for i, (qm, r) in enumerate(zip(qmaps, runs)):  # loop over runs, never over queries
        seg_start[i, qm] = r.offsets[:-1]
        seg_len[i, qm] = np.diff(r.offsets)
    if R > 1 and not (seg_len > 0).all(axis=0).any():
        raise InputError(f"runs {', '.join(repr(str(r.name)) for r in runs)} have no query in common")
    # one array per run (a tuple: no concatenated copy of the inputs)
    didx = tuple(_readonly(r.doc_idx if dm.size == D else dm[r.doc_idx], np.int64) for dm, r in zip(dmaps, runs))
    scores = tuple(_readonly(r.scores, np.float64) for r in runs)
    w = np.ones(R) if weights is None else np.asarray(weights, dtype=np.float64)
    contrib, combine, p1n, p2n = spec
    p1 = float(params[p1n]) if p1n else 0.0
    p2 = float(params[p2n]) if p2n else 0.0

    ub = seg_len.sum(axis=0)
    ub_off = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(ub, out=ub_off[1:])
    N = int(ub_off[-1])
    ranges = _chunks(ub.astype(np.float64), _n_threads() if N >= 200_000 else 1)
    # Upper-bound buffers: np.empty does not touch memory, and each range fills only its fused candidates.
    doc = np.empty(N, dtype=np.int64)
    sc = np.empty(N, dtype=np.float64)
    counts = np.zeros(Q, dtype=np.int64)
    finite = _parallel(k["accumulate"], ranges, seg_start, seg_len, didx, scores, w, D, NORM_CODE[norm], temp,
                       CONTRIB[contrib], p1, COMBINE[combine], p2, ub_off, doc, sc, counts)
    if not all(finite):
        return None  # +-inf need the general path's per-list clamping (NaN is reported there too)
    off = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    qbits = int(Q - 1).bit_length() if Q > 1 else 0
    idxbits = max(1, int(int(counts.max(initial=1)) - 1).bit_length())
    if 64 - qbits - idxbits < _MIN_SCORE_BITS:
        return None
    keys = np.empty(N, dtype=np.uint64)
    _parallel(k["make_keys"], ranges, ub_off, off, sc.view(np.uint64), 64 - qbits, idxbits, keys)
    regions = [(int(ub_off[a]), int(ub_off[a] + off[b] - off[a])) for a, b in ranges]
    if any(np.isnan(sc[x:y]).any() for x, y in regions):
        raise InputError(f"fusion method {name!r} produced NaN scores")
    # the query sits in the keys' top bits: sorting each range's region sorts its queries independently
    _parallel(lambda i, _: keys[regions[i][0]:regions[i][1]].sort(), [(i, i + 1) for i in range(len(ranges))])

    cut = depth if depth is not None else int(counts.max(initial=0))
    out_counts = np.minimum(counts, cut)
    out_off = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(out_counts, out=out_off[1:])
    out_doc = np.empty(int(out_off[-1]), dtype=np.int64)
    out_score = np.empty(int(out_off[-1]), dtype=np.float64)
    _parallel(k["emit"], ranges, keys, ub_off, off, doc, sc, idxbits, cut, out_off, out_doc, out_score)
    keys = doc = sc = None  # free before the doc table work

    # The doc table may stay the union of the inputs' (a sorted superset of the docs used, as after Run.cut): it
    # is shared with the inputs, while filtering millions of Python strings would cost more than the fusion.
    # It is compacted when most of it is unused (a small depth over large lists).
    used = np.zeros(D, dtype=bool)
    used[out_doc] = True
    n_used = int(np.count_nonzero(used))
    if 2 * n_used < D:
        remap = np.cumsum(used) - 1
        out_doc = remap[out_doc]
        if isinstance(doc_ids, np.ndarray):
            doc_ids = doc_ids[used]
        else:  # an Arrow-backed table (run._LazyIds)
            import pyarrow as pa

            doc_ids = type(doc_ids)(doc_ids.arrow.filter(pa.array(used)))
    return Run(query_ids, doc_ids, out_off, out_doc, out_score, name)
