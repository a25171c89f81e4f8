"""ViC-style interleaving: round-robin merge of the retrievers' lists (rank 1 of run 0, rank 1 of run 1, ...).

``keep="all"`` keeps duplicates (a doc in several lists appears several times: a consensus signal for the
reranker); ``keep="first"`` keeps each doc's first occurrence. Ordering is vectorised (one lexsort over
(query, rank, run)); only the final dict is built per query.
"""

from __future__ import annotations

import numpy as np

from mmfuse.errors import ParameterError, unknown
from mmfuse.runs import Run

from .align import FusionInput, align
from .registry import register_method

__all__ = ["interleave", "interleave_run"]


def _order(runs, keep: str, depth: int | None):
    if keep not in ("all", "first"):
        raise unknown("interleave mode (keep)", keep, ["all", "first"])
    if depth is not None and int(depth) < 1:
        raise ParameterError(f"depth must be >= 1, got {depth}")
    if not runs:
        raise ParameterError("interleave: no runs given")
    a = align(list(runs))
    order = np.lexsort((a.run, a.rank, a.qidx))
    if keep == "first":
        _, first = np.unique(a.pair[order], return_index=True)
        order = order[np.sort(first)]
    q = a.qidx[order]
    counts = np.bincount(q, minlength=a.n_queries)
    offsets = np.zeros(a.n_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if depth is not None:
        pos = np.arange(order.size) - np.repeat(offsets[:-1], counts)
        order = order[pos < depth]
        counts = np.minimum(counts, depth)
        np.cumsum(counts, out=offsets[1:])
    return a, order, offsets


def interleave(runs, keep: str = "all", depth: int | None = None) -> dict[str, list[tuple[str, int, int]]]:
    """Round-robin merge: ``{qid: [(doc_id, run_index, rank), ...]}``, at most ``depth`` items per query."""
    a, order, offsets = _order(runs, keep, depth)
    docs = a.doc_ids[a.didx[order]].tolist()
    items = list(zip(docs, a.run[order].tolist(), a.rank[order].tolist()))
    return {qid: items[s:e] for qid, s, e in zip(a.query_ids.tolist(), offsets[:-1].tolist(), offsets[1:].tolist())}


def interleave_run(runs, depth: int | None = None, name: str = "interleave"):
    """The ``keep="first"`` interleaving as a Run; the score of the item at 1-based position i is 1 / i."""
    a, order, offsets = _order(runs, "first", depth)
    counts = np.diff(offsets)
    pos = np.arange(order.size) - np.repeat(offsets[:-1], counts) + 1
    return Run(a.query_ids, a.doc_ids, offsets, a.didx[order], 1.0 / pos, name)


@register_method("interleave", aliases=("round_robin", "vic"), kind="rank")
def interleave_method(ctx: FusionInput) -> np.ndarray:
    """ViC round-robin order (keep first occurrence) as scores: earlier in the interleaving = higher."""
    key = (ctx.rank - 1).astype(np.float64) * ctx.n_runs + ctx.run
    first = np.full(ctx.n_pairs, np.inf)
    np.minimum.at(first, ctx.pair, key)
    return 1.0 / (1.0 + first)
