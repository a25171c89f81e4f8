"""Which candidates the model sees in which calls: single window, RankGPT sliding window, ViC fusion union."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ParameterError

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


def fusion_union(runs: Sequence[Any], qid: str, depth: int | None = None,
                 names: Sequence[str] | None = None) -> tuple[list[str], dict[str, dict[str, int | None]], list[str]]:
    """Interleave ``runs`` for one query ViC-style (duplicates kept) and return the union to rerank.

    Returns (docs in first-appearance order of the interleaving, per doc {run name: 1-based rank or None},
    the duplicate-keeping interleaved doc sequence the model is shown as consensus evidence).
    """
    from .. import fusion

    names = list(names) if names else [getattr(r, "name", f"run{i}") or f"run{i}" for i, r in enumerate(runs)]
    if len(set(names)) != len(names):
        names = [f"{n}#{i + 1}" for i, n in enumerate(names)]
    inter = fusion.interleave(list(runs), keep="all", depth=depth).get(qid, [])
    seq = [str(d) for d, _, _ in inter]
    docs: list[str] = []
    ranks: dict[str, dict[str, int | None]] = {}
    for doc, ri, rank in inter:
        doc = str(doc)
        if doc not in ranks:
            docs.append(doc)
            ranks[doc] = {n: None for n in names}
        ranks[doc][names[int(ri)]] = int(rank)
    return docs, ranks, seq
