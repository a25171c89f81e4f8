"""Compiled kernels of mmfuse.runs.fastio, at module level so that numba caches them across processes."""

from __future__ import annotations

import numba
import numpy as np


def _pow5_table() -> np.ndarray:
    """128-bit truncated powers of five for q in [-342, 308], as (high, low) uint64 rows (Eisel-Lemire)."""
    rows = []
    for q in range(-342, 0):
        p5 = 5 ** -q
        z = p5.bit_length()
        b = 2 * z + 128 if q < -27 else z + 127
        c = 2 ** b // p5 + 1
        while c >= 1 << 128:
            c //= 2
        rows.append(c)
    for q in range(0, 309):
        p5 = 5 ** q
        while p5 < 1 << 127:
            p5 *= 2
        while p5 >= 1 << 128:
            p5 //= 2
        rows.append(p5)
    return np.array([[c >> 64, c & (2**64 - 1)] for c in rows], dtype=np.uint64)


P5 = _pow5_table()
U32 = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


@numba.njit(cache=True, nogil=True, inline="always")
def mul128(a, b):
    """(high, low) of the 128-bit product of two uint64."""
    a_lo, a_hi = a & U32, a >> S32
    b_lo, b_hi = b & U32, b >> S32
    p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (p0 >> S32) + (p1 & U32) + (p2 & U32)
    return p3 + (p1 >> S32) + (p2 >> S32) + (mid >> S32), (p0 & U32) | (mid << S32)


@numba.njit(cache=True, nogil=True)
def parse_float(data, a, b):
    """IEEE bits of the correctly rounded float of the number starting at ``data[a]`` (decimal syntax, <= 19
    significant digits, not past ``b``), as (True, bits, stop) with ``stop`` the index after its last byte: the
    caller checks that the token ends there. (False, 0, a) for what it leaves to the caller's general parser.

    Eisel-Lemire (as in fast_float): w * 10^q from a 64x128-bit product with a truncated power of five.
    Subnormals, overflow, inf/nan and longer mantissas are left to the caller's general parser.
    """
    i = a
    neg = False
    if i < b and (data[i] == 45 or data[i] == 43):
        neg = data[i] == 45
        i += 1
    d0 = i
    while i < b and data[i] == 48:  # leading zeros are not significant digits
        i += 1
    i1 = i
    w = np.uint64(0)
    # the two digit loops stay written out: an inlined helper returning (end, w) made parsing ~20% slower
    while i < b:
        c = np.int64(data[i]) - 48
        if c < 0 or c > 9:
            break
        w = w * np.uint64(10) + np.uint64(c)
        i += 1
    nd = i - i1  # significant digits (> 19 are left to the caller)
    seen = i > d0
    q = 0
    if i < b and data[i] == 46:
        f0 = i + 1
        i = f0
        if nd == 0:
            while i < b and data[i] == 48:
                i += 1
        f1 = i
        while i < b:
            c = np.int64(data[i]) - 48
            if c < 0 or c > 9:
                break
            w = w * np.uint64(10) + np.uint64(c)
            i += 1
        q = f0 - i
        nd += i - f1
        seen = seen or i > f0
    if not seen or nd > 19:
        return False, np.uint64(0), a
    if i < b and (data[i] == 101 or data[i] == 69):
        i += 1
        eneg = False
        if i < b and (data[i] == 45 or data[i] == 43):
            eneg = data[i] == 45
            i += 1
        e = 0
        ed = 0
        while i < b and 48 <= data[i] <= 57:
            e = e * 10 + (data[i] - 48)
            ed += 1
            i += 1
        if ed == 0 or ed > 4:
            return False, np.uint64(0), a
        q += -e if eneg else e
    stop = i  # the caller checks that the token ends here
    if w == 0:
        return True, (np.uint64(1) << np.uint64(63)) if neg else np.uint64(0), stop
    if q < -342 or q > 308:
        return False, np.uint64(0), a
    lz = 0
    x = w
    for sh in (32, 16, 8, 4, 2, 1):  # count leading zeros by halving
        if x < np.uint64(1) << np.uint64(64 - sh):
            x = x << np.uint64(sh)
            lz += sh
    idx = q + 342
    hi, lo = mul128(x, P5[idx, 0])
    if (hi & np.uint64(0x1FF)) == np.uint64(0x1FF):
        hi2, _ = mul128(x, P5[idx, 1])
        lo2 = lo + hi2
        if hi2 > lo2:
            hi += np.uint64(1)
        lo = lo2
    upper = np.int64(hi >> np.uint64(63))
    shift = np.uint64(upper + 9)
    m = hi >> shift
    power2 = ((217706 * q) >> 16) + 63 + upper - lz + 1023
    if power2 <= 0 or power2 >= 2047:
        return False, np.uint64(0), a
    if lo <= np.uint64(1) and -4 <= q <= 23 and (m & np.uint64(3)) == np.uint64(1):
        if (m << shift) == hi:
            m = m & ~np.uint64(1)
    m += m & np.uint64(1)
    m = m >> np.uint64(1)
    if m >= np.uint64(1) << np.uint64(53):
        m = np.uint64(1) << np.uint64(52)
        power2 += 1
        if power2 >= 2047:
            return False, np.uint64(0), a
    m = m & ~(np.uint64(1) << np.uint64(52))
    bits = m | (np.uint64(power2) << np.uint64(52))
    if neg:
        bits = bits | (np.uint64(1) << np.uint64(63))
    return True, bits, stop


