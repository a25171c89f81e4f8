"""Which candidates the model sees in which calls: single window, RankGPT sliding window, ViC fusion union."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mmfuse import fusion
from mmfuse.errors import ParameterError

# rank_fn(positions) -> the same positions, best first
RankFn = Callable[[list[int]], list[int]]


def windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The (start, end) spans a back-to-front sliding window visits over ``n`` items (RankGPT's order)."""
    if window < 1 or step < 1:
        raise ParameterError(f"window and step must be >= 1, got window={window}, step={step}")
    if step > window:
        raise ParameterError(f"step ({step}) larger than window ({window}) would skip candidates")
    if n <= window:
        return [(0, n)] if n else []
    spans = []
    end = n
    start = n - window
    while True:
        spans.append((max(start, 0), end))
        if start <= 0:
            break
        end -= step
        start -= step
    return spans


def single_window(positions: Sequence[int], rank_fn: RankFn) -> list[int]:
    return list(rank_fn(list(positions)))


def sliding_window(positions: Sequence[int], rank_fn: RankFn, window: int = 20, step: int = 10) -> list[int]:
    """Rerank ``positions`` with overlapping windows from the bottom up, so strong items bubble to the top."""
    order = list(positions)
    for start, end in windows(len(order), window, step):
        order[start:end] = rank_fn(order[start:end])
    return order


def fusion_lists(runs: Sequence[Any], depth: int | None = None, names: Sequence[str] | None = None):
    """Interleave ``runs`` ViC-style (duplicates kept) once for all queries and return, per query id:

    the union to rerank (docs in first-appearance order of the interleaving), per doc {run name: 1-based
    rank or None}, and the duplicate-keeping interleaved doc sequence shown to the model as consensus evidence.
    """
    names = list(names) if names else [getattr(r, "name", None) or f"run{i}" for i, r in enumerate(runs)]
    if len(set(names)) != len(names):
        names = [f"{n}#{i + 1}" for i, n in enumerate(names)]
    lists: dict[str, list[str]] = {}
    ranks: dict[str, dict[str, dict[str, int | None]]] = {}
    seqs: dict[str, list[str]] = {}
    for qid, inter in fusion.interleave(list(runs), keep="all", depth=depth).items():
        docs: list[str] = []
        rk: dict[str, dict[str, int | None]] = {}
        for doc, ri, rank in inter:
            doc = str(doc)
            if doc not in rk:
                docs.append(doc)
                rk[doc] = {n: None for n in names}
            rk[doc][names[int(ri)]] = int(rank)
        lists[str(qid)], ranks[str(qid)], seqs[str(qid)] = docs, rk, [str(d) for d, _, _ in inter]
    return lists, ranks, seqs


def fusion_union(runs: Sequence[Any], qid: str, depth: int | None = None, names: Sequence[str] | None = None):
    """``fusion_lists`` for one query: (docs, ranks per doc, interleaved sequence)."""
    lists, ranks, seqs = fusion_lists(runs, depth, names)
    return lists.get(qid, []), ranks.get(qid, {}), seqs.get(qid, [])
