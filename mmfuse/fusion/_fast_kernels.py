"""Compiled kernels of mmfuse.fusion.fast, at module level so that numba caches them across processes."""

from __future__ import annotations

import math

import numba
import numpy as np

BIG = 2.0 ** 500  # lists past this magnitude are scaled exactly before normalising (see mmfuse.fusion.norm)


@numba.njit(cache=True, nogil=True)
def list_values(score, s, m, norm, temp, contrib, p1, wr, buf):
    """Contributions of one (run, query) list ``score[s:s+m]`` into ``buf[:m]``; False if a score is not finite.

    Same formulas and 1e-9 floors as norm.py / the method functions, one branch per list, not per entry. Rank
    contributions never read the scores (an infinite score does not change a rank). Like norm.py, min-max, zmuv and
    sum work on the list times an exact power of two ``f`` (1 unless the list exceeds ``BIG``, so the usual lists
    get exactly the unscaled arithmetic).
    """
    mn = score[s]
    mx = score[s]
    tot = 0.0
    for e in range(s, s + m if contrib == 0 else s):
        v = score[e]
        if not np.isfinite(v):
            return False
        mn = min(mn, v)
        mx = max(mx, v)
        tot += v
    f = 1.0
    if contrib == 0 and 1 <= norm <= 4:
        amax = max(abs(mn), abs(mx))
        if amax > BIG:  # differences, sums and squares of such scores overflow
            f = math.ldexp(1.0, -math.frexp(amax)[1])
            mn *= f
            mx *= f
            tot = 0.0
            for e in range(s, s + m):
                tot += score[e] * f
    eps = 1e-9 * f
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
        den = max(mx - mn, eps)
        for i in range(m):
            buf[i] = (mx - score[s + i] * f) / den * wr
    elif norm == 7:
        z = 0.0
        for i in range(m):
            buf[i] = np.exp((score[s + i] - mx) / temp)
            z += buf[i]
        for i in range(m):
            buf[i] = buf[i] / z * wr
    else:
        if norm == 1:
            a, b = mn, max(mx - mn, eps)
        elif norm == 3:
            a = tot / m
            ss = 0.0
            for e in range(s, s + m):
                d = score[e] * f - a
                ss += d * d
            b = max(np.sqrt(ss / m), eps)
        elif norm == 4:
            a, b = mn, max(tot - m * mn, eps)
        else:  # 5: max
            a, b = 0.0, max(mx, eps)
        for i in range(m):
            buf[i] = (score[s + i] * f - a) / b * wr
    return True


@numba.njit(cache=True, nogil=True)
def accumulate(q0, q1, seg_start, seg_len, didx, scores, w, slot, norm, temp, contrib, p1, combine, p2,
               ub_off, out_doc, out_score, out_bits, qshift, idxbits, keys, counts):
    """Fuse queries q0..q1-1, writing their candidates (doc-desc order) densely from ``ub_off[q0]`` on.

    ``didx``/``scores`` are tuples with one array per run; ``seg_start[r, q]`` indexes run r's arrays. Only
    the memory actually filled is touched (``ub_off`` is an upper bound: every entry a new doc). ``slot`` is a
    per-doc scratch array (at least the doc count long), -1 everywhere on entry and again after a True return.
    Each candidate also gets its sort key in ``keys`` (query | truncated desc score | position; ``out_bits`` is
    ``out_score`` viewed as uint64): see mmfuse.fusion.fast.
    Returns False (and stops) at the first non-finite score: the caller then takes the general path.
    """
    R = len(didx)
    maxn = 1
    maxm = 1
    for q in range(q0, q1):
        maxn = max(maxn, ub_off[q + 1] - ub_off[q])
        for r in range(R):
            maxm = max(maxm, seg_len[r, q])
    n_docs = slot.size  # scratch: -1 everywhere on entry, and again on a True return
    sign = np.uint64(1) << np.uint64(63)
    drop = np.uint64(64 - qshift + idxbits)
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
        qk = np.uint64(q) << np.uint64(qshift) if qshift < 64 else np.uint64(0)
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
            b = out_bits[base + i]
            asc = b ^ sign if (b & sign) == 0 else ~b
            keys[base + i] = qk | ((~asc >> drop) << np.uint64(idxbits)) | np.uint64(i)
        base += n
    return True


@numba.njit(cache=True, nogil=True)
def emit(q0, q1, keys, ub_off, off, doc, sc, idxbits, depth, out_off, out_doc, out_score):
    """Write queries q0..q1-1 in key order to ``out_off``, re-ordering truncated-key groups exactly."""
    mask = (np.uint64(1) << np.uint64(idxbits)) - np.uint64(1)
    shift = ub_off[q0] - off[q0]
    maxn = 1
    for q in range(q0, q1):
        maxn = max(maxn, off[q + 1] - off[q])
    perm = np.empty(maxn, dtype=np.int64)
    ib = np.uint64(idxbits)
    for q in range(q0, q1):
        a = off[q] + shift
        n = off[q + 1] - off[q]
        o = out_off[q]
        if n == 0:
            continue
        # one pass: positions from the keys, and whether any two neighbours share a truncated key
        shared = False
        prev = keys[a] >> ib
        perm[0] = a + np.int64(keys[a] & mask)
        for i in range(1, n):
            k = keys[a + i]
            perm[i] = a + np.int64(k & mask)
            hk = k >> ib
            shared |= hk == prev
            prev = hk
        i = 0
        while shared and i < n:
            j = i + 1
            hk = keys[a + i] >> ib
            while j < n and (keys[a + j] >> ib) == hk:
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
