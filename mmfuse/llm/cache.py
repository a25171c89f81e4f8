"""The on-disk cache of language-model answers: one small JSON file per answer, named by the sha256 of the model's
identity, the prompt and the generation settings, so a re-run or a benchmark never pays for the same answer twice.

Files are written to a temporary name and renamed into place, so a reader sees a whole answer or none, and processes
or threads answering the same prompt at once each write the same content under the same name (the last rename wins).
A plain folder of files rather than a database: no lock to take, nothing to corrupt beyond one entry (an unreadable
entry is a miss), and it can be copied, inspected or deleted by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmfuse.errors import InputError
from mmfuse.utils.files import atomic_write, cache_home

__all__ = ["AnswerCache", "default_cache_dir", "open_cache"]


def default_cache_dir() -> Path:
    """``llm`` in :func:`mmfuse.utils.files.cache_home` (``$MMFUSE_CACHE_DIR``, else ``~/.cache/mmfuse``)."""
    return cache_home() / "llm"


def _part_key(kind: str, value: Any) -> list[Any]:
    if kind == "image":  # a PIL image: its pixels decide, not the object
        return ["image", value.mode, list(value.size), hashlib.sha256(value.tobytes()).hexdigest()]
    return [kind, str(value)]


class AnswerCache:
    """Answers under ``root``, as ``root/ab/abcdef....json`` (two-letter fan-out keeps folders small)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()
        self.failed_writes = 0  # entries that could not be written (a full disk, a read-only folder)
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: the language-model cache must be a folder")

    @staticmethod
    def key(identity: Mapping[str, Any], parts: Sequence[tuple[str, Any]], settings: Mapping[str, Any]) -> str:
        doc = {"model": dict(identity), "prompt": [_part_key(k, v) for k, v in parts], "settings": dict(settings)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("text"), str) else None

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        p = self.path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(p) as fh:
                json.dump(dict(record), fh, ensure_ascii=False)
        except (OSError, InputError):  # a cache that cannot be written costs a re-run, not this answer
            self.failed_writes += 1

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.is_dir() else 0

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.root)!r})"


def open_cache(cache: "AnswerCache | str | os.PathLike | bool | None") -> AnswerCache | None:
    """``True``: the default folder; a path: that folder; ``None``, ``False`` or ``""``: no cache."""
    if isinstance(cache, AnswerCache):
        return cache
    if cache is True:
        return AnswerCache(default_cache_dir())
    if cache is None or cache is False or str(cache) == "":
        return None
    return AnswerCache(cache)
