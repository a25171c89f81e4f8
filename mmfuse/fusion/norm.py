"""Per-query score normalisations (none, min-max, zmuv, sum, max, rank, borda, softmax), vectorised over segments.

Each normalisation works per (run, query) list over that run's own candidates, with segment reductions on the
list offsets; formulas and the 1e-9 denominator floors follow ranx so that fused scores match it:

======================  ==============================================================================
none                    s
min-max (min_max)       (s - min) / max(max - min, 1e-9)
min-max-inverted        (max - s) / max(max - min, 1e-9)
zmuv (z-score)          (s - mean) / max(std, 1e-9)        (population std, like numpy/ranx)
sum                     (s - min) / max(sum(s) - n * min, 1e-9)
max                     s / max(max, 1e-9)
rank                    1 - (rank - 1) / n
borda                   1 - (rank - 1) / n_cand, and every candidate of the query (union over runs) that
                        the run lacks gets 0.5 - (n - 1) / (2 n_cand)   (n = the run's list length)
softmax(temperature)    exp((s - max) / T) / sum(...)      (mmfuse only)
======================  ==============================================================================

Borda is the only normalisation that gives a run's *missing* docs a score (as ranx does); with all others a doc
missing from a run has no entry there, and each method says how it treats that (see ``mmfuse.fusion``).

Huge scores: min-max, zmuv and sum compute differences, sums and squares that overflow for scores past ~1e154
(zmuv of scores near 1e200 used to give all zeros, min-max of +-1e308 NaN). A list whose largest |score| exceeds
2^500 is first multiplied by a power of two that brings it into [0.5, 1), and the floors with it. Scaling by a
power of two is exact, so every list gets the value the formula has in exact arithmetic wherever the unscaled
computation did not overflow: results below the threshold are bit for bit what they were (and what ranx gives).
"""

from __future__ import annotations

import numpy as np

from mmfuse.errors import ParameterError, unknown
from mmfuse.runs import Run

from .align import Aligned, segment_reduce

__all__ = ["NORMS", "normalize", "normalize_entries", "norm_name"]

NORMS = ("none", "min-max", "min-max-inverted", "zmuv", "sum", "max", "rank", "borda", "softmax")
_ALIASES = {"min_max": "min-max", "minmax": "min-max", "min_max_inverted": "min-max-inverted", "z-score": "zmuv",
            "zscore": "zmuv", "z_score": "zmuv", "standard": "zmuv", "identity": "none", "": "none"}
NORM_PARAMS = {"softmax": {"temperature": 1.0}}
_EPS = 1e-9
BIG = 2.0 ** 500  # past this magnitude a list is scaled before normalising (see the module docstring)
_SCALED = ("min-max", "min-max-inverted", "zmuv", "sum")


def norm_name(norm: str | None) -> str:
    """Canonical name of a normalisation (``None`` -> 'none'); unknown names raise with a suggestion."""
    if norm is None:
        return "none"
    key = str(norm).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in NORMS:
        raise unknown("normalization", norm, list(NORMS) + ["z-score", "min_max"])
    return key


def _seg_stats(score: np.ndarray, seg_offsets: np.ndarray):
    counts = np.diff(seg_offsets)
    n = counts.astype(np.float64)
    return counts, n


def _list_scale(score: np.ndarray, seg_offsets: np.ndarray) -> np.ndarray | None:
    """Per list an exact power-of-two factor bringing its largest |score| into [0.5, 1) where that exceeds ``BIG``
    (1 elsewhere); None when no list needs one."""
    if not score.size or max(score.max(), -score.min()) <= BIG:
        return None
    amax = segment_reduce(np.maximum, np.abs(score), seg_offsets, empty=0.0)
    f = np.ones(amax.size)
    big = (amax > BIG) & np.isfinite(amax)
    f[big] = np.ldexp(1.0, -np.frexp(amax[big])[1])
    return f


