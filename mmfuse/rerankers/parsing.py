"""Tolerant parsing of the rankings models really write, and counts of how often they needed repair."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmfuse.llm.parsing import ParseCounts

_BRACKETED = re.compile(r"\[\s*(\d{1,4})\s*\]")
# a chain of bare numbers joined by ranking separators: "3 > 1 > 2", "3, 1, 2", "3 >> 1 | 2", "3 - 1 - 2"
_CHAIN = re.compile(r"\d{1,4}(?:\s*(?:>>?|->|→|,|;|\||/|-|\s)\s*\d{1,4})+")
_NUMBER = re.compile(r"\d{1,4}")


@dataclass
class ParseInfo:
    """What one parse found: labels used, and what had to be repaired."""

    parsed: int = 0  # labels accepted from the text
    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0  # labels appended in incoming order
    failed: bool = False  # nothing usable: incoming order kept

    @property
    def clean(self) -> bool:
        return not (self.failed or self.duplicates or self.out_of_range or self.missing)


@dataclass
class ParseStats(ParseCounts):
    """Per-run totals over many parses (and calls that failed before anything could be parsed)."""

    duplicates: int = 0
    out_of_range: int = 0
    missing: int = 0

    def add(self, info: ParseInfo) -> None:
        super().add(info)
        self.duplicates += info.duplicates
        self.out_of_range += info.out_of_range
        self.missing += info.missing

    def summary(self) -> str:
        return (f"{self.calls} model answers: {self.clean} clean, {self.repaired} repaired "
                f"({self.duplicates} duplicate, {self.out_of_range} out-of-range, {self.missing} missing labels), "
                f"{self.failed} unparseable (incoming order kept)")


def _labels(text: str) -> list[int]:
    found = _BRACKETED.findall(text)
    if found:
        return [int(x) for x in found]
    chains = _CHAIN.findall(text)
    if chains:
        best = max(chains, key=lambda c: len(_NUMBER.findall(c)))  # the longest chain is the ranking
        return [int(x) for x in _NUMBER.findall(best)]
    return [int(x) for x in _NUMBER.findall(text)]


def parse_ranking(text: str | None, k: int) -> tuple[list[int], ParseInfo]:
    """Turn a model answer into a permutation of ``range(k)`` (0-based positions in the incoming order).

    Labels are 1-based as shown to the model. Prose around the ranking and other separators are tolerated;
    repeated labels keep their first position; labels outside 1..k are dropped; labels never mentioned are
    appended in their incoming order. If nothing parses, the incoming order is returned with ``failed``.
    """
    info = ParseInfo()
    seen: set[int] = set()
    order: list[int] = []
    for label in _labels(text or ""):
        if not 1 <= label <= k:
            info.out_of_range += 1
        elif label - 1 in seen:
            info.duplicates += 1
        else:
            seen.add(label - 1)
            order.append(label - 1)
    info.parsed = len(order)
    if not order:
        info.failed = True
        return list(range(k)), info
    rest = [i for i in range(k) if i not in seen]
    info.missing = len(rest)
    return order + rest, info


def repair_order(order, k: int) -> tuple[list[int], ParseInfo]:
    """Apply the same repairs to an order a backend returned directly (0-based indices)."""
    return parse_ranking(" > ".join(f"[{int(i) + 1}]" for i in order), k) if len(order) else (
        list(range(k)), ParseInfo(failed=True))
