"""Query files: the texts behind a run's query ids, as TSV ``qid<TAB>text`` (TREC/pyserini topics) or JSON
``{qid: text}``. A UTF-8 byte-order mark at the start is ignored; every other problem is one error naming the file
(and line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmfuse.errors import InputError

__all__ = ["read_queries"]


def read_queries(path: str | os.PathLike) -> dict[str, str]:
    """Query texts by id from TSV ``qid<TAB>text`` or JSON ``{qid: text}`` (by extension, or a leading ``{``).

    TSV: blank lines are skipped; a line without a tab, an empty id or text, or an id given twice is an error.
    JSON: texts must be strings (or numbers); a blank text is passed on as it is (searching decides what to do with
    it), a null, list or object is an error.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: query file does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[:e.start].count(b"\n") + 1
        raise InputError(f"{p}:{line}: not valid UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from None
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from None
        except RecursionError:
            raise InputError(f"{p}: JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise InputError(f"{p}: expected a JSON object {{qid: text}}")
        for k, v in data.items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                raise InputError(f"{p}: query {k!r} must have a text, got {v!r}")
        return {str(k): str(v) for k, v in data.items()}
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): it also splits at \x1c, \u2028 ...
        if not line.strip():
            continue
        qid, sep, q = line.partition("\t")
        qid, q = qid.strip(), q.strip()
        if not sep or not qid or not q:
            raise InputError(f"{p}:{n}: expected 'qid<TAB>query text'")
        if qid in first:
            raise InputError(f"{p}:{n}: query id {qid!r} given again (first at line {first[qid]})")
        first[qid] = n
        out[qid] = q
    if not out:
        raise InputError(f"{p}: no queries")
    return out
