"""``fuse``: validate inputs, align runs, normalise, call the registered method, order the fused Run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ParameterError, unknown
from mmfuse.runs import Run

from .align import RANKS, FusionInput, align, input_ranks, order_pairs
from .fast import fast_fuse
from .norm import NORM_PARAMS, norm_name, normalize_entries
from .registry import get_method

__all__ = ["fuse", "check_weights"]


def check_weights(weights: Sequence[float] | None, n_runs: int) -> np.ndarray | None:
    """Validate per-run weights: one finite, non-negative number per run, not all zero."""
    if weights is None:
        return None
    try:
        w = np.asarray([float(x) for x in weights], dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"weights must be numbers, got {list(weights)!r}") from None
    if w.size != n_runs:
        raise ParameterError(f"weights: got {w.size} value(s) for {n_runs} run(s); give one weight per run")
    if not np.isfinite(w).all():
        raise ParameterError(f"weights must be finite numbers, got {w.tolist()}")
    if (w < 0).any():
        raise ParameterError(f"weights must not be negative, got {w.tolist()}")
    if w.sum() <= 0:
        raise ParameterError(f"weights must not sum to zero, got {w.tolist()}")
    return w


def fuse(runs, method: str | None = None, norm: str | None = None, weights: Sequence[float] | None = None,
         depth: int | None = None, *, queries: Sequence[str] | None = None, ranks: str = "input",
         _use_fast: bool = True, **params: Any):
    """Fuse several Runs into one, vectorised over all queries.

    ``method``: a registered name (``mmfuse.fusion.methods()``); None = the library default. ``norm``: one of
    ``NORMS``; None = the method's default (min-max for score-based methods, none for rank-based). ``weights``: one
    per run, for weighted methods. ``depth``: each input list is cut to its top ``depth`` before fusing and the fused
    lists are cut to ``depth``. ``params``: the method's parameters; ``norm_temperature`` goes to the softmax norm.
    The output is ordered by score desc, then doc id desc. Methods registered with a ``fast`` spec run as one
    compiled pass (``mmfuse.fusion.fast``); ``_use_fast=False`` forces the general path (tests compare the two).

    Coverage, the one rule of the engine for queries that only some runs answered: each query is fused over the
    runs that returned something for it, and a run with no entries for a query contributes nothing to it (ranx's
    convention: an absent query is an empty list). So a query answered by a single run still gets the method's
    fused score, on the same scale as every other query, never that run's raw score. ``queries`` fixes the output's
    queries and their order (queries no run answered get no entries; runs' other queries are ignored); by default
    it is the union of the runs' queries, in first-seen order. Runs with no entries at all are allowed (a retriever
    that found nothing).

    Ranks, for rank-based methods and the ``rank``/``borda`` norms: ``ranks="input"`` (the default) reads each
    document's rank from its run's input order when the run records one - a TREC file's line order, which is how
    pyserini (and the official fused TREC runs made with it) rank, and which differs from the score order only
    inside groups of tied scores; ``ranks="score"`` always ranks by score desc, then doc id desc (trec_eval's order).
    Runs built in memory record no input order, so for them the two agree. ``depth`` cuts in the same order.
    """
    if isinstance(runs, Run) or runs is None:
        raise ParameterError("fuse expects a list of runs")
    runs = list(runs)
    if not runs:
        raise ParameterError("fuse: no runs given")
    for r in runs:
        if not isinstance(r, Run):
            raise ParameterError(f"fuse expects Run objects, got {type(r).__name__}")
    qtable = None
    if queries is not None:
        if isinstance(queries, str):
            raise ParameterError("fuse: queries must be a list of query ids, not one string")
        qlist = [str(q) for q in queries]
        if len(set(qlist)) != len(qlist):
            dup = next(q for q in qlist if qlist.count(q) > 1)
            raise ParameterError(f"fuse: query id {dup!r} is listed twice in queries")
        want = set(qlist)
        runs = [r if want.issuperset(r.query_ids.tolist()) else r.subset([q for q in r.query_ids.tolist() if q in want])
                for r in runs]
        qtable = np.asarray(qlist, dtype=object)
    if ranks not in RANKS:
        raise unknown("ranks", ranks, RANKS)
    m = get_method(method)
    norm_kw = {k[5:]: params.pop(k) for k in list(params) if k.startswith("norm_")}
    nname = norm_name(norm if norm is not None else (m.default_norm or "none"))
    if m.kind == "rank" and nname != "none":
        raise ParameterError(f"method {m.name!r} fuses ranks; normalization {nname!r} does not apply (use norm='none')")
    allowed = NORM_PARAMS.get(nname, {})
    for k in norm_kw:
        if k not in allowed:
            raise unknown(f"parameter for normalization {nname!r}", "norm_" + k,
                          ["norm_" + a for a in allowed] or ["(none)"])
    try:
        norm_kw = {k: float(v) for k, v in norm_kw.items()}
    except ValueError:
        raise ParameterError(f"normalization parameters must be numbers, got {norm_kw}") from None
    w = check_weights(weights, len(runs))
    if w is not None and not m.weighted:
        raise ParameterError(f"method {m.name!r} takes no weights; use a weighted method such as 'wsum' or 'rrf'")
    resolved = m.resolve(params)
    if depth is not None:
        if isinstance(depth, bool) or int(depth) != depth or depth < 1:
            raise ParameterError(f"depth must be an integer >= 1, got {depth!r}")
        depth = int(depth)

    uses_ranks = m.kind == "rank" or nname in ("rank", "borda")
    if uses_ranks and any(input_ranks(r, ranks) is not None for r in runs):
        _use_fast = False  # the compiled pass ranks by position; input order takes the general path
    if m.fast is not None and nname != "borda" and _use_fast:
        out = fast_fuse(runs, m.fast, nname, norm_kw, w, resolved, depth, m.name, qtable)
        if out is not None:
            return out
    a = align(runs, depth, qtable, ranks if uses_ranks else "score")
    run, pair, qidx, value, rank = normalize_entries(a, nname, **norm_kw)
    ctx = FusionInput(a, run, pair, qidx, value, rank, w if w is not None else np.ones(a.n_runs))
    scores = np.asarray(m.fn(ctx, **resolved), dtype=np.float64)
    if scores.shape != (a.n_pairs,):
        raise ParameterError(f"fusion method {m.name!r} returned {scores.shape} scores for {a.n_pairs} pairs")
    if np.isnan(scores).any():
        raise InputError(f"fusion method {m.name!r} produced NaN scores")
    order = order_pairs(a.pair_q, a.pair_d, scores, a.q_pair_offsets)
    counts = np.diff(a.q_pair_offsets)
    if depth is not None:
        pos = np.arange(order.size) - np.repeat(a.q_pair_offsets[:-1], counts)
        order = order[pos < depth]
        counts = np.minimum(counts, depth)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    d = a.pair_d[order]
    used = np.zeros(a.doc_ids.size, dtype=bool)
    used[d] = True
    if used.all():
        doc_ids, doc_idx = a.doc_ids, d
    else:
        remap = np.cumsum(used) - 1
        doc_ids, doc_idx = a.doc_ids[used], remap[d]
    return Run(a.query_ids, doc_ids, offsets, doc_idx, scores[order], m.name)
