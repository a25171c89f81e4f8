"""Text prompt templates: a built-in file of a package by name, or any file by path, with ``{placeholder}`` fields
checked when the file loads and a sha256 of the text that results record (so a number can be traced to the prompt
that produced it)."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mmfuse.errors import ParameterError, unknown

__all__ = ["TextTemplate"]


@dataclass(frozen=True)
class TextTemplate:
    """A prompt with ``{name}`` fields (``{{``/``}}`` for literal braces). ``source`` is the file it came from
    (``builtin:NAME`` for a package's own)."""

    text: str
    source: str = "<string>"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def fields(self) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None}

    @classmethod
    def parse(cls, text: str, source: str = "<string>", *, allowed: Iterable[str] = (),
              required: Iterable[str] = ()) -> "TextTemplate":
        """Check the fields: each one ``allowed``, every ``required`` one present; errors name ``source``."""
        try:
            t = cls(text, source)
            fields = t.fields
        except ValueError as e:  # an unmatched brace
            raise ParameterError(f"{source}: not a valid template ({e}); write {{{{ and }}}} for literal braces") from None
        allowed = set(allowed) | set(required)
        for name in sorted(fields):
            if allowed and (not name.isidentifier() or name not in allowed):
                raise ParameterError(f"{source}: unknown placeholder {{{name}}}; allowed: "
                                     f"{', '.join('{' + a + '}' for a in sorted(allowed))}")
        for name in required:
            if name not in fields:
                raise ParameterError(f"{source}: the template needs the placeholder {{{name}}}")
        return t

    @classmethod
    def load(cls, name_or_path: str | Path, package: str, *, builtins: Iterable[str], allowed: Iterable[str] = (),
             required: Iterable[str] = ()) -> "TextTemplate":
        """A built-in template of ``package`` (``templates/NAME.txt``, one of ``builtins``) or a file path."""
        builtins = list(builtins)
        name = str(name_or_path)
        if name in builtins:
            text = resources.files(package).joinpath("templates", f"{name}.txt").read_text("utf-8")
            return cls.parse(text, f"builtin:{name}", allowed=allowed, required=required)
        p = Path(name).expanduser()
        if not (p.suffix or p.exists() or "/" in name):
            raise unknown("prompt template", name, builtins)
        if not p.is_file():
            raise ParameterError(f"prompt template {p} does not exist" if not p.exists() else
                                 f"prompt template {p} is not a file")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ParameterError(f"prompt template {p}: cannot read it: {e}") from None
        return cls.parse(text, str(p), allowed=allowed, required=required)

    def render(self, **values: Any) -> str:
        return self.text.format_map(values).strip()

    def record(self) -> dict[str, str]:
        """What results store about the template: where it came from and the hash of its text."""
        return {"source": self.source, "sha256": self.sha256}
