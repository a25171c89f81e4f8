"""Readers of run and qrels files (TREC text, Parquet, JSON): they turn a file into checked columns, and every
problem into one :class:`InputError` naming the file (and line or row). Building the Run/Qrels is the model's job.

TREC text is tokenized by the compiled kernels of ``fastio`` (or, without numba, pyarrow's CSV reader on a
whitespace-normalised buffer). Only when that fast path declines do we re-read line by line in Python, which is
where the line-numbered error messages come from. Both paths read the same syntax: any ASCII whitespace between
columns, blank lines skipped, a UTF-8 byte-order mark at the start ignored, scores as ASCII decimal/exponent floats
(or inf; NaN is refused), ranks and relevance as ASCII integers.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mmfuse.errors import InputError, unknown

from . import fastio

__all__ = ["FORMATS", "format_of", "check_readable", "read_json_object", "read_text_columns", "read_text_lines",
           "SlowPath", "read_parquet", "TREC_RUN", "TREC_QRELS", "BOM"]

FORMATS = ("trec", "parquet", "json")
_EXT = {
    ".trec": "trec", ".run": "trec", ".txt": "trec", ".tsv": "trec", ".res": "trec", ".qrels": "trec",
    ".parquet": "parquet", ".pq": "parquet", ".json": "json",
}
BOM = b"\xef\xbb\xbf"
TREC_RUN = ("qid", "q0", "doc", "rank", "score", "tag?")  # a trailing "?" marks an optional column
TREC_QRELS = ("qid", "iter", "doc", "rel")
_INT = re.compile(rb"[+-]?[0-9]+")


def format_of(path: Path, fmt: str | None) -> str:
    """The format named by ``fmt``, or by the extension (anything unknown is TREC text)."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise unknown("format", fmt, FORMATS)
        return fmt
    return _EXT.get(path.suffix.lower(), "trec")


def check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


def read_json_object(path: Path, shape: str) -> dict:
    """Load a JSON file that must hold one object; errors name the file (and line for bad JSON)."""
    check_readable(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {shape}")
    return data


def read_parquet(path: Path) -> pa.Table:
    check_readable(path)
    try:
        table = pq.read_table(path)
        table.column_names  # noqa: B018  (a damaged schema fails here, with a UnicodeDecodeError)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable Parquet file ({(str(e).splitlines() or [type(e).__name__])[0]})"
                         ) from None
    return table


# ----------------------------------------------------------------------------------------------------------------
# whitespace-separated text tables (TREC runs and qrels)
# ----------------------------------------------------------------------------------------------------------------

_WS = re.compile(rb"[ \t\r\f\v]+")
_EDGE = re.compile(rb"(?m)^ | $")
_NONSPACE = re.compile(rb"\S")
_UNEVEN = re.compile(rb"[\t\r\f\v]|  |\n | \n|^[ \n]")  # anything but single spaces between columns


class SlowPath(Exception):
    """The fast reader declines this file: read it line by line (which also produces the exact error)."""


def read_text_columns(path: Path, kinds: Sequence[str], wanted: Sequence[str],
                      group: str | None = None) -> dict[str, Any]:
    """Fast path: parse a whitespace-separated file into pyarrow columns, or raise ``SlowPath``.

    ``kinds`` names the columns; the last one may be optional (a TREC run's tag). Numeric columns come back parsed
    ("score" as float64, "rel" as int64). Column ``group`` (one of ``wanted``) may come back already encoded as
    (codes, first-seen table). Raises ``SlowPath`` when the file needs the line-by-line reader (bad column
    counts, bad numbers, invalid UTF-8), which then produces the exact error.
    """
    names = [k.rstrip("?") for k in kinds]
    if fastio.kernels() is None:
        return _read_columns_csv(path.read_bytes(), path, kinds, wanted)
    data = _map_file(path)
    n_max = len(kinds)
    n_min = n_max - 1 if kinds[-1].endswith("?") else n_max
    # the score column is parsed to float64 while tokenizing; other numeric columns go through Arrow's cast
    copied = [w for w in wanted if w not in (group, "score")]
    got = fastio.tokenize_columns(data, n_min, n_max, tuple(names.index(w) for w in copied),
                                  names.index("rank") if "rank" in names else -1,
                                  names.index("tag") if "tag" in names else -1,
                                  names.index(group) if group else -1,
                                  names.index("score") if "score" in wanted else -1,
                                  start=3 if data[:3] == BOM else 0)
    if got is None:
        raise SlowPath
    arrays, encoded, floats, tag = got
    if encoded is None and floats is None and not arrays:
        raise InputError(f"{path}: file is empty")
    out: dict[str, Any] = dict(zip(copied, arrays))
    if group:
        out[group] = encoded
    if floats is not None:
        out["score"] = floats
    return _numeric(out, tag)