@numba.njit(cache=True, nogil=True)
def parse_floats(data, starts, ends, bits, ok):
    """``parse_float`` over many tokens (used by the tests against Python's float)."""
    for i in range(starts.size):
        o, bits[i], stop = parse_float(data, starts[i], ends[i])
        ok[i] = o and stop == ends[i]


@numba.njit(cache=True, nogil=True)
def tokenize(data, lo, hi, n_min, n_max, colmap, int_col, tag_col, group_col, float_col, fbits, fallback, nfb,
             offs, bufs, out_base, tag, groups, high):
    """Split ``data[lo:hi]`` into lines and whitespace-separated columns; copy wanted columns into ``bufs``.

    ``colmap[col]`` is the row of ``bufs``/``offs`` that column ``col`` goes to (-1: not wanted). Each row is
    filled from byte ``out_base`` on and ``offs[row, 1 + line]`` gets the end of that line's string (relative
    to ``out_base``); ``high[row]`` is set when a copied byte is >= 0x80 (UTF-8 then needs validating).
    Column ``group_col`` is not copied: each line where its value differs from the previous line's starts a
    group, recorded in ``groups[g] = (first line, start, end)``. Column ``float_col`` is parsed into
    ``fbits[line]`` (IEEE bits); tokens ``parse_float`` declines go to ``fallback[j] = (line, start, end)``
    with their count in ``nfb[0]``. ``tag[:]`` gets the first line's (start, end)
    of column ``tag_col`` when present. Returns (lines, groups); lines is -1 when a line has fewer than
    ``n_min`` or more than ``n_max`` columns or column ``int_col`` is not an integer.
    """
    C = bufs.shape[0]
    fill = np.zeros(C, dtype=np.int64)
    pos = lo
    out = 0
    ng = 0
    gs, ge = -1, -1
    ok, fb, stop = False, np.uint64(0), 0
    while pos < hi:
        col = 0
        while pos < hi:
            c = data[pos]
            if c == 10:
                break
            if c == 32 or (c >= 9 and c <= 13):
                pos += 1
                continue
            start = pos
            if col == float_col:  # parse while scanning: the token's bytes are read once
                ok, fb, stop = parse_float(data, start, hi)
                pos = max(stop, start + 1)
            else:
                pos += 1
            while pos < hi:
                c = data[pos]
                if c == 32 or (c >= 9 and c <= 13):
                    break
                pos += 1
            if col >= n_max:
                return -1, 0
            k = colmap[col]
            if k >= 0:
                f = out_base + fill[k] - start
                h = 0
                for i in range(start, pos):
                    x = data[i]
                    h |= x
                    bufs[k, f + i] = x
                if h >= 128:
                    high[k] = True
                fill[k] += pos - start
            elif col == float_col:
                fbits[out] = fb
                if not ok or stop != pos:
                    j = nfb[0]
                    fallback[j, 0] = out
                    fallback[j, 1] = start
                    fallback[j, 2] = pos
                    nfb[0] = j + 1
            elif col == group_col:
                same = ge - gs == pos - start
                if same:
                    for i in range(pos - start):
                        if data[gs + i] != data[start + i]:
                            same = False
                            break
                if not same:
                    groups[ng, 0] = out
                    groups[ng, 1] = start
                    groups[ng, 2] = pos
                    ng += 1
                    gs, ge = start, pos
            if col == int_col:
                i = start
                if data[i] == 43 or data[i] == 45:  # sign
                    i += 1
                if i == pos:
                    return -1, 0
                while i < pos:
                    if data[i] < 48 or data[i] > 57:
                        return -1, 0
                    i += 1
            if col == tag_col and out == 0:
                tag[0] = start
                tag[1] = pos
            col += 1
        pos += 1  # the newline
        if col == 0:
            continue  # blank line
        if col < n_min:
            return -1, 0
        out += 1
        for k in range(C):
            offs[k, out] = fill[k]
    return out, ng


@numba.njit(cache=True, nogil=True)
def id_stats(offsets, data, lo, hi, ref, present):
    """Over strings lo..hi-1: length of the prefix they share with ``ref``, and the longest string.

    Marks every byte value after that prefix in ``present`` (bytes between this prefix and a shorter one
    shared with other ranges are marked when the ranges are merged: see ``_key_plan``).
    """
    p = ref.size
    for i in range(lo, hi):
        a, b = offsets[i], offsets[i + 1]
        m = min(p, b - a)
        j = 0
        while j < m and data[a + j] == ref[j]:
            j += 1
        p = j
    longest = 0
    for i in range(lo, hi):
        a, b = offsets[i], offsets[i + 1]
        longest = max(longest, b - a)
        for j in range(a + p, b):
            present[data[j]] = True
    return p, longest


