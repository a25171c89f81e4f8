"""Tolerant parsing of the lists language models really write (sub-queries, hypothetical captions), and counts of how
often an answer needed repair or was unusable.

Accepted, in this order: a JSON array of strings (also inside a ```json fence, after prose, or as the one list value
of a JSON object such as ``{"queries": [...]}``); numbered or bulleted lines (``1.``, ``2)``, ``(3)``, ``-``, ``*``,
``•``, ``Query 1:``); otherwise each non-empty line or paragraph is an item. Preamble lines ending in ``:`` ("Here are
five sub-queries:"), markdown emphasis and wrapping quotes are dropped; items without a word of two letters and
repeated items are dropped too. An answer with no item left, or one that is a refusal ("I'm sorry, ...", "As an AI
..."), is unusable: the caller falls back to the query as given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .base import Totals

__all__ = ["ListInfo", "ListStats", "ParseCounts", "is_refusal", "parse_list"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|[-*•·]|(?:query|sub-?query|event|caption|passage|description|answer)"
                     r"\s*#?\d{1,3}\s*[:.)-])\s*", re.I)
_WORD = re.compile(r"[^\W\d_]{2,}")
_REFUSAL = re.compile(r"^\W*(?:i'?m sorry|i am sorry|sorry\b|i cannot|i can'?t|i can not|i am unable|i'?m unable|"
                      r"i'?m not able|i am not able|as an ai|unfortunately,? i)", re.I)


@dataclass
class ListInfo:
    """What one parse found: the form of the list, items dropped, and whether the answer was usable."""

    form: str = "none"  # json, list, lines or none
    items: int = 0
    dropped: int = 0  # empty, wordless or repeated items, and items past the limit
    refused: bool = False

    @property
    def failed(self) -> bool:
        return self.items == 0

    @property
    def clean(self) -> bool:
        return not self.failed and self.form in ("json", "list") and not self.dropped


@dataclass
class ParseCounts(Totals):
    """How many model answers were parsed, and how many of them were clean, needed repair or were unusable; ``add``
    takes anything with ``failed`` and ``clean`` (a parse's info)."""

    calls: int = 0
    clean: int = 0
    repaired: int = 0
    failed: int = 0

    def add(self, info: Any) -> None:
        self.calls += 1
        if info.failed:
            self.failed += 1
        elif info.clean:
            self.clean += 1
        else:
            self.repaired += 1


@dataclass
class ListStats(ParseCounts):
    """Totals over many list parses (refusals among the unusable answers)."""

    refused: int = 0

    def add(self, info: ListInfo) -> None:
        super().add(info)
        self.refused += info.refused


def is_refusal(text: str | None) -> bool:
    """Whether an answer opens as a refusal ("I'm sorry, ...", "As an AI ...", "I cannot ...")."""
    return bool(_REFUSAL.match((text or "").strip()))


def _json_items(text: str) -> list[str] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for c in candidates:
        c = c.strip()
        starts = [i for i, ch in enumerate(c) if ch in "[{"]
        for s in starts[:8]:  # the JSON may follow a line of prose
            try:
                val, _ = json.JSONDecoder().raw_decode(c[s:])
            except ValueError:
                continue
            if isinstance(val, dict):
                lists = [v for v in val.values() if isinstance(v, list)]
                val = lists[0] if len(lists) == 1 else None
            if isinstance(val, list) and val and all(isinstance(v, (str, dict)) for v in val):
                out = []
                for v in val:  # [{"query": "..."}] is a list of one-field objects
                    if isinstance(v, dict):
                        v = next((x for x in v.values() if isinstance(x, str)), "")
                    out.append(v)
                return out
    return None


def _clean(item: str) -> str:
    item = re.sub(r"\*\*|__|`", "", item).strip()
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
        item = item[1:-1].strip()
    return " ".join(item.split())


def parse_list(text: str | None, limit: int | None = None) -> tuple[list[str], ListInfo]:
    """The items of a list a model wrote (at most ``limit``), and what the parse had to do (see the module doc)."""
    info = ListInfo()
    text = (text or "").strip()
    if not text:
        return [], info
    if is_refusal(text):
        info.refused = True
        return [], info
    raw = _json_items(text)
    if raw is not None:
        info.form = "json"
    else:
        lines = [ln for ln in text.splitlines() if ln.strip() and not _FENCE.fullmatch(ln.strip())]
        marked = [ln for ln in lines if _MARKER.match(ln)]
        if marked:
            info.form = "list"
            raw = [_MARKER.sub("", ln, count=1) for ln in marked]
            info.dropped += sum(1 for ln in lines if not _MARKER.match(ln) and not ln.rstrip().endswith(":"))
        else:
            info.form = "lines"
            raw = [ln for ln in lines if not ln.rstrip().endswith(":")]
    items: list[str] = []
    seen: set[str] = set()
    for r in raw:
        item = _clean(str(r))
        if not _WORD.search(item) or item.lower() in seen:
            info.dropped += 1
            continue
        seen.add(item.lower())
        items.append(item)
    if limit is not None and len(items) > limit:
        info.dropped += len(items) - limit
        items = items[:limit]
    info.items = len(items)
    if not items:
        info.form = "none"
    return items, info
