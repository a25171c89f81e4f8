"""Fuzz of the run and qrels readers (TREC text, JSON, Parquet, in-memory arrays): random bytes and random
valid-but-odd inputs (ties, odd ids, unicode, CRLF, huge/tiny floats, blank lines, a BOM, nulls, odd Arrow types).

Every outcome must be a well-formed Run/Qrels (ordered, sorted doc table, no NaN; written back and read again it is
the same) or one MmfuseError with a one-line message; TREC text must read the same on all three reading paths. The
readers end in compiled kernels, where a bad input can kill the process, so each group runs in a child process:
a crash fails its test instead of taking pytest down. ``MMFUSE_FUZZ_EXAMPLES`` raises the example count.

    python tests/test_runs_fuzz.py trec      # one group in this process, as the child does
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmfuse
from mmfuse import Qrels, Run
from mmfuse.errors import MmfuseError
from mmfuse.runs import fastio

GROUPS = ("trec", "json", "parquet", "arrays")
N = int(os.environ.get("MMFUSE_FUZZ_EXAMPLES", 150))
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _child_env() -> dict[str, str]:
    root = str(Path(mmfuse.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("group", GROUPS)
def test_readers_fuzz(group):
    res = subprocess.run([sys.executable, __file__, group], env=_child_env(), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode >= 0, f"the readers killed the process (signal {-res.returncode}):\n{res.stderr[-4000:]}"
    assert res.returncode == 0, res.stderr[-6000:]


# -- checks -----------------------------------------------------------------------------------------------------
def _well_formed(obj) -> None:
    off, n = obj.offsets, len(obj)
    assert off[0] == 0 and off[-1] == n and (np.diff(off) >= 0).all() and off.size == obj.n_queries + 1
    docs = [d.encode() for d in obj.doc_ids.tolist()]
    assert docs == sorted(set(docs)), "doc table not strictly byte-sorted"
    assert ((obj.doc_idx >= 0) & (obj.doc_idx < len(docs))).all()
    assert len(set(obj.query_ids.tolist())) == obj.n_queries
    q = obj.qidx()
    pairs = q * max(len(docs), 1) + obj.doc_idx
    assert np.unique(pairs).size == n, "a (query, doc) pair repeats"
    if isinstance(obj, Run):
        s = obj.scores
        assert not np.isnan(s).any()
        same = q[1:] == q[:-1]
        assert not (same & (s[1:] > s[:-1])).any(), "scores not descending"
        assert not (same & (s[1:] == s[:-1]) & (np.diff(obj.doc_idx) >= 0)).any(), "ties not by doc id desc"
    obj.to_dict()


def _outcome(read, *args, **kw):
    """The object read, or the MmfuseError's message; any other exception propagates (and fails the fuzz)."""
    try:
        obj = read(*args, **kw)
    except MmfuseError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"not one line: {msg!r}"
        return msg
    assert isinstance(obj, (Run, Qrels))
    _well_formed(obj)
    return obj


def _rewrite(obj, ext: str, cls) -> None:
    """What was read writes back and reads again the same (a write may refuse with one MmfuseError)."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"again.{ext}"
        try:
            obj.write(p)
        except MmfuseError as e:
            assert "\n" not in str(e)
            return
        back = cls.read(p)
        assert back.to_dict() == obj.in_natural_order().to_dict()


def _paths_agree(path: Path, read) -> None:
    """TREC text reads the same through the compiled tokenizer, Arrow's CSV reader and the line reader."""
    kernels, tokenize = fastio.kernels, fastio.tokenize_columns
    got = [_outcome(read, path)]
    try:
        fastio.kernels = lambda: None
        got.append(_outcome(read, path))
        fastio.kernels = kernels
        fastio.tokenize_columns = lambda *a, **k: None
        got.append(_outcome(read, path))
    finally:
        fastio.kernels, fastio.tokenize_columns = kernels, tokenize
    if isinstance(got[0], str):
        assert got[1:] == got[:1] * 2, got
        return
    for other in got[1:]:
        assert not isinstance(other, str), got
        assert other.to_dict() == got[0].to_dict() and other.query_ids.tolist() == got[0].query_ids.tolist()
        assert other.name == got[0].name
        if isinstance(other, Run):
            assert np.array_equal(other.scores, got[0].scores)
    _rewrite(got[0], "trec" if isinstance(got[0], Run) else "txt", type(got[0]))


# -- strategies -------------------------------------------------------------------------------------------------
ODD_IDS = st.sampled_from(["q1", "q2", "q10", "Q0", "0", "-1", "d'1", 'd"2', "é", "\u00a0", "\u2028x", "a\x00b",
                           "\U0001f600", "x" * 40, "doc#1", "1e5", "nan", "inf", "\ufeffq", "\\", "a,b", "q01"])
