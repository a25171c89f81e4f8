"""Prompt templates (user-overridable files) and their rendering into interleaved text/image parts."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mmfuse.errors import ParameterError, unknown
from mmfuse.llm import Part

IMAGE = "<image>"
_SECTIONS = ("--- candidate ---", "--- footer ---")
_FIELDS = {"query", "k", "label", "context_note", "subtitle", "retrievers", "doc_id"}


@dataclass
class Candidate:
    """One candidate as the model sees it; ``label`` is its 1-based position in the incoming order."""

    doc_id: str
    label: int
    image: Any = None  # PIL image (already labelled)
    subtitle: str = ""
    ranks: dict[str, int | None] = field(default_factory=dict)  # retriever name -> 1-based rank or None
    note: str = ""  # e.g. "video missing"




@dataclass
class PromptTemplate:
    """A template file in three sections: header, ``--- candidate ---`` block, ``--- footer ---``.

    Placeholders: {query} {k} {context_note} everywhere; {label} {doc_id} {subtitle} {retrievers} and the
    ``<image>`` marker in the candidate block. Lines that render empty are dropped.
    """

    header: str
    candidate: str
    footer: str
    source: str = "<string>"

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> "PromptTemplate":
        if _SECTIONS[0] not in text or _SECTIONS[1] not in text:
            raise ParameterError(f"{source}: a prompt template needs the lines {_SECTIONS[0]!r} and {_SECTIONS[1]!r}")
        header, rest = text.split(_SECTIONS[0], 1)
        candidate, footer = rest.split(_SECTIONS[1], 1)
        for part in (header, candidate, footer):
            for _, name, _, _ in string.Formatter().parse(part):
                if name is not None and name not in _FIELDS:
                    raise ParameterError(
                        f"{source}: unknown placeholder {{{name}}}; allowed: {', '.join(sorted(_FIELDS))}")
        return cls(header.strip("\n"), candidate.strip("\n"), footer.strip("\n"), source)

    @classmethod
    def load(cls, name_or_path: str | Path = "listwise") -> "PromptTemplate":
        """A built-in template by name (``listwise``, ``pointwise``) or a file path."""
        p = Path(name_or_path)
        if p.suffix or p.exists():
            if not p.exists():
                raise ParameterError(f"prompt template {p} does not exist")
            return cls.parse(p.read_text(encoding="utf-8"), str(p))
        try:
            text = resources.files("mmfuse.rerankers").joinpath("templates", f"{name_or_path}.txt").read_text("utf-8")
        except FileNotFoundError:
            raise unknown("prompt template", str(name_or_path), ["listwise", "pointwise"]) from None
        return cls.parse(text, f"templates/{name_or_path}.txt")

    # -----------------------------------------------------------------------------------------------------------
    def _fmt(self, text: str, values: dict) -> str:
        out = text.format_map(values)
        lines = [ln for ln in out.split("\n") if ln.strip()]
        return "\n".join(lines)

    def _candidate_parts(self, c: Candidate, values: dict) -> list[Part]:
        v = dict(values, label=c.label, doc_id=c.doc_id, subtitle=format_subtitle(c.subtitle, c.note),
                 retrievers=format_ranks(c.ranks))
        text = self._fmt(self.candidate, v)
        before, marker, after = text.partition(IMAGE)
        # a user template without the marker still gets its image, after the text
        return [("text", before), ("image", c.image), ("text", after)]

    def render(self, query: str, candidates: list[Candidate], metadata: dict | None = None) -> list[Part]:
        """Interleaved parts: header, then per candidate its text and image (in label order), then footer."""
        metadata = metadata or {}
        values = {"query": query, "k": len(candidates), "context_note": context_note(candidates, metadata)}
        parts: list[Part] = [("text", self._fmt(self.header, values) + "\n")]
        for c in candidates:
            parts.extend(self._candidate_parts(c, values))
            parts.append(("text", "\n"))
        parts.append(("text", self._fmt(self.footer, values)))
        return merge_text(parts)


def merge_text(parts: list[Part]) -> list[Part]:
    out: list[Part] = []
    for kind, val in parts:
        if kind == "text":
            if not val:
                continue
            if out and out[-1][0] == "text":
                out[-1] = ("text", out[-1][1] + val)
                continue
        out.append((kind, val))
    return out


def format_ranks(ranks: dict[str, int | None]) -> str:
    if not ranks:
        return ""
    return "Retriever ranks: " + ", ".join(f"{name} {'#' + str(r) if r else '-'}" for name, r in ranks.items())


def format_subtitle(subtitle: str, note: str = "") -> str:
    bits = []
    if note:
        bits.append(f"({note})")
    if subtitle:
        bits.append(f'Speech/subtitles: "{subtitle}"')
    return " ".join(bits)


def context_note(candidates: list[Candidate], metadata: dict) -> str:
    notes = []
    if any(c.ranks for c in candidates):
        notes.append(" Under each candidate are the ranks the first-stage retrievers gave it "
                     "(#1 is best; '-' means that retriever did not return it).")
    inter = metadata.get("interleaved")
    if inter:
        notes.append(" The candidates were merged round-robin from several retrievers; in that interleaved order a "
                     "label that repeats was returned by several retrievers: " + " ".join(f"[{i}]" for i in inter) + ".")
    return "".join(notes)


def truncate_words(text: str, budget: int, count=None) -> str:
    """Cut ``text`` to at most ``budget`` tokens (``count(text) -> int``; default: whitespace words)."""
    text = " ".join(str(text or "").split())
    if budget <= 0 or not text:
        return ""
    words = text.split(" ")
    if count is None:
        return text if len(words) <= budget else " ".join(words[:budget]) + " ..."
    if count(text) <= budget:
        return text
    lo, hi = 0, len(words)  # longest word prefix within budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + " ..."