@numba.njit(cache=True, nogil=True)
def id_fill(offsets, data, lo, hi, p, L, rank, B, idx_bits, packed, keys):
    """Keys of strings lo..hi-1: bytes after the shared prefix ``p`` as L digits base B, padded with 0."""
    for i in range(lo, hi):
        a, b = offsets[i] + p, offsets[i + 1]
        k = np.uint64(0)
        for j in range(L):
            k = k * B + (rank[data[a + j]] if a + j < b else np.uint64(0))
        keys[i] = (k << np.uint64(idx_bits)) | np.uint64(i) if packed else k


@numba.njit(cache=True, nogil=True)
def codes_from_sorted(sorted_keys, order, idx_bits, packed):
    """Codes (rank of each distinct id) per original position, and the position of each id's first copy."""
    n = sorted_keys.size
    mask = (np.uint64(1) << np.uint64(idx_bits)) - np.uint64(1)
    codes = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    u = -1
    prev = np.uint64(0)
    for i in range(n):
        k = sorted_keys[i]
        if packed:
            pos = np.int64(k & mask)
            key = k >> np.uint64(idx_bits)
        else:
            pos = order[i]
            key = k
        if i == 0 or key != prev:
            u += 1
            first[u] = pos
            prev = key
        codes[pos] = u
    return codes, first[:u + 1].copy()


@numba.njit(cache=True, nogil=True)
def merge_sorted(a, b, out):
    """Merge two ascending uint64 arrays into ``out``."""
    i = j = 0
    na, nb = a.size, b.size
    for o in range(na + nb):
        if j >= nb or (i < na and a[i] <= b[j]):
            out[o] = a[i]
            i += 1
        else:
            out[o] = b[j]
            j += 1


@numba.njit(cache=True, nogil=True)
def merge_keys(keys, tb, lo, hi, maps, src):
    """Merge the strictly increasing key runs ``keys[tb[t]+lo[t] : tb[t]+hi[t]]`` of every table t.

    ``maps[j]`` (j indexing ``keys``) gets the entry's position in the merged union (counted from 0 within
    this call), ``src[u]`` the ``keys`` index of union entry u's first holder. Returns the union size.
    """
    T = tb.size - 1
    head = lo.copy()
    u = 0
    while True:
        best = -1
        bk = np.uint64(0)
        for t in range(T):
            if head[t] < hi[t]:
                k = keys[tb[t] + head[t]]
                if best < 0 or k < bk:
                    best, bk = t, k
        if best < 0:
            return u
        src[u] = tb[best] + head[best]
        for t in range(T):
            h = head[t]
            if h < hi[t] and keys[tb[t] + h] == bk:
                maps[tb[t] + h] = u
                head[t] = h + 1
        u += 1


# ----------------------------------------------------------------------------- run layout checks
@numba.njit(cache=True, nogil=True)
def grouped_has_dup(qcodes, dcodes, n_queries, n_docs):
    """For entries grouped by query: 1 if a (query, doc) pair repeats, 0 if not; -1 when not grouped."""
    seen_q = np.zeros(n_queries, dtype=np.bool_)
    mark = np.zeros(n_docs, dtype=np.bool_)
    start = 0
    for e in range(qcodes.size):
        q = qcodes[e]
        if e > 0 and q != qcodes[e - 1]:
            for j in range(start, e):
                mark[dcodes[j]] = False
            start = e
            if seen_q[q]:
                return -1
        seen_q[q] = True
        d = dcodes[e]
        if mark[d]:
            return 1
        mark[d] = True
    return 0

@numba.njit(cache=True, nogil=True)
def check_grouped(qcodes, scores, dcodes, n_queries, n_docs, offsets):
    """One pass over a run's entries: 0 = grouped by ascending query, ordered (score desc, doc desc) and free of
    repeated (query, doc) pairs, with ``offsets`` filled; 1 = a pair repeats (within a grouped query); 2 = not
    in that layout (the caller sorts and checks in general)."""
    n = qcodes.size
    mark = np.zeros(n_docs, dtype=np.bool_)
    offsets[:] = 0
    start = 0
    for e in range(n):
        q = qcodes[e]
        if e > 0 and q != qcodes[e - 1]:
            if q < qcodes[e - 1]:
                return 2
            for j in range(start, e):
                mark[dcodes[j]] = False
            start = e
        elif e > 0:
            if scores[e] > scores[e - 1] or (scores[e] == scores[e - 1] and dcodes[e] >= dcodes[e - 1]):
                if mark[dcodes[e]]:
                    return 1
                return 2
        d = dcodes[e]
        if mark[d]:
            return 1
        mark[d] = True
        offsets[q + 1] += 1
    for q in range(n_queries):
        offsets[q + 1] += offsets[q]
    return 0
