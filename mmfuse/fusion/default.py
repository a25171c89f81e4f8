"""mmfuse's default fusion, ``auto``: per query, CombSUM of the scores when every list holds similarities on a shared
scale, else standardized evidence fusion (``sef``). Both are inductive (one query's lists only), zero-shot and have
no parameter fitted to a dataset.

``auto`` chooses by the *score type* of each query's lists, which it reads off the scores themselves:

- **similarities** - every score of every list of the query lies in [-1, 1], and no list is a probability
  distribution (>= 3 non-negative scores summing to 1). Cosines of embedding retrievers are such scores, and so are
  mmfuse's lexical scores, which are fractions of the query's BM25 self-match (``mmfuse.store.bm25``): for both,
  0 means unrelated and 1 a perfect match, whatever the query or retriever. Their sum is the total evidence of match
  a video shows, on one scale for every query: a doc a retriever did not return adds nothing (0 = unrelated), so a
  single strong hit of one retriever counts in full, a partial n-gram match of unrelated words counts a few
  hundredths, and two half matches in two modalities add up. Standardizing such lists (``sef``) throws their scale
  away: a one-hit list has no spread, and a flat list of unrelated cosines gets the same z-scores as a real match.
- **anything else** (logits, raw BM25, distances, probabilities: the dense score matrices of the benchmarks,
  run files from other systems) - ``sef`` below: the scores' own scale says nothing across retrievers, so each list
  is standardized.

The rule is per query, so a query's ranking never depends on the other queries of the batch.

Standardized evidence fusion (SEF):

For each query q and retriever r, r's *real* candidates are standardized over r's own list,
``z = (s - mean_rq) / std_rq``: this is a per-query, per-retriever weight ``1 / std_rq`` on the centred scores, so a
retriever whose top candidates stand out from the rest of its list by many standard deviations (a peaked,
confident list) moves the fused ranking more than one whose list is flat (the intuition of entropy weighting, with
no temperature to tune). A doc the retriever did not return is not "average" (what ranx's z-score convention makes of
it) but worse than everything it did return: it scores ``min_z_rq - miss`` (``miss`` standard deviations below the
retriever's last candidate). The fused score is the (optionally weighted) sum over retrievers.

Lists that are probability distributions (non-negative scores summing to 1, e.g. a retriever exporting a softmax)
are standardized on the log scale: a softmax is exp(logit)/Z, so log recovers the retriever's additive similarity
scale (up to a per-query constant that standardizing removes); standardizing raw probabilities would let one peaked
softmax dominate every other retriever.

Truncated lists padded with a constant (a top-50 retriever exported as a dense matrix with zeros, a softmax with
underflowed tail) are recognised per list: a block of two or more entries tied at the list's minimum, in a list
that has other entries, is padding, and those docs count as not returned. So the method gives the same ranking
whether such a retriever arrives as its real top-k or as a zero-filled dense row.

Everything is computed from one query's lists only (inductive, zero-shot): no statistics across queries.
``miss`` was chosen on MSR-VTT 1k-A (4 retrievers): R@1 stays within 85.7-86.6 for miss in [0, 1.5]
(see the README, "The default fusion", for the sensitivity curve); 0.25 also beats every CombSUM variant on each subset
of three retrievers there.
"""

from __future__ import annotations

import numpy as np

from .registry import Param, register_method

__all__ = ["auto", "sef", "padding_mask", "similarity_queries", "DEFAULT_MISS"]

DEFAULT_MISS = 0.25
# a list whose scores are non-negative and sum to 1 within this tolerance is a probability distribution
PROB_TOL = 1e-3


def _padding(score: np.ndarray, seg_offsets: np.ndarray, seg_id: np.ndarray):
    """Per segment the size of its padding block (0 when none), and the per-entry padding mask.

    Entries of a segment are in their run's order (score descending), so a list's minimum is its last entry and
    the padding block is the suffix tied with it.
    """
    counts = np.diff(seg_offsets)
    nonempty = counts > 0
    lo = np.zeros(counts.size)
    lo[nonempty] = score[seg_offsets[1:][nonempty] - 1]
    at_min = score == lo[seg_id]
    n_min = np.bincount(seg_id, weights=at_min, minlength=counts.size)
    pad_seg = (n_min >= 2) & (n_min < counts)
    n_pad = np.where(pad_seg, n_min, 0).astype(np.int64)
    return n_pad, at_min & pad_seg[seg_id]


def padding_mask(score: np.ndarray, seg_offsets: np.ndarray) -> np.ndarray:
    """Per entry, True when it belongs to its list's padding block (>= 2 entries tied at the list minimum, in a
    list that also has higher entries). Lists must be in score-descending order, as Runs are."""
    counts = np.diff(seg_offsets)
    seg_id = np.repeat(np.arange(counts.size), counts)
    return _padding(score, seg_offsets, seg_id)[1]