def _numeric(cols: dict[str, Any], tag: str | None) -> dict[str, Any]:
    """Columns with "rel" parsed to int64 and the tag; a NaN score or a bad grade leaves it to the line reader (which
    names the line)."""
    if "score" in cols and np.isnan(cols["score"]).any():
        raise SlowPath
    if "rel" in cols:
        cols["rel"] = _cast(cols["rel"], pa.int64())
    cols["tag"] = tag
    return cols


def _cast(col: Any, typ: pa.DataType) -> np.ndarray:
    try:
        return pc.cast(col, typ).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SlowPath from None


def _map_file(path: Path):
    """The file's bytes, memory-mapped read-only when it is large (no copy of a file already in the page cache)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 1 << 20:
            return fh.read()
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _read_columns_csv(data: bytes, path: Path, kinds: Sequence[str], wanted: Sequence[str]) -> dict[str, Any]:
    """``read_text_columns`` through pyarrow's CSV reader (used when numba is unavailable)."""
    if data[:3] == BOM:
        data = data[3:]
    if _NONSPACE.search(data) is None:
        raise InputError(f"{path}: file is empty")
    if _UNEVEN.search(data):
        data = _EDGE.sub(b"", _WS.sub(b" ", data))
    if data[:3] == BOM:
        raise SlowPath  # Arrow's CSV reader would drop this mark, which here is (part of) the first id
    start = 0  # index arithmetic, not lstrip/split: those copy the whole file
    while data[start:start + 1] == b"\n":
        start += 1
    end = data.find(b"\n", start)
    first = data[start:end if end >= 0 else len(data)]
    n = len(first.split(b" "))
    if n not in (len(kinds), len(kinds) - 1) or (n == len(kinds) - 1 and not kinds[-1].endswith("?")):
        raise SlowPath
    names = [k.rstrip("?") for k in kinds[:n]]
    keep = [k for k in names if k in wanted]
    if "rank" in names:  # validated (malformed lines must fail), not kept: order comes from the scores
        keep.append("rank")
    # scores are read as text and checked here: Arrow's float parser and Python's float() accept more than TREC
    types = {name: (pa.int64() if name == "rank" else pa.string()) for name in keep}
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 26),
            parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False, double_quote=False),
            convert_options=pcsv.ConvertOptions(column_types=types, include_columns=keep, strings_can_be_null=False,
                                                null_values=[], quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        raise SlowPath from None
    cols: dict[str, Any] = {name: table.column(name).combine_chunks() for name in keep}
    if "score" in cols:
        text = cols["score"]
        if not pc.all(pc.match_substring_regex(text, _FLOAT_RE2)).as_py():
            raise SlowPath
        cols["score"] = _cast(text, pa.float64())
    return _numeric(cols, first.split(b" ")[names.index("tag")].decode("utf-8", "replace") if "tag" in names else None)


# The TREC float syntax of fastio.ascii_float, for Arrow's regex engine (RE2)
_FLOAT_RE2 = r"(?i)^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)$"


def read_text_lines(path: Path, kinds: Sequence[str], numeric: Mapping[str, type]) -> tuple[dict[str, list], np.ndarray]:
    """Line-by-line reader: exact error messages with file and line number. Returns columns and line numbers."""
    n_req = sum(1 for k in kinds if not k.endswith("?"))
    names = [k.rstrip("?") for k in kinds]
    cols: dict[str, list] = {name: [] for name in names}
    lines: list[int] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[3:]
            parts = raw.split()
            if not parts:
                continue
            if not (n_req <= len(parts) <= len(kinds)):
                want = f"{n_req}" if n_req == len(kinds) else f"{n_req} or {len(kinds)}"
                raise InputError(f"{path}:{lineno}: expected {want} columns ({' '.join(names)}), got {len(parts)}: "
                                 f"{raw.decode('utf-8', 'replace').strip()[:80]!r}")
            for name, part in zip(names, parts):
                try:
                    text = part.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"{path}:{lineno}: column {name!r} is not valid UTF-8") from None
                conv = numeric.get(name)
                if conv is None:
                    cols[name].append(text)
                    continue
                val = fastio.ascii_float(part) if conv is float else int(part) if _INT.fullmatch(part) else None
                if val is None:
                    raise InputError(f"{path}:{lineno}: {name} {text!r} is not a number")
                if val != val:
                    raise InputError(f"{path}:{lineno}: {name} is NaN")
                cols[name].append(val)
            for name in names[len(parts):]:
                cols[name].append("")
            lines.append(lineno)
    if not lines:
        raise InputError(f"{path}: file is empty")
    return cols, np.asarray(lines, dtype=np.int64)