def normalize_values(norm: str, score: np.ndarray, rank: np.ndarray, seg_offsets: np.ndarray,
                     temperature: float = 1.0) -> np.ndarray:
    """Normalise per-entry ``score`` within segments (every norm except borda, which needs the other runs)."""
    norm = norm_name(norm)
    counts, n = _seg_stats(score, seg_offsets)
    scale = _list_scale(score, seg_offsets) if norm in _SCALED else None
    eps: float | np.ndarray = _EPS  # per list: the floors scale with the scores
    if scale is not None:
        score = score * np.repeat(scale, counts)
        eps = _EPS * scale
    if counts.size and norm not in ("none", "rank") and counts[0] > 0 and (counts == counts[0]).all():
        m = score.reshape(counts.size, int(counts[0]))
        return _normalize_uniform(norm, m, temperature, eps if scale is None else eps[:, None]).reshape(-1)
    rep = lambda x: np.repeat(x, counts) if np.ndim(x) else x  # noqa: E731
    if norm == "none":
        return score.astype(np.float64, copy=True)
    if norm in ("min-max", "min-max-inverted"):
        lo = rep(segment_reduce(np.minimum, score, seg_offsets))
        hi = rep(segment_reduce(np.maximum, score, seg_offsets))
        den = np.maximum(hi - lo, rep(eps))
        return (score - lo) / den if norm == "min-max" else (hi - score) / den
    if norm == "zmuv":
        mean = rep(segment_reduce(np.add, score, seg_offsets) / np.maximum(n, 1))
        dev = score - mean
        std = np.sqrt(rep(segment_reduce(np.add, dev * dev, seg_offsets) / np.maximum(n, 1)))
        return dev / np.maximum(std, rep(eps))
    if norm == "sum":
        lo = segment_reduce(np.minimum, score, seg_offsets)
        total = segment_reduce(np.add, score, seg_offsets)
        den = np.maximum(total - lo * n, eps)
        return (score - rep(lo)) / rep(den)
    if norm == "max":
        return score / np.maximum(rep(segment_reduce(np.maximum, score, seg_offsets)), _EPS)
    if norm == "rank":
        return 1.0 - (rank - 1) / rep(n)
    if norm == "softmax":
        if not temperature > 0:
            raise ParameterError(f"softmax normalization: temperature must be > 0, got {temperature}")
        hi = rep(segment_reduce(np.maximum, score, seg_offsets))
        with np.errstate(over="ignore"):  # s - max may pass -1.8e308: -inf, whose exp is the right 0
            e = np.exp((score - hi) / temperature)
        return e / rep(segment_reduce(np.add, e, seg_offsets))
    raise ParameterError(f"normalization {norm!r} needs all runs; use normalize_entries")


def _normalize_uniform(norm: str, m: np.ndarray, temperature: float, eps: float | np.ndarray = _EPS) -> np.ndarray:
    """Same formulas on a (segments x length) matrix: every list has the same length (the common top-k case)."""
    if norm in ("min-max", "min-max-inverted"):
        lo, hi = m.min(axis=1, keepdims=True), m.max(axis=1, keepdims=True)
        den = np.maximum(hi - lo, eps)
        return (m - lo) / den if norm == "min-max" else (hi - m) / den
    if norm == "zmuv":
        dev = m - m.mean(axis=1, keepdims=True)
        dev /= np.maximum(m.std(axis=1, keepdims=True), eps)
        return dev
    if norm == "sum":
        lo = m.min(axis=1, keepdims=True)
        return (m - lo) / np.maximum(m.sum(axis=1, keepdims=True) - lo * m.shape[1], eps)
    if norm == "max":
        return m / np.maximum(m.max(axis=1, keepdims=True), _EPS)
    if norm == "softmax":
        if not temperature > 0:
            raise ParameterError(f"softmax normalization: temperature must be > 0, got {temperature}")
        with np.errstate(over="ignore"):
            e = np.exp((m - m.max(axis=1, keepdims=True)) / temperature)
        return e / e.sum(axis=1, keepdims=True)
    raise ParameterError(f"normalization {norm!r} has no matrix form")


def normalize_entries(a: Aligned, norm: str | None, temperature: float = 1.0):
    """Normalise the aligned entries; returns (run, pair, qidx, value, rank) arrays.

    For 'borda' the arrays grow: every (run, candidate) the run lacks is added with the Borda fill value.
    """
    norm = norm_name(norm)
    if norm != "borda":
        v = normalize_values(norm, a.score, a.rank, a.seg_offsets, temperature)
        return a.run, a.pair, a.qidx, v, a.rank
    n_cand = a.n_cand.astype(np.float64)
    present_v = 1.0 - (a.rank - 1) / np.maximum(n_cand[a.qidx], 1.0)
    R, P = a.n_runs, a.n_pairs
    have = np.zeros(R * P, dtype=bool)
    have[a.run.astype(np.int64) * P + a.pair] = True
    miss = np.flatnonzero(~have)
    mrun, mpair = np.divmod(miss, P)
    mq = a.pair_q[mpair]
    fill = 0.5 - (a.n_ret[mrun, mq] - 1) / (2.0 * n_cand[mq])
    return (np.concatenate([a.run, mrun]), np.concatenate([a.pair, mpair]), np.concatenate([a.qidx, mq]),
            np.concatenate([present_v, fill]), np.concatenate([a.rank, np.zeros(miss.size, dtype=np.int64)]))


def normalize(run, norm: str, temperature: float = 1.0):
    """Return a copy of one Run with its scores normalised per query ('borda' needs several runs: use fuse)."""
    norm = norm_name(norm)
    if norm == "borda":
        raise ParameterError("normalization 'borda' scores each run against the union of several runs; use fuse()")
    values = normalize_values(norm, np.asarray(run.scores, dtype=np.float64), run.ranks(), run.offsets, temperature)
    # Normalisations are monotone per query except min-max-inverted, so only that one needs re-sorting.
    if norm == "min-max-inverted":
        return Run.from_arrays(run.entry_query_ids(), run.entry_doc_ids(), values, name=run.name,
                               queries=run.query_ids)
    return Run(run.query_ids, run.doc_ids, run.offsets, run.doc_idx, values, run.name, run.evidence)