IDS = ODD_IDS | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6).map(
    lambda s: "".join(c for c in s if c not in " \t\n\r\x0b\x0c") or "e")
SCORES = (st.floats(allow_nan=False).map(repr) | st.floats(allow_nan=False, allow_infinity=False).map("{:.3e}".format)
          | st.sampled_from(["1e400", "-1e400", "1e-400", "4.9e-324", "2.2250738585072014e-308", "1.7976931348623157e308",
                             "inf", "-inf", "Infinity", "nan", "1_000", "\u0661", "\uff11", "0x1p3", "1.", ".5", "+0",
                             "-0", "00001", "1e5", "1E+05", "9007199254740993", "1.00000000000000000000001", ".", "e"])
          | st.integers(-10 ** 25, 10 ** 25).map(str))
SEP = st.sampled_from([" ", "\t", "  ", " \t ", "\x0b", "\x0c"])
EOL = st.sampled_from(["\n", "\r\n", "\n\n", " \n", "\t\r\n"])


@st.composite
def trec_text(draw, qrels: bool = False) -> bytes:
    queries = draw(st.lists(IDS, min_size=1, max_size=4))
    docs = draw(st.lists(IDS, min_size=1, max_size=8))
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        sep, q, d = draw(SEP), draw(st.sampled_from(queries)), draw(st.sampled_from(docs))
        if qrels:
            cols = [q, draw(st.sampled_from(["0", "Q0", "1.5", "x"])), d,
                    draw(st.sampled_from(["0", "1", "2", "-1", "+3", "1.0", "\uff11", "10"]))]
        else:
            cols = [q, "Q0", d, draw(st.sampled_from(["1", "2", "+3", "-1", "0", "x", "1.0"])), draw(SCORES)]
            if draw(st.booleans()):
                cols.append(draw(st.sampled_from(["tag", "t2", "run-1"])))
        if draw(st.integers(0, 20)) == 0:
            cols = cols[:draw(st.integers(1, len(cols)))] + ([draw(IDS)] if draw(st.booleans()) else [])
        lines.append(draw(SEP) * draw(st.integers(0, 1)) + sep.join(cols) + draw(EOL))
    text = "".join(lines).encode()
    return ("\ufeff".encode() if draw(st.booleans()) else b"") + text


def _file(data: bytes, name: str) -> Path:
    p = Path(tempfile.mkdtemp()) / name
    p.write_bytes(data)
    return p


# -- the groups -------------------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=600) | trec_text(), st.sampled_from(["error", "max", "first"]))
def fuzz_trec_runs(data, on_duplicate):
    _paths_agree(_file(data, "r.trec"), lambda p: Run.read(p, on_duplicate=on_duplicate))


@FUZZ
@given(st.binary(max_size=400) | trec_text(qrels=True))
def fuzz_trec_qrels(data):
    _paths_agree(_file(data, "q.txt"), Qrels.read)


JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers(-2 ** 70, 2 ** 70) | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4),
                    max_leaves=20)
JSON_RUN = st.dictionaries(IDS | st.text(max_size=3), st.dictionaries(IDS | st.text(max_size=3),
                           st.floats() | st.integers(-2 ** 70, 2 ** 70) | JSON, max_size=5), max_size=5)


