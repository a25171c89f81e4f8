"""Compiled text kernels for run/qrels I/O: a TREC-style tokenizer and byte-order sort keys for id columns.

Why not pyarrow's CSV reader and ``sort_indices``: on a 1M-line run they cost ~0.25 s and ~0.15 s (generic CSV
state machine; comparison sort of strings). Here one pass over the bytes copies the wanted columns into Arrow
string buffers (scores are then parsed by Arrow's exact ``cast``), and id columns are sorted as integers: after
stripping the prefix every id shares, the remaining bytes are read as digits of a number in the base of the bytes
that occur, which orders exactly like the bytes, so a ``np.sort`` of (key, position) packed into uint64 sorts them.
Anything unusual (a column count outside the spec, a non-integer rank, invalid UTF-8, a NUL byte, ids too long
to pack) returns a "no" and the callers take their general path, which also produces the exact error messages.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tokenize_columns", "encode_sorted", "union_sorted"]

_K: dict | None = None


def _kernels() -> dict | None:
    global _K
    if _K is None:
        try:
            _K = _build()
        except Exception:  # noqa: BLE001 - no numba: callers use their pyarrow paths
            _K = {}
    return _K or None


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


def _build() -> dict:
    import numba

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
        """IEEE bits of the correctly rounded float of ``data[a:b]`` (decimal syntax, <= 19 significant digits),
        as (True, bits); (False, 0) for what it leaves to the caller's general parser.

        Eisel-Lemire (as in fast_float): w * 10^q from a 64x128-bit product with a truncated power of five.
        Subnormals, overflow, inf/nan and longer mantissas are left to the caller's general parser.
        """
        i = a
        neg = False
        if i < b and (data[i] == 45 or data[i] == 43):
            neg = data[i] == 45
            i += 1
        w = np.uint64(0)
        d0 = i
        while i < b:
            c = np.int64(data[i]) - 48
            if c < 0 or c > 9:
                break
            w = w * np.uint64(10) + np.uint64(c)
            i += 1
        nd = i - d0  # digits so far (leading zeros included: > 19 digits are left to the caller)
        q = 0
        if i < b and data[i] == 46:
            i += 1
            f0 = i
            while i < b:
                c = np.int64(data[i]) - 48
                if c < 0 or c > 9:
                    break
                w = w * np.uint64(10) + np.uint64(c)
                i += 1
            q = f0 - i
            nd += i - f0
        if nd == 0 or nd > 19:
            return False, np.uint64(0)
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
                return False, np.uint64(0)
            q += -e if eneg else e
        if i != b:
            return False, np.uint64(0)
        if w == 0:
            return True, (np.uint64(1) << np.uint64(63)) if neg else np.uint64(0)
        if q < -342 or q > 308:
            return False, np.uint64(0)
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
            return False, np.uint64(0)
        if lo <= np.uint64(1) and -4 <= q <= 23 and (m & np.uint64(3)) == np.uint64(1):
            if (m << shift) == hi:
                m = m & ~np.uint64(1)
        m += m & np.uint64(1)
        m = m >> np.uint64(1)
        if m >= np.uint64(1) << np.uint64(53):
            m = np.uint64(1) << np.uint64(52)
            power2 += 1
            if power2 >= 2047:
                return False, np.uint64(0)
        m = m & ~(np.uint64(1) << np.uint64(52))
        bits = m | (np.uint64(power2) << np.uint64(52))
        if neg:
            bits = bits | (np.uint64(1) << np.uint64(63))
        return True, bits

    @numba.njit(cache=True, nogil=True)
    def parse_floats(data, starts, ends, bits, ok):
        """``parse_float`` over many tokens (used by the tests against Python's float)."""
        for i in range(starts.size):
            ok[i], bits[i] = parse_float(data, starts[i], ends[i])

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
                    ok, fb = parse_float(data, start, pos)
                    fbits[out] = fb
                    if not ok:
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

    return {"merge_keys": merge_keys, "tokenize": tokenize, "id_stats": id_stats, "id_fill": id_fill, "codes_from_sorted": codes_from_sorted,
            "parse_floats": parse_floats}


def _string_buffers(arr) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64, data uint8) numpy views of a null-free Arrow (large_)string array."""
    import pyarrow as pa

    _, ob, db = arr.buffers()
    odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(ob, dtype=odt)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(db, dtype=np.uint8) if db is not None else np.zeros(0, dtype=np.uint8)
    return offsets.astype(np.int64), data


def _key_plan(k, parts: list[tuple[np.ndarray, np.ndarray, int, int]], idx_bits: int):
    """Shared prefix, digit count, base and byte ranks for integer keys over string ranges, or None.

    ``parts`` are (offsets, data, lo, hi) ranges, all compared against the first string of the first one.
    """
    o0, d0 = parts[0][0], parts[0][1]
    ref = np.ascontiguousarray(d0[o0[parts[0][2]]:o0[parts[0][2] + 1]])
    present = np.zeros((len(parts), 256), dtype=np.bool_)
    stats = _threads(lambda i: k["id_stats"](parts[i][0], parts[i][1], parts[i][2], parts[i][3], ref, present[i]),
                     len(parts))
    p = min(st[0] for st in stats)
    used = present.any(axis=0)
    used[ref[p:max(st[0] for st in stats)]] = True  # bytes after the common prefix that a range shares with ref
    if used[0]:
        return None  # NUL would collide with the padding digit
    L = max(st[1] for st in stats) - p
    B = int(used.sum()) + 1
    if B ** L > 2**64 - 1:
        return None  # ids too long and varied to pack: the caller's comparison sort
    rank = np.zeros(256, dtype=np.uint64)
    rank[used] = np.arange(1, B, dtype=np.uint64)
    return p, L, B, rank, B ** L <= 2 ** (64 - idx_bits)


def encode_sorted(arr):
    """(codes int64, sorted unique Arrow table) of a null-free Arrow string array, or None when not applicable."""
    k = _kernels()
    n = len(arr)
    if k is None or n < 2 or arr.null_count:
        return None
    offsets, data = _string_buffers(arr)
    ranges = [(0, n)] if n < 200_000 else [(0, n // 2), (n // 2, n)]
    idx_bits = max(1, int(n - 1).bit_length())
    plan = _key_plan(k, [(offsets, data, a, b) for a, b in ranges], idx_bits)
    if plan is None:
        return None
    p, L, B, rank, packed = plan
    keys = np.empty(n, dtype=np.uint64)
    _threads(lambda i: k["id_fill"](offsets, data, ranges[i][0], ranges[i][1], p, L, rank, np.uint64(B), idx_bits,
                                    packed, keys), len(ranges))
    if packed:
        keys.sort()  # (key, position) pairs: no argsort needed
        order = np.empty(0, dtype=np.int64)
    else:
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
    codes, first = k["codes_from_sorted"](keys, order, idx_bits, packed)
    import pyarrow as pa

    return codes, arr.take(pa.array(first))


def union_sorted(tables: list) -> tuple | None:
    """Sorted union of byte-sorted, duplicate-free Arrow string tables and each table's positions in it.

    Returns (union Arrow array, [int64 map per table]) or None when the ids cannot be keyed (the caller then
    uses Arrow's hash-and-sort). Integer keys keep byte order, so the union is a linear merge of the tables'
    key arrays, done in two halves of the key range on two threads.
    """
    k = _kernels()
    if k is None or any(t.null_count for t in tables) or any(len(t) == 0 for t in tables):
        return None
    import pyarrow as pa

    bufs = [_string_buffers(t) for t in tables]
    plan = _key_plan(k, [(o, d, 0, len(t)) for (o, d), t in zip(bufs, tables)], 0)
    if plan is None:
        return None
    p, L, B, rank, _ = plan
    sizes = np.array([len(t) for t in tables], dtype=np.int64)
    tb = np.zeros(len(tables) + 1, dtype=np.int64)
    np.cumsum(sizes, out=tb[1:])
    keys = np.empty(int(tb[-1]), dtype=np.uint64)
    _threads(lambda i: k["id_fill"](bufs[i][0], bufs[i][1], 0, len(tables[i]), p, L, rank, np.uint64(B), 0, False,
                                    keys[tb[i]:tb[i + 1]]), len(tables))
    for i in range(len(tables)):  # a table that is not strictly sorted (not a Run's doc table) cannot be merged
        kk = keys[tb[i]:tb[i + 1]]
        if kk.size > 1 and not (kk[1:] > kk[:-1]).all():
            return None
    maps = np.empty(keys.size, dtype=np.int64)
    src = np.empty(keys.size, dtype=np.int64)
    # split the key range at the median key of the largest table: both halves merge independently
    big = int(np.argmax(sizes))
    pivot = keys[tb[big] + sizes[big] // 2]
    mid = np.array([np.searchsorted(keys[tb[i]:tb[i + 1]], pivot) for i in range(len(tables))], dtype=np.int64)
    zero = np.zeros_like(mid)
    halves = [(zero, mid), (mid, sizes)]
    src2 = np.empty(keys.size, dtype=np.int64)
    n0, n1 = _threads(lambda i: k["merge_keys"](keys, tb, halves[i][0], halves[i][1], maps, (src, src2)[i]), 2)
    for i in range(len(tables)):
        maps[tb[i] + mid[i]:tb[i + 1]] += n0
    src[n0:n0 + n1] = src2[:n1]
    n = n0 + n1
    union = pa.concat_arrays(tables).take(pa.array(src[:n]))
    return union, [maps[tb[i]:tb[i + 1]] for i in range(len(tables))]


def _threads(fn, n: int) -> list:
    """``[fn(0), ..., fn(n-1)]``, the calls after the first on threads (compiled kernels release the GIL)."""
    if n == 1:
        return [fn(0)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n - 1) as ex:
        futures = [ex.submit(fn, i) for i in range(1, n)]
        return [fn(0)] + [f.result() for f in futures]


def tokenize_columns(raw, n_min: int, n_max: int, cols: tuple[int, ...], int_col: int = -1, tag_col: int = -1,
                     group_col: int = -1, float_col: int = -1):
    """Columns of a whitespace-separated text (bytes or mmap): ``cols`` as Arrow string arrays, ``group_col``
    dictionary-encoded in first-seen order, ``float_col`` parsed to float64, and the first line's ``tag_col``.

    Returns (arrays, (codes, table) or None, floats or None, tag or None), or None when the text needs the
    line-by-line reader (see the module docstring); a text with no non-blank line gives ([], None, None, None).
    Large texts are split at a newline and tokenized on two threads (the kernel releases the GIL).
    """
    k = _kernels()
    if k is None:
        return None
    import pyarrow as pa

    data = np.frombuffer(raw, dtype=np.uint8)
    size = data.size
    C = len(cols)
    colmap = np.full(max(n_max, max(cols, default=0) + 1), -1, dtype=np.int64)
    for row, c in enumerate(cols):
        colmap[c] = row
    # A line that counts has at least n_min one-byte columns and their separators: this bounds the line count.
    max_lines = size // max(2 * n_min, 2) + 2
    # Scratch sized for the worst case: np.empty does not touch memory, only what is filled gets paged in.
    bufs = np.empty((C, max(size, 1)), dtype=np.uint8)
    cut = size
    if size >= 1 << 22:
        nl = raw.find(b"\n", size // 2)
        cut = size if nl < 0 else nl + 1
    parts = [(0, cut)] + ([(cut, size)] if cut < size else [])
    P = len(parts)
    offs = [np.zeros((C, max_lines + 1), dtype=np.int64) for _ in parts]
    tags = [np.full(2, -1, dtype=np.int64) for _ in parts]
    groups = [np.empty((max_lines if group_col >= 0 else 0, 3), dtype=np.int64) for _ in parts]
    fbits = [np.empty(max_lines if float_col >= 0 else 0, dtype=np.uint64) for _ in parts]
    fallback = [np.empty((max_lines if float_col >= 0 else 0, 3), dtype=np.int64) for _ in parts]
    nfb = np.zeros((P, 1), dtype=np.int64)
    high = np.zeros((P, C), dtype=np.bool_)

    def run(i: int):
        lo, hi = parts[i]
        return k["tokenize"](data, lo, hi, n_min, n_max, colmap, int_col, tag_col, group_col, float_col, fbits[i],
                             fallback[i], nfb[i], offs[i], bufs, lo, tags[i], groups[i], high[i])

    res = _threads(run, P)
    counts = [r[0] for r in res]
    if min(counts) < 0:
        return None
    n = sum(counts)
    if n == 0:
        return [], None, None, None
    arrays = []
    for row in range(C):
        o = offs[0][row, :counts[0] + 1]
        if P > 1:  # move the second part's strings next to the first's
            n1, lo2 = int(o[-1]), parts[1][0]
            n2 = int(offs[1][row, counts[1]])
            bufs[row, n1:n1 + n2] = bufs[row, lo2:lo2 + n2]
            o = np.concatenate([o, offs[1][row, 1:counts[1] + 1] + n1])
        nbytes = int(o[-1])
        typ, o = (pa.string(), o.astype(np.int32)) if nbytes < 2**31 - 1 else (pa.large_string(), o)
        # a view of the row: the untouched rest of the scratch rows was never paged in
        a = pa.Array.from_buffers(typ, n, [None, pa.py_buffer(o), pa.py_buffer(bufs[row, :nbytes])])
        if high[:, row].any():
            try:
                a.validate(full=True)  # UTF-8
            except pa.ArrowInvalid:
                return None
        arrays.append(a)
    encoded = None
    if group_col >= 0:
        first_line, ids = [], []
        for i, (cnt, ng) in enumerate(res):
            g = groups[i][:ng]
            first_line.append(g[:, 0] + (counts[0] if i else 0))
            ids.extend(bytes(data[s:e]) for s, e in g[:, 1:].tolist())
        try:
            ids = [x.decode("utf-8") for x in ids]
        except UnicodeDecodeError:
            return None
        table: dict[str, int] = {}
        gcodes = np.fromiter((table.setdefault(x, len(table)) for x in ids), dtype=np.int64, count=len(ids))
        codes = np.repeat(gcodes, np.diff(np.append(np.concatenate(first_line), n)))
        encoded = (codes, np.asarray(list(table), dtype=object))
    floats = None
    if float_col >= 0:
        floats = np.concatenate([fbits[i][:counts[i]] for i in range(P)]).view(np.float64)
        for i in range(P):  # the rare tokens the compiled parser leaves to Python (same syntax as the slow reader)
            base = counts[0] if i else 0
            for line, s, e in fallback[i][:int(nfb[i, 0])].tolist():
                try:
                    floats[base + line] = float(bytes(data[s:e]).decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    return None
    t = tags[0] if counts[0] else tags[-1]
    tag_text = bytes(data[t[0]:t[1]]).decode("utf-8", "replace") if t[0] >= 0 else None
    return arrays, encoded, floats, tag_text
