"""The typed option layer: every option value of every command is parsed by one of these types.

Each type is a ``parser=`` for ``typer.Option``/``typer.Argument``: it turns the text the user typed into the value
the command gets, or raises ``typer.BadParameter``, which click reports as ``Invalid value for '--depth': ...`` and
``main`` prints as one line (exit 2) before the command runs, so nothing is read, loaded or written first. Ranges
live here, once per kind of value, not as checks inside each command. Integers stop at 2^63 - 1 (what numpy and
Arrow index with), floats must be finite, lists must name something. The library keeps its own checks for Python
callers; where a value has a library parser (``--grid``, ``--cell``, metric and fusion method names) that parser
runs here (``Checked``), so both sides accept the same values and say the same thing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import typer

from mmfuse.errors import MmfuseError, suggest

INT64_MAX = 2**63 - 1
_INT = re.compile(r"[+-]?[0-9]+")
# ASCII decimal or exponent notation only: float() also takes "1_000", "inf", "nan" and non-ASCII digits
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _text(value: Any) -> str:
    return str(value).strip()


class Int:
    """A whole number in ``[min, max]`` (``max`` defaults to the int64 limit)."""

    def __init__(self, min: int | None = None, max: int = INT64_MAX) -> None:
        self.min, self.max = min, max

    def __call__(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif not _INT.fullmatch(_text(value)):
            raise typer.BadParameter(f"{_text(value)!r} is not a whole number")
        elif len(_text(value)) > 40:  # far past any bound (and int() refuses over 4300 digits)
            raise typer.BadParameter(f"{_text(value)[:20]}... ({len(_text(value))} characters) is out of range: "
                                     f"{self.min} to {self.max}")
        else:
            n = int(_text(value))
        if n > self.max:
            raise typer.BadParameter(f"{n} is too large: at most {self.max}")
        if self.min is not None and n < self.min:
            raise typer.BadParameter(f"{n} is too small: at least {self.min}")
        return n


class Float:
    """A finite number, ``>= min`` (or ``> min`` with ``open_min=True``) and ``<= max``."""

    def __init__(self, min: float | None = None, max: float | None = None, open_min: bool = False) -> None:
        self.min, self.max, self.open_min = min, max, open_min

    def __call__(self, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            x = float(value)
        elif _FLOAT.fullmatch(_text(value)):
            x = float(_text(value))
        else:
            raise typer.BadParameter(f"{_text(value)!r} is not a finite number")
        if not math.isfinite(x):
            raise typer.BadParameter(f"{_text(value)!r} is not a finite number")
        if self.min is not None and (x <= self.min if self.open_min else x < self.min):
            raise typer.BadParameter(f"{x:g} is out of range: must be {'>' if self.open_min else '>='} {self.min:g}")
        if self.max is not None and x > self.max:
            raise typer.BadParameter(f"{x:g} is out of range: must be <= {self.max:g}")
        return x


class Choice:
    """One of a fixed set of names, with a "did you mean" for near misses."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)

    def __call__(self, value: Any) -> str:
        text = _text(value)
        if text not in self.choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(self.choices)}{suggest(text, self.choices)}")
        return text


class Checked:
    """A value a library parser validates (``parse_grid``, ``parse_metric``, ``get_method``): its one-line
    MmfuseError becomes the usage error; the command gets the text, which the library parses again."""

    def __init__(self, check: Callable[[str], Any]) -> None:
        self.check = check

    def __call__(self, value: Any) -> str:
        text = _text(value)
        try:
            self.check(text)
        except MmfuseError as e:
            raise typer.BadParameter(str(e)) from None
        return text


class Csv:
    """A comma-separated list naming at least one item; ``item`` parses each one (default: as it is)."""

    def __init__(self, item: Callable[[str], Any] | None = None) -> None:
        self.item = item

    def __call__(self, value: Any) -> list:
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            raise typer.BadParameter(f"{str(value)!r} names nothing: give a comma-separated list")
        return [self.item(p) for p in parts] if self.item else parts


class Numbers(Csv):
    """Comma-separated finite numbers, such as ``--weights 1,0.5``."""

    def __init__(self) -> None:
        super().__init__(self._number)

    @staticmethod
    def _number(text: str) -> float:
        try:
            return Float()(text)
        except typer.BadParameter:
            raise typer.BadParameter(f"{text!r} is not a finite number: expected comma-separated numbers such as 1,0.5") from None


class KeyValue:
    """``name=value`` as a (name, value) pair; ``-`` and ``.`` in the name become ``_`` (``rrf.k`` = ``rrf_k``)."""

    def __call__(self, value: Any) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, sep, val = str(value).partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{str(value)!r}: expected name=value")
        return name.strip().replace("-", "_").replace(".", "_"), val.strip()


class Word:
    """A non-empty text without whitespace (a TREC run tag is one column of the file)."""

    def __call__(self, value: Any) -> str:
        text = str(value)
        if not text or any(c.isspace() for c in text):
            raise typer.BadParameter(f"{text!r} must be one word: no spaces, tabs or newlines")
        return text
