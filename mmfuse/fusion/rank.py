"""Rank-based fusion: RRF (weighted), ISR, log-ISR, logn-ISR, RBC, BordaFuse (weighted), Condorcet (Copeland).

Ranks are 1-based positions in each run's own list (score desc, doc id desc). A doc missing from a run adds
nothing, except in BordaFuse where it gets the run's "unranked" points (n_cand - n + 1) / 2, as in ranx.

Covered from ranx's list: rrf, isr, log_isr, logn_isr, rbc, bordafuse, w_bordafuse (and the score-based ones in
``score.py``). Not covered: bayesfuse, mapfuse, posfuse, probfuse, segfuse, slidefuse need training on qrels
(probabilities per rank/segment), which does not fit a zero-shot fusion call; ranx's condorcet/w_condorcet sort
with a comparator that is not a total order (ties in votes favour whichever doc comes first in a Python set, so
the result depends on hash order); mmfuse's ``condorcet`` is instead the Copeland count of pairwise majority wins
(equal to Condorcet fuse whenever the majority relation is transitive) and is not compared with ranx.
"""

from __future__ import annotations

import numpy as np

from .align import FusionInput
from .fast import FastSpec
from .registry import Param, register_method


@register_method("rrf", aliases=("reciprocal_rank", "wrrf", "weighted_rrf"), kind="rank", weighted=True,
                 ranx="rrf", params=[Param("k", 60, float, "rank offset: score = weight / (k + rank)", min=0)],
                 fast=FastSpec("rrf", "sum", "k"))
def rrf(ctx: FusionInput, k: float) -> np.ndarray:
    """Reciprocal Rank Fusion (Cormack et al. 2009), weighted when weights are given: sum w / (k + rank)."""
    rank = ctx.rank
    top = int(rank.max(initial=0))
    # A table lookup beats per-entry float division when lists are long (ranks repeat across queries and runs).
    x = (1.0 / (k + np.arange(top + 1, dtype=np.float64)))[rank] if rank.size > 4 * top else 1.0 / (k + rank)
    return ctx.pair_sum(x if ctx.uniform else x * ctx.entry_weight())


@register_method("isr", kind="rank", ranx="isr", fast=FastSpec("isr", "mnz"))
def isr(ctx: FusionInput) -> np.ndarray:
    """Inverse Square Rank (Mourao et al. 2015): sum 1/rank^2 times the number of runs holding the doc."""
    return ctx.pair_sum(1.0 / ctx.rank.astype(np.float64) ** 2) * ctx.pair_count()


@register_method("log_isr", aliases=("logisr",), kind="rank", ranx="log_isr", fast=FastSpec("isr", "log"))
def log_isr(ctx: FusionInput) -> np.ndarray:
    """log-ISR: sum 1/rank^2 times log(hits); docs in a single run score 0 (log 1), as in ranx."""
    return ctx.pair_sum(1.0 / ctx.rank.astype(np.float64) ** 2) * np.log(ctx.pair_count())


@register_method("logn_isr", aliases=("log_isn", "logisn", "lognisr"), kind="rank", ranx="logn_isr",
                 fast=FastSpec("isr", "log", None, "sigma"),
                 params=[Param("sigma", 0.01, float, "added to the hit count inside the log", min=0.0, max=1.0)])
def logn_isr(ctx: FusionInput, sigma: float) -> np.ndarray:
    """log-ISN / logn-ISR: sum 1/rank^2 times log(hits + sigma)."""
    return ctx.pair_sum(1.0 / ctx.rank.astype(np.float64) ** 2) * np.log(ctx.pair_count() + sigma)


@register_method("rbc", kind="rank", weighted=False, ranx="rbc", fast=FastSpec("rbc", "sum", "phi"),
                 params=[Param("phi", 0.8, float, "persistence: a rank-r doc gets (1 - phi) * phi^(r-1)",
                               min=0.0, max=1.0)])
def rbc(ctx: FusionInput, phi: float) -> np.ndarray:
    """Rank-Biased Centroid (Bailey et al. 2017)."""
    return ctx.pair_sum((1.0 - phi) * phi ** (ctx.rank - 1).astype(np.float64))


def _borda(ctx: FusionInput) -> np.ndarray:
    a = ctx.aligned
    n_cand = a.n_cand.astype(np.float64)
    w = ctx.weights
    q = ctx.qidx
    points = n_cand[q] - (ctx.rank - 1)
    unranked = (n_cand[None, :] - a.n_ret + 1) / 2.0  # [R, Q]
    # Every run contributes its unranked points to every candidate, except the runs that ranked the doc.
    all_unranked = (w[:, None] * unranked).sum(axis=0)
    got = ctx.pair_sum(w[ctx.run] * (points - unranked[ctx.run, q]))
    return all_unranked[a.pair_q] + got


@register_method("bordafuse", aliases=("borda", "borda_count"), kind="rank", ranx="bordafuse")
def bordafuse(ctx: FusionInput) -> np.ndarray:
    """BordaFuse (Aslam & Montague 2001): n_cand - rank + 1 points; unranked docs share the leftover points."""
    return _borda(ctx)


@register_method("w_bordafuse", aliases=("weighted_bordafuse", "wborda"), kind="rank", weighted=True,
                 ranx="w_bordafuse")
def w_bordafuse(ctx: FusionInput) -> np.ndarray:
    """Weighted BordaFuse: each run's Borda points times its weight."""
    return _borda(ctx)


@register_method("condorcet", kind="rank", weighted=True)
def condorcet(ctx: FusionInput) -> np.ndarray:
    """Condorcet via Copeland: number of other candidates a doc beats by (weighted) pairwise majority.

    A run that lacks a doc ranks it below all its own docs. Cost is quadratic in the candidates per query,
    computed in blocks of queries.
    """
    a = ctx.aligned
    R, P = ctx.n_runs, ctx.n_pairs
    # Per (run, pair) rank; unranked docs get one past the run's list length.
    rk = (a.n_ret[:, a.pair_q] + 1).astype(np.float64)
    rk[ctx.run, ctx.pair] = ctx.rank
    out = np.zeros(P)
    offs = a.q_pair_offsets
    n_cand = a.n_cand
    w = ctx.weights
    # Block queries so that each block's pairwise tensor stays ~ 8M cells; a loop over blocks, not queries.
    budget = 8_000_000
    cost = np.cumsum(n_cand.astype(np.int64) ** 2 * R)
    q0, Q = 0, a.n_queries
    while q0 < Q:
        base = cost[q0 - 1] if q0 else 0
        q1 = max(q0 + 1, int(np.searchsorted(cost, base + budget, side="right")))
        L = int(n_cand[q0:q1].max(initial=0))
        if L:
            nq = q1 - q0
            counts = n_cand[q0:q1]
            pos = np.arange(offs[q0], offs[q1]) - np.repeat(offs[q0:q1], counts)
            rows = np.repeat(np.arange(nq), counts)
            m = np.full((R, nq, L), np.inf)
            m[:, rows, pos] = rk[:, offs[q0]:offs[q1]]
            better = (m[:, :, :, None] < m[:, :, None, :]) * w[:, None, None, None]
            worse = (m[:, :, :, None] > m[:, :, None, :]) * w[:, None, None, None]
            valid = np.arange(L)[None, :] < counts[:, None]
            wins = ((better.sum(0) > worse.sum(0)) & valid[:, None, :]).sum(-1)  # [nq, L]
            out[offs[q0]:offs[q1]] = wins[rows, pos]
        q0 = q1
    return out