@register_method(
    "sef",
    kind="adaptive",
    params=[
        Param("miss", DEFAULT_MISS, float, "penalty, in standard deviations below a retriever's last candidate, for a "
              "doc that retriever did not return", min=0.0),
        Param("detect_padding", True, bool, "treat a block of >= 2 entries tied at a list's minimum as padding "
              "(not returned)"),
        Param("log_probs", True, bool, "standardize lists that are probability distributions (non-negative, sum 1) "
              "on the log scale"),
    ],
    default_norm="none",
    weighted=True,
    aliases=("standardized",),
    doc="Standardized evidence fusion: per-query z-scores over each retriever's real candidates (weight 1/std), "
        "docs a retriever missed scored `miss` std below its last candidate.",
)
def sef(ctx, miss: float = DEFAULT_MISS, detect_padding: bool = True, log_probs: bool = True) -> np.ndarray:
    """Standardized evidence fusion; returns one fused score per (query, doc) pair of ``ctx``."""
    a = ctx.aligned
    score, seg_off = a.score, a.seg_offsets
    counts = np.diff(seg_off)
    S = counts.size
    seg_id = np.repeat(np.arange(S), counts)
    if detect_padding:
        n_pad, pad = _padding(score, seg_off, seg_id)
        keep = ~pad
    else:
        n_pad, keep = np.zeros(S, dtype=np.int64), np.ones(score.size, dtype=bool)
    if log_probs and score.size:
        # softmax outputs are exp(logit) / Z: standardize them on the logit scale, where scores add up
        ssum = np.bincount(seg_id, weights=score, minlength=S)
        smin = np.full(S, np.inf)
        nonempty0 = counts > 0
        if nonempty0.any():
            smin[nonempty0] = np.minimum.reduceat(score, seg_off[:-1][nonempty0])
        prob = nonempty0 & (smin >= 0) & (np.abs(ssum - 1.0) <= PROB_TOL)
        if prob.any():
            pe = prob[seg_id]
            score = np.where(pe, np.log(np.maximum(np.where(pe, score, 1.0), 1e-300)), score)
    n = (counts - n_pad).astype(np.float64)
    # z-scores are scale-free: dividing each list by its largest magnitude first keeps squares finite for huge scores
    amax = np.ones(S)
    nonempty = counts > 0
    if nonempty.any():
        amax[nonempty] = np.maximum.reduceat(np.abs(score), seg_off[:-1][nonempty])
    amax = np.where((amax > 0) & np.isfinite(amax), amax, 1.0)
    score = score / amax[seg_id]
    mean = np.bincount(seg_id, weights=np.where(keep, score, 0.0), minlength=S) / np.maximum(n, 1.0)
    dev = score - mean[seg_id]
    var = np.bincount(seg_id, weights=np.where(keep, dev * dev, 0.0), minlength=S) / np.maximum(n, 1.0)
    std = np.sqrt(var)
    # a list with one candidate or all-equal scores carries membership only: its candidates sit at z = 0
    inv = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), 1.0 / np.where(std > 0, std, 1.0), 0.0)
    z = dev * inv[seg_id]
    last_kept = seg_off[1:] - 1 - n_pad            # lists are score-descending: the last kept entry is the minimum
    has = n > 0
    zmin = np.zeros(S)
    zmin[has] = z[last_kept[has]]
    fill_seg = np.where(has, zmin - miss, 0.0)     # an empty list (query absent from the run) says nothing

    w = ctx.weights
    wseg = w[a.seg_run]
    base = np.bincount(a.seg_q, weights=fill_seg * wseg, minlength=a.n_queries)  # "missed by every retriever"
    gain = np.where(keep, (z - fill_seg[seg_id]) * wseg[seg_id], 0.0)
    return base[a.pair_q] + np.bincount(a.pair, weights=gain, minlength=a.n_pairs)


def similarity_queries(ctx) -> np.ndarray:
    """[Q] bool: every list of the query holds similarity scores (see the module docstring): each score in [-1, 1],
    and no list of >= 3 entries is a probability distribution. A query without lists counts as similarities."""
    a = ctx.aligned
    score, seg_off = a.score, a.seg_offsets
    counts = np.diff(seg_off)
    S = counts.size
    nonempty = counts > 0
    amax = np.zeros(S)
    smin = np.zeros(S)
    ssum = np.zeros(S)
    if nonempty.any():
        starts = seg_off[:-1][nonempty]
        amax[nonempty] = np.maximum.reduceat(np.abs(score), starts)
        smin[nonempty] = np.minimum.reduceat(score, starts)
        ssum[nonempty] = np.add.reduceat(score, starts)
    prob = (counts >= 3) & (smin >= 0) & (np.abs(ssum - 1.0) <= PROB_TOL)
    ok = (amax <= SIMILARITY_BOUND) & ~prob
    bad = np.bincount(a.seg_q, weights=~ok, minlength=a.n_queries)
    return bad == 0


# similarities are bounded by 1 in theory; float32 storage and rounding put a few ulps on top
SIMILARITY_BOUND = 1.0 + 1e-6


@register_method(
    "auto",
    kind="adaptive",
    params=[
        Param("miss", DEFAULT_MISS, float, "sef's penalty (queries whose lists are not similarities)", min=0.0),
        Param("detect_padding", True, bool, "sef: treat a block of >= 2 entries tied at a list's minimum as padding"),
        Param("log_probs", True, bool, "sef: standardize probability-distribution lists on the log scale"),
    ],
    default_norm="none",
    weighted=True,
    aliases=("default",),
    doc="mmfuse default: per query, CombSUM of the scores when every list holds similarities in [-1, 1] "
        "(cosines, mmfuse's lexical scores), else sef.",
    default=True,
)
def auto(ctx, miss: float = DEFAULT_MISS, detect_padding: bool = True, log_probs: bool = True) -> np.ndarray:
    """One fused score per (query, doc) pair of ``ctx``: the weighted sum of similarities, or sef (module docs)."""
    out = sef(ctx, miss=miss, detect_padding=detect_padding, log_probs=log_probs)
    sim = similarity_queries(ctx)
    if sim.any():
        summed = ctx.pair_sum(ctx.aligned.score * ctx.weights[ctx.run])
        out = np.where(sim[ctx.pair_q], summed, out)
    return out
