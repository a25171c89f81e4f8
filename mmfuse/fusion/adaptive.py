"""Adaptive fusion: per-query, per-retriever weights from the entropy of each retriever's top-K score softmax.

``entropy`` (inductive, zero-shot: each query on its own). For query q and run r, take r's top-K normalised
scores v_1..v_k (k = min(K, list length)), p = softmax(v / temperature), H = -sum p log p, and the confidence
c = 1 - H / log(k) in [0, 1] (k = 1 counts as fully confident). A peaked list (one clear winner) has c near 1, a
flat list near 0. Weights w_rq = (c_rq + eps) * weight_r are normalised over the runs holding the query, and the
fused score is sum_r w_rq * v (a doc missing from a run adds 0, like wsum).

``q2e_entropy`` (TRANSDUCTIVE: uses the other queries of the batch). Following the query-batch weighting of the
Q2E paper, each run's raw scores are turned into a softmax *across the query batch* for each doc (how strongly this
query, rather than the others, claims the doc), then per (run, query) the entropy H of those probabilities over
the run's top-K docs (renormalised) gives the weight 1 / (H + eps). Results change with the batch: it is not a
per-query method and is labelled transductive in the registry.

Numerics: softmaxes subtract the segment max (huge/tiny scores are safe), -inf/+inf scores were made finite by
alignment, constant lists give uniform distributions (c = 0), single-candidate lists c = 1, and when every run of a
query has weight 0 the runs fall back to equal weights.
"""

from __future__ import annotations

import numpy as np

from .align import FusionInput, segment_reduce
from .registry import Param, register_method

__all__ = ["topk_entropy", "entropy_weights"]


def _xlogx(p: np.ndarray) -> np.ndarray:
    out = np.zeros_like(p)
    pos = p > 0
    out[pos] = p[pos] * np.log(p[pos])
    return out


def topk_entropy(values: np.ndarray, seg_offsets: np.ndarray, top_k: int, temperature: float):
    """Entropy of softmax(values / T) over the first ``top_k`` entries of each segment.

    Returns (H [S], k [S]); entries must be ordered best-first inside each segment. Empty segments give H = 0, k = 0.
    """
    counts = np.diff(seg_offsets)
    k = np.minimum(counts, top_k)
    take = np.arange(values.size) - np.repeat(seg_offsets[:-1], counts) < np.repeat(k, counts)
    v = values[take] / temperature
    offs = np.zeros(k.size + 1, dtype=np.int64)
    np.cumsum(k, out=offs[1:])
    m = np.repeat(segment_reduce(np.maximum, v, offs, empty=0.0), k)
    e = np.exp(v - m)
    z = np.repeat(segment_reduce(np.add, e, offs, empty=1.0), k)
    H = -segment_reduce(np.add, _xlogx(e / z), offs, empty=0.0)
    return np.maximum(H, 0.0), k


def entropy_weights(ctx: FusionInput, top_k: int, temperature: float, eps: float) -> np.ndarray:
    """[R, Q] per-query confidence weights of the inductive ``entropy`` method (before static run weights)."""
    a = ctx.aligned
    n = a.run.size  # Borda fill entries (if any) come after the N real ones
    H, k = topk_entropy(ctx.value[:n], a.seg_offsets, top_k, temperature)
    logk = np.log(np.maximum(k, 1))
    conf = np.where(k > 1, 1.0 - H / np.where(logk > 0, logk, 1.0), 1.0)
    W = np.zeros((a.n_runs, a.n_queries))
    W[a.seg_run, a.seg_q] = np.clip(conf, 0.0, 1.0) + eps
    return W


def _apply(ctx: FusionInput, W: np.ndarray) -> np.ndarray:
    a = ctx.aligned
    W = W * ctx.weights[:, None] * (a.n_ret > 0)
    tot = W.sum(axis=0)
    flat = tot <= 0
    if flat.any():  # no run has any confidence for these queries: equal weights
        W[:, flat] = ctx.weights[:, None] * (a.n_ret[:, flat] > 0)
        tot = W.sum(axis=0)
    W = W / np.where(tot > 0, tot, 1.0)
    return ctx.pair_sum(ctx.value * W[ctx.run, ctx.qidx])


@register_method(
    "entropy", aliases=("entropy_weighted", "ewf"), kind="adaptive", default_norm="min-max", weighted=True,
    params=[Param("top_k", 10, int, "candidates per list whose softmax entropy sets the weight", min=1),
            Param("temperature", 0.1, float, "softmax temperature on the normalised scores", min=1e-12),
            Param("eps", 1e-3, float, "weight floor added to every run's confidence", min=0.0)])
def entropy(ctx: FusionInput, top_k: int, temperature: float, eps: float) -> np.ndarray:
    """Entropy-weighted sum (inductive): peaked top-K softmax = confident retriever = larger weight."""
    return _apply(ctx, entropy_weights(ctx, top_k, temperature, eps))


@register_method(
    "q2e_entropy", aliases=("q2e",), kind="adaptive", default_norm="min-max", weighted=True, transductive=True,
    params=[Param("top_k", 10, int, "top docs per (run, query) whose entropy sets the weight", min=1),
            Param("temperature", 1.0, float, "softmax temperature on raw scores across the query batch", min=1e-12),
            Param("eps", 1e-6, float, "added to the entropy before inverting", min=1e-12)])
def q2e_entropy(ctx: FusionInput, top_k: int, temperature: float, eps: float) -> np.ndarray:
    """TRANSDUCTIVE Q2E weighting: softmax across the query batch per doc, weight = 1 / entropy over top-K."""
    a = ctx.aligned
    D = max(a.doc_ids.size, 1)
    s = a.score / temperature
    grp = a.run.astype(np.int64) * D + a.didx  # one softmax per (run, doc) across the queries that retrieved it
    order = np.argsort(grp, kind="stable")
    g = grp[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    offs = np.append(starts, g.size)
    cnt = np.diff(offs)
    so = s[order]
    m = np.repeat(np.maximum.reduceat(so, starts), cnt) if g.size else so
    e = np.exp(so - m)
    z = np.repeat(np.add.reduceat(e, starts), cnt) if g.size else e
    p = np.empty_like(s)
    p[order] = e / z
    # Entropy of the (renormalised) batch probabilities over each (run, query)'s top-K docs.
    counts = np.diff(a.seg_offsets)
    k = np.minimum(counts, top_k)
    take = np.arange(p.size) - np.repeat(a.seg_offsets[:-1], counts) < np.repeat(k, counts)
    pt = p[take]
    offs2 = np.zeros(k.size + 1, dtype=np.int64)
    np.cumsum(k, out=offs2[1:])
    zt = np.repeat(segment_reduce(np.add, pt, offs2, empty=1.0), k)
    q = pt / np.where(zt > 0, zt, 1.0)
    H = np.maximum(-segment_reduce(np.add, _xlogx(q), offs2, empty=0.0), 0.0)
    W = np.zeros((a.n_runs, a.n_queries))
    W[a.seg_run, a.seg_q] = 1.0 / (H + eps)
    return _apply(ctx, W)
