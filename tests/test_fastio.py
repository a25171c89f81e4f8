"""The compiled I/O kernels (mmfuse.runs.fastio) against Python and Arrow as oracles: float parsing bit for bit,
byte-order id encoding and table unions, and TREC files read by the compiled tokenizer vs the line reader."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmfuse import Qrels, Run
from mmfuse.errors import InputError
from mmfuse.runs import fastio as _fastio


def _parse(tokens: list[str]):
    k = _fastio.kernels()
    raw = " ".join(tokens).encode()
    lens = np.array([len(t.encode()) for t in tokens], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]).astype(np.int64)
    bits = np.zeros(len(tokens), dtype=np.uint64)
    ok = np.zeros(len(tokens), dtype=np.bool_)
    k["parse_floats"](np.frombuffer(raw, dtype=np.uint8), starts, starts + lens, bits, ok)
    return ok, bits


def test_float_parser_is_correctly_rounded():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.normal(size=40_000), rng.normal(size=20_000) * 1e12,
                           np.exp(rng.uniform(-700, 700, size=40_000)), rng.integers(0, 10**6, 20_000) / 1000.0])
    tokens = ([repr(float(v)) for v in vals] + [f"{v:.6f}" for v in vals[:20_000]] +
              [f"{v:.17g}" for v in vals[:20_000]] + [f"{v:.3e}" for v in vals[:20_000]] +
              [f"{-v:.19g}" for v in vals[:20_000]])
    # decimal strings right between two doubles (round half to even) and near the mantissa/exponent edges
    tokens += ["9007199254740993", "9007199254740995", "2.5", "0.5e1", "1e23", "7.2057594037927933e16",
               "2.2250738585072014e-308", "1.7976931348623157e308", "8.98846567431158e307", "1e-300", "123456789e-20",
               "0", "-0", "0.0", "+3.5", ".5", "5.", "1E-3", "1e+5"]
    ok, bits = _parse(tokens)
    mantissa_digits = [sum(c.isdigit() for c in t.lower().split("e")[0]) for t in tokens]
    must = [m <= 19 and 2.3e-308 < abs(float(t)) < 1.7e308 for t, m in zip(tokens, mantissa_digits)]
    assert ok[np.array(must)].all() and sum(must) > 150_000
    got = bits.view(np.float64)
    for t, o, g in zip(tokens, ok, got):
        if o:
            assert struct.pack("<d", float(t)) == struct.pack("<d", g), t


def test_float_parser_declines_what_it_does_not_handle():
    tokens = ["1e", "e5", ".", "-", "inf", "nan", "1_0", "0x10", "12345678901234567890", "4.9e-324", "1e309",
              "1.00000000000000000000", "1.5e12345", "3.0x"]
    ok, _ = _parse(tokens)
    assert not ok.any()


def _ids(rng, n, style):
    if style == "numeric":
        return [f"doc{int(x):07d}" for x in rng.integers(0, 10**7, n)]
    if style == "mixed":
        alphabet = list("abcXYZ019-_./é")
        return ["".join(rng.choice(alphabet, rng.integers(1, 7))) for _ in range(n)]
    if style == "long":  # keys do not fit 64 bits with the position: the argsort branch
        return [f"prefix/{int(x):012d}" for x in rng.integers(0, 10**12, n)]
    return ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 30)) for _ in range(n)]  # too long


@pytest.mark.parametrize("style", ["numeric", "mixed", "long", "random30"])
def test_encode_sorted_matches_arrow(style):
    rng = np.random.default_rng(1)
    ids = _ids(rng, 5000, style)
    ids += ids[:700]  # duplicates
    arr = pa.array(ids, type=pa.string())
    got = _fastio.encode_sorted(arr)
    if style == "random30":
        assert got is None  # 30 random characters cannot be keyed in 64 bits: callers sort with Arrow
        return
    codes, table = got
    expect = sorted(set(ids), key=lambda s: s.encode())
    assert table.to_pylist() == expect
    assert [expect[c] for c in codes.tolist()] == ids


def test_encode_sorted_two_threads_matches_arrow():
    # past 200k ids the keys are built and sorted in two halves, then merged
    rng = np.random.default_rng(6)
    ids = pa.array([f"v{x}" for x in rng.integers(0, 400_000, 260_000)])
    codes, table = _fastio.encode_sorted(ids)
    expect = pc.unique(ids)
    expect = expect.take(pc.sort_indices(expect))
    assert table.equals(expect)
    assert pc.all(pc.equal(table.take(pa.array(codes)), ids)).as_py()


def test_encode_sorted_declines_nul_and_handles_prefix_ids():
    assert _fastio.encode_sorted(pa.array(["a\x00", "a", "b"] * 400)) is None
    ids = ["a", "ab", "abc", "b", "", "aa"] * 300  # prefixes of each other and the empty string
    codes, table = _fastio.encode_sorted(pa.array(ids))
    assert table.to_pylist() == ["", "a", "aa", "ab", "abc", "b"]
    assert [table.to_pylist()[c] for c in codes.tolist()] == ids


def test_union_sorted_matches_arrow():
    rng = np.random.default_rng(3)
    pool = sorted(set(_ids(rng, 20_000, "numeric")))
    tables = [sorted(rng.choice(pool, size, replace=False).tolist()) for size in (9000, 1, 12_000, 3000)]
    tables.append(tables[0])  # identical tables merge too
    arrays = [pa.array(t) for t in tables]
    union, maps = _fastio.union_sorted(arrays)
    expect = sorted(set().union(*tables))
    assert union.to_pylist() == expect
    for t, m in zip(tables, maps):
        assert [expect[i] for i in m.tolist()] == t
    assert _fastio.union_sorted([pa.array(["b", "a"]), pa.array(["a"])]) is None  # not a sorted table


def _write_run(path, rng, n_q=60, n_c=80, style=0):
    lines = []
    for q in range(n_q):
        docs = rng.choice(5000, n_c, replace=False)
        scores = np.sort(rng.normal(size=n_c))[::-1]
        for r, (d, s) in enumerate(zip(docs, scores), 1):
            sep = ["\t", "  ", " "][(q + r + style) % 3]
            tag = "" if (r + style) % 7 == 0 else f"{sep}tag{style}"
            lines.append(f"q{q}{sep}Q0{sep}d{d}{sep}{r}{sep}{float(s)!r}{tag}")
    text = "\n".join(lines) + "\r\n\n"
    path.write_text(text)


@pytest.mark.parametrize("big, parts", [(False, 2), (True, 2), (True, 5)])
def test_trec_reader_matches_line_reader(tmp_path, monkeypatch, big, parts):
    # tabs, repeated spaces, a missing tag on some lines, CRLF and a trailing blank line; "big" crosses the size
    # where the file is split at newlines and tokenized on several threads
    rng = np.random.default_rng(4)
    p = tmp_path / "r.trec"
    _write_run(p, rng, n_q=700 if big else 60, n_c=150 if big else 80)
    assert (p.stat().st_size >= 1 << 22) == big
    monkeypatch.setattr(_fastio, "_PARTS", parts)
    fast = Run.read(p)
    monkeypatch.setattr(_fastio, "kernels", lambda: None)  # the numba-free readers: CSV fast path / line reader
    slow = Run.read(p)
    assert fast.equals(slow) and fast.name == slow.name == "tag0"
    assert fast.query_ids.tolist() == slow.query_ids.tolist()
    assert (np.asarray(fast.doc_ids) == np.asarray(slow.doc_ids)).all()


def test_reader_odd_but_valid_scores_and_utf8(tmp_path):
    p = tmp_path / "r.trec"
    p.write_bytes("q\u00e9 Q0 d\u00e9 1 1e3 t\nq\u00e9 Q0 b 2 -inf t\nq2 Q0 x 1 +1e-400 t\n".encode())
    r = Run.read(p)
    assert r.to_dict() == {"q\u00e9": {"d\u00e9": 1000.0, "b": float("-inf")}, "q2": {"x": 0.0}}
    p.write_bytes(b"q1 Q0 d\xff 1 1.0 t\n")
    with pytest.raises(InputError, match=r"r.trec:1: column 'doc' is not valid UTF-8"):
        Run.read(p)


def test_query_groups_and_first_seen_order(tmp_path):
    # a query that comes back after another one keeps its first code; the table is in first-seen order
    p = tmp_path / "r.trec"
    p.write_text("qb Q0 a 1 3 t\nqa Q0 a 1 2 t\nqb Q0 c 2 1 t\nqa Q0 b 2 1 t\n")
    r = Run.read(p)
    assert r.query_ids.tolist() == ["qb", "qa"]
    assert r.to_dict() == {"qb": {"a": 3.0, "c": 1.0}, "qa": {"a": 2.0, "b": 1.0}}


def test_qrels_through_compiled_reader(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("q1 0 d1 1\nq1 1.5 d2 0\nq2\tQ0  d3 2\n")
    assert Qrels.read(p).to_dict() == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    p.write_text("q1 0 d1 1.0\n")
    with pytest.raises(InputError, match=r"q.txt:1: rel '1.0' is not a number"):
        Qrels.read(p)


def test_fused_loaded_runs_keep_lazy_tables(tmp_path):
    # runs read from files keep Arrow doc tables; fusing them must give what fusing their dict copies gives
    from mmfuse.fusion import fuse

    rng = np.random.default_rng(5)
    runs = []
    for i in range(3):
        p = tmp_path / f"r{i}.trec"
        _write_run(p, rng, n_q=30, n_c=50, style=i)
        runs.append(Run.read(p))
    assert all(isinstance(r.doc_table(), pa.Array) for r in runs)
    copies = [Run.from_dict(r.to_dict(), name=r.name) for r in runs]
    for method in ("combsum", "rrf", "combmed"):
        assert fuse(runs, method=method).to_dict() == fuse(copies, method=method).to_dict()
    assert pc.all(pc.equal(pa.array(fuse(runs, method="rrf").doc_ids), pa.array(fuse(copies, method="rrf").doc_ids)))
