"""Text normalization shared by OCR de-duplication and every lexical index: NFKC, casefold, punctuation out.

OCR output often loses its spaces ("REDBICYCLE"), so ``squash`` (normalized text without whitespace) is the key
under which two readings of the same caption compare equal.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "squash"]

_WS = re.compile(r"\s+")


class _PunctTable(dict):
    """str.translate table: punctuation, symbols and control/format characters -> space, filled on demand."""

    def __missing__(self, code: int) -> str | int:
        ch = chr(code)
        rep: str | int = " " if unicodedata.category(ch)[0] in "PSC" and not ch.isspace() else code
        self[code] = rep
        return rep


_PUNCT = _PunctTable()


def normalize_text(s: str) -> str:
    """NFKC, casefold, punctuation and symbols to spaces, whitespace collapsed: 'Hello,  WORLD!' -> 'hello world'."""
    if not s:
        return ""
    s = unicodedata.normalize("NFKC", s).casefold().translate(_PUNCT)
    return _WS.sub(" ", s).strip()


def squash(s: str) -> str:
    """normalize_text with all whitespace removed, so OCR output that lost its spaces compares equal."""
    return _WS.sub("", normalize_text(s))
