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
import threading

import numpy as np

from mmfuse.errors import InputError, ParameterError
from mmfuse.runs import Run
from mmfuse.utils.compiled import LazyKernels, threads

from .align import _union_sorted, doc_tables, query_union

__all__ = ["FastSpec", "fast_fuse", "CONTRIB", "COMBINE"]

CONTRIB = {"value": 0, "rrf": 1, "isr": 2, "rbc": 3}
COMBINE = {"sum": 0, "mnz": 1, "anz": 2, "pow": 3, "log": 4}
NORM_CODE = {"none": 0, "min-max": 1, "min-max-inverted": 2, "zmuv": 3, "sum": 4, "max": 5, "rank": 6, "softmax": 7}
_MIN_SCORE_BITS = 24  # fewer bits left for the score in a key would make the exact fix-up the main cost


class FastSpec(tuple):
    """(contribution, combination, name of the contribution's parameter, name of the combination's parameter)."""

    def __new__(cls, contrib: str, combine: str = "sum", p1: str | None = None, p2: str | None = None):
        if contrib not in CONTRIB or combine not in COMBINE:
            raise ValueError(f"unknown fast spec ({contrib!r}, {combine!r})")
        return super().__new__(cls, (contrib, combine, p1, p2))


def _build() -> dict:
    from . import _fast_kernels as m

    return {"accumulate": m.accumulate, "emit": m.emit}


_kernels = LazyKernels(_build)  # None without numba: fuse then takes the general numpy path


def _readonly(x: np.ndarray, dtype) -> np.ndarray:
    """A read-only contiguous view (no copy when possible): numba types read-only and writable arrays apart, and a
    tuple of arrays must be of one type, whatever mix of Arrow-backed (read-only) and numpy inputs arrives."""
    v = np.ascontiguousarray(x, dtype=dtype).view()
    v.flags.writeable = False
    return v


# Per-doc scratch arrays (all -1) kept between calls: allocating and filling one per call and thread costs ~4 ms
# per 1M docs. Arrays up to _SLOT_KEEP entries are kept, a few at most; concurrent calls each take their own.
_SLOT_KEEP = 1 << 24
_SLOTS: list[np.ndarray] = []
_SLOTS_LOCK = threading.Lock()


def _take_slot(n: int) -> np.ndarray:
    with _SLOTS_LOCK:
        for i, a in enumerate(_SLOTS):
            if a.size >= n:
                return _SLOTS.pop(i)
    return np.full(max(n, 1), -1, dtype=np.int32)


def _give_slot(a: np.ndarray) -> None:
    if a.size <= _SLOT_KEEP:
        with _SLOTS_LOCK:
            _SLOTS.append(a)
            _SLOTS.sort(key=lambda x: -x.size)
            del _SLOTS[4:]


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
    return threads(lambda i: fn(ranges[i][0], ranges[i][1], *args), len(ranges))


def fast_fuse(runs: list, spec: FastSpec, norm: str, norm_kw: dict, weights: np.ndarray | None, params: dict,
              depth: int | None, name: str, queries: np.ndarray | None = None):
    """Fuse with the compiled single pass; returns None when it does not apply (caller takes the general path)."""
    k = _kernels()
    if k is None or norm not in NORM_CODE:
        return None
    temp = float(norm_kw.get("temperature", 1.0))
    if norm == "softmax" and not temp > 0:
        raise ParameterError(f"softmax normalization: temperature must be > 0, got {temp}")
    if depth is not None:
        runs = [r.cut(depth) for r in runs]
    R = len(runs)
    query_ids, qmaps = query_union(runs, queries)
    doc_ids, dmaps = _union_sorted(doc_tables(runs), lazy=True)
    Q, D = int(query_ids.size), len(doc_ids)
    seg_start = np.zeros((R, Q), dtype=np.int64)
    seg_len = np.zeros((R, Q), dtype=np.int64)
    for i, (qm, r) in enumerate(zip(qmaps, runs)):  # loop over runs, never over queries
        seg_start[i, qm] = r.offsets[:-1]
        seg_len[i, qm] = np.diff(r.offsets)
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
    # key layout: query | score bits | position; positions are bounded by the longest possible union list
    qbits = int(Q - 1).bit_length() if Q > 1 else 0
    idxbits = max(1, int(int(ub.max(initial=1)) - 1).bit_length())
    if 64 - qbits - idxbits < _MIN_SCORE_BITS:
        return None
    ranges = _chunks(ub.astype(np.float64), _n_threads() if N >= 200_000 else 1)
    # Upper-bound buffers: np.empty does not touch memory, and each range fills only its fused candidates.
    doc = np.empty(N, dtype=np.int64)
    sc = np.empty(N, dtype=np.float64)
    keys = np.empty(N, dtype=np.uint64)
    counts = np.zeros(Q, dtype=np.int64)
    slots = [_take_slot(D) for _ in ranges]
    finite = threads(lambda i: k["accumulate"](ranges[i][0], ranges[i][1], seg_start, seg_len, didx, scores, w,
                                               slots[i], NORM_CODE[norm], temp, CONTRIB[contrib], p1,
                                               COMBINE[combine], p2, ub_off, doc, sc, sc.view(np.uint64),
                                               64 - qbits, idxbits, keys, counts), len(ranges))
    for slot, ok in zip(slots, finite):
        if ok:  # a kernel that stopped early left marks behind: that scratch array is dropped
            _give_slot(slot)
    if not all(finite):
        return None  # +-inf need the general path's per-list clamping (NaN is reported there too)
    off = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    regions = [(int(ub_off[a]), int(ub_off[a] + off[b] - off[a])) for a, b in ranges]
    if any(np.isnan(sc[x:y]).any() for x, y in regions):
        raise InputError(f"fusion method {name!r} produced NaN scores")
    # the query sits in the keys' top bits: sorting each range's region sorts its queries independently
    threads(lambda i: keys[regions[i][0]:regions[i][1]].sort(), len(regions))

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
        else:  # an Arrow-backed table (mmfuse.runs.LazyIds)
            import pyarrow as pa

            doc_ids = type(doc_ids)(doc_ids.arrow.filter(pa.array(used)))
    return Run(query_ids, doc_ids, out_off, out_doc, out_score, name)