@FUZZ
@given(JSON | JSON_RUN, st.booleans(), st.binary(max_size=60))
def fuzz_json(value, bom, junk):
    text = json.dumps(value).encode()
    for data in (text, b"\xef\xbb\xbf" + text, text[: len(text) // 2], junk):
        data = (b"\xef\xbb\xbf" if bom else b"") + data
        for cls in (Run, Qrels):
            got = _outcome(cls.read, _file(data, "x.json"))
            if not isinstance(got, str) and len(got):
                _rewrite(got, "json", cls)


def _column(draw, n: int, kind: str):
    nulls = draw(st.booleans())

    def maybe(v):
        return None if nulls and draw(st.integers(0, 4)) == 0 else v

    if kind == "id":
        typ = draw(st.sampled_from(["string", "large_string", "dictionary", "int64", "binary", "null", "float64"]))
        if typ == "null":
            return pa.nulls(n)
        if typ in ("int64", "float64"):
            return pa.array([maybe(draw(st.integers(-5, 5))) for _ in range(n)], type=getattr(pa, typ)())
        vals = [maybe(draw(IDS)) for _ in range(n)]
        if typ == "binary":
            return pa.array([None if v is None else v.encode() if draw(st.booleans()) else b"\xff" for v in vals],
                            type=pa.binary())
        arr = pa.array(vals, type=pa.large_string() if typ == "large_string" else pa.string())
        return arr.dictionary_encode() if typ == "dictionary" else arr
    typ = draw(st.sampled_from(["float64", "float32", "int64", "int8", "uint64", "bool", "string", "decimal"]))
    if typ == "bool":
        return pa.array([maybe(draw(st.booleans())) for _ in range(n)])
    if typ == "string":
        return pa.array([maybe(draw(SCORES)) for _ in range(n)])
    if typ == "decimal":
        return pa.array([maybe(Decimal(draw(st.integers(-9999, 9999))) / 10) for _ in range(n)], pa.decimal128(5, 1))
    if typ.startswith("float"):
        return pa.array([maybe(draw(st.floats(width=32 if typ == "float32" else 64))) for _ in range(n)],
                        type=getattr(pa, typ)())
    lo = 0 if typ == "uint64" else -(2 ** 63) if typ == "int64" else -128
    hi = 2 ** 64 - 1 if typ == "uint64" else 2 ** 63 - 1 if typ == "int64" else 127
    return pa.array([maybe(draw(st.integers(lo, hi) | st.integers(-3, 3).filter(lambda x: x >= lo)))
                     for _ in range(n)], type=getattr(pa, typ)())


@st.composite
def parquet_table(draw) -> pa.Table:
    n = draw(st.integers(0, 12))
    cols = {}
    names = draw(st.sampled_from([("query_id", "doc_id", "score"), ("q_id", "doc_id", "score"),
                                  ("query_id", "doc_id", "relevance"), ("query_id", "doc", "score")]))
    for name in names:
        cols[name] = _column(draw, n, "value" if name in ("score", "relevance") else "id")
    if draw(st.booleans()):
        cols["rank"] = pa.array(range(n))
    if draw(st.booleans()):
        cols["segment_id"] = pa.array([[i] for i in range(n)]) if draw(st.booleans()) else pa.array(["s"] * n)
    return pa.table(cols)


@FUZZ
@given(parquet_table(), st.integers(0, 10 ** 6), st.integers(0, 255))
def fuzz_parquet(table, where, byte):
    from mmfuse.fusion.streaming import fuse_stream

    tmp = Path(tempfile.mkdtemp())
    p = tmp / "x.parquet"
    pq.write_table(table, p, row_group_size=max(1, table.num_rows // 3))
    for cls in (Run, Qrels):
        got = _outcome(cls.read, p)
        if not isinstance(got, str) and len(got):
            _rewrite(got, "parquet", cls)
    try:
        stats = fuse_stream([p, p], tmp / "out.trec", method="combsum", block_rows=3)
        assert stats["rows_out"] >= 0
    except MmfuseError as e:
        assert "\n" not in str(e)
    data = bytearray(p.read_bytes())
    for damaged in (bytes(data[: where % (len(data) + 1)]),
                    bytes(data[:where % len(data)] + bytes([byte]) + data[where % len(data) + 1:])):
        (tmp / "bad.parquet").write_bytes(damaged)
        _outcome(Run.read, tmp / "bad.parquet")
        _outcome(Qrels.read, tmp / "bad.parquet")


ANY = st.none() | st.integers(-3, 3) | st.floats() | st.text(max_size=3) | st.binary(max_size=2) | st.booleans()


@st.composite
def containers(draw, n: int, of):
    vals = [draw(of) for _ in range(n)]
    kind = draw(st.sampled_from(["list", "numpy", "arrow", "2d"]))
    if kind == "numpy":
        try:
            return np.asarray(vals)
        except ValueError:
            return vals
    if kind == "arrow":
        try:
            return pa.array(vals)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return vals
    return [vals] if kind == "2d" else vals


@FUZZ
@given(st.integers(0, 6), st.data())
def fuzz_arrays(n, data):
    ids = IDS | ANY
    sizes = [n, n, n] if data.draw(st.booleans()) else [data.draw(st.integers(0, 6)) for _ in range(3)]
    q = data.draw(containers(sizes[0], ids))
    d = data.draw(containers(sizes[1], ids))
    s = data.draw(containers(sizes[2], st.floats() | st.integers(-2 ** 70, 2 ** 70) | ANY))
    _outcome(Run.from_arrays, q, d, s, on_duplicate=data.draw(st.sampled_from(["error", "max", "first"])))
    _outcome(Qrels.from_arrays, q, d, s)
    _outcome(Run.from_dict, data.draw(JSON_RUN | JSON))
    _outcome(Qrels.from_dict, data.draw(JSON_RUN | JSON))


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith(f"fuzz_{sys.argv[1]}"):
            fn()
    assert sys.argv[1] in GROUPS, f"groups: {', '.join(GROUPS)}"
