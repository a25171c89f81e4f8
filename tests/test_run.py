"""Run/Qrels: construction, ordering, every reader/writer round trip, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import ranx

from mmfuse import Qrels, Run
from mmfuse.errors import InputError, ParameterError


def _sample():
    return Run.from_dict({"q1": {"d1": 1.0, "d2": 2.0, "d3": 2.0, "d10": 0.5}, "q2": {"a": 0.5, "b": -1.0}}, name="s")


def test_order_score_desc_then_doc_id_desc():
    run = _sample()
    # d3 and d2 tie at 2.0: trec_eval puts the larger doc id ("d3") first
    assert [d for d, _ in run.query("q1")] == ["d3", "d2", "d1", "d10"]
    assert run.ranks().tolist() == [1, 2, 3, 4, 1, 2]
    assert run.qidx().tolist() == [0, 0, 0, 0, 1, 1]
    assert list(run.doc_ids) == sorted(run.doc_ids)


def test_empty_query_kept_in_table():
    run = Run.from_dict({"q1": {"a": 1.0}, "q2": {}})
    assert run.n_queries == 2 and run.counts().tolist() == [1, 0]
    assert run.to_dict() == {"q1": {"a": 1.0}, "q2": {}}


@pytest.mark.parametrize("ext", ["trec", "parquet", "json"])
def test_roundtrip_files(tmp_path, ext):
    run = _sample()
    path = tmp_path / f"r.{ext}"
    run.write(path)
    back = Run.read(path)
    assert back.equals(run)
    assert back.to_dict() == run.to_dict()


def test_trec_text_is_standard(tmp_path):
    _sample().write(tmp_path / "r.trec", tag="mytag")
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert lines[0] == "q1 Q0 d3 1 2 mytag"
    assert lines[-1] == "q2 Q0 b 2 -1 mytag"
    assert Run.read(tmp_path / "r.trec").name == "mytag"


def test_trec_tolerates_whitespace_and_missing_tag(tmp_path):
    p = tmp_path / "ws.txt"
    p.write_text("  q1\tQ0   d1 1 1.5\nq1 Q0 d2 2 3.0  \n\n\r\nq2 Q0 d9 1 1e-3\n")
    run = Run.read(p)
    assert run.to_dict() == {"q1": {"d2": 3.0, "d1": 1.5}, "q2": {"d9": 0.001}}


def test_trec_mixed_tag_presence(tmp_path):
    p = tmp_path / "mixed.trec"
    p.write_text("q1 Q0 d1 1 1.5 tag\nq1 Q0 d2 2 1.0\n")
    assert Run.read(p).to_dict() == {"q1": {"d1": 1.5, "d2": 1.0}}


def test_scores_roundtrip_exactly(tmp_path):
    rng = np.random.default_rng(3)
    s = rng.normal(size=500) * 10.0 ** rng.integers(-12, 12, size=500)
    run = Run.from_arrays(np.repeat(["a", "b"], 250), [f"d{i}" for i in range(500)], s)
    run.write(tmp_path / "x.trec")
    assert np.array_equal(Run.read(tmp_path / "x.trec").scores, run.scores)


def test_pandas_and_ranx_roundtrip():
    run = _sample()
    assert Run.from_pandas(run.to_pandas()).equals(run)
    rr = run.to_ranx()
    assert isinstance(rr, ranx.Run)
    assert Run.from_ranx(rr).to_dict() == run.to_dict()
    df = pd.DataFrame({"q_id": ["1", "1"], "doc_id": ["x", "y"], "score": [0.1, 0.2]})
    assert Run.from_pandas(df).query("1") == [("y", 0.2), ("x", 0.1)]


def test_from_matrix_depth_and_threshold():
    m = np.array([[0.1, 0.0, 0.3, 0.3], [0.0, 0.0, 0.0, 1.0]])
    run = Run.from_matrix(m, ["qa", "qb"], ["v0", "v1", "v2", "v3"], depth=2)
    # tie at the cut between v2 and v3: the higher doc id wins both places
    assert run.query("qa") == [("v3", 0.3), ("v2", 0.3)]
    assert run.query("qb") == [("v3", 1.0), ("v2", 0.0)]
    trunc = Run.from_matrix(m, ["qa", "qb"], ["v0", "v1", "v2", "v3"], threshold=0.0)
    assert trunc.to_dict() == {"qa": {"v3": 0.3, "v2": 0.3, "v0": 0.1}, "qb": {"v3": 1.0}}


def test_from_matrix_matches_ranx_ordering():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 4, size=(20, 30)).astype(float)  # many ties
    run = Run.from_matrix(m, depth=10)
    full = Run.from_matrix(m)
    # keeping the top 10 of the full ordering must equal the depth-limited build
    assert run.to_dict() == {q: dict(list(full[q].items())[:10]) for q in full.keys()}


def test_cut_and_subset():
    run = _sample()
    assert run.cut(2).to_dict() == {"q1": {"d3": 2.0, "d2": 2.0}, "q2": {"a": 0.5, "b": -1.0}}
    sub = run.subset(["q2"])
    assert sub.to_dict() == {"q2": {"a": 0.5, "b": -1.0}}


def test_duplicates(tmp_path):
    p = tmp_path / "dup.trec"
    p.write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.7 t\nq1 Q0 d1 3 0.5 t\n")
    with pytest.raises(InputError, match=r"dup.trec:3: duplicate .*'q1', 'd1'.*first at line 1"):
        Run.read(p)
    assert Run.read(p, on_duplicate="first").to_dict() == {"q1": {"d1": 1.0, "d2": 0.7}}
    p.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 3 2.0 t\n")
    assert Run.read(p, on_duplicate="max").to_dict() == {"q1": {"d1": 2.0}}
    with pytest.raises(ParameterError, match="on_duplicate"):
        Run.read(p, on_duplicate="maxx")


@pytest.mark.parametrize("text, pattern", [
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 nan t\n", r"bad.trec:2: score is NaN"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 abc t\n", r"bad.trec:2: score 'abc' is not a number"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2\n", r"bad.trec:2: expected 5 or 6 columns"),
    ("q1 Q0 d1 x 1.0 t\n", r"bad.trec:1: rank 'x' is not a number"),
    ("q1 Q0 d1 1.0 1.0 t\n", r"bad.trec:1: rank '1.0' is not a number"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 1_0x t\n", r"bad.trec:2: score '1_0x' is not a number"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 1.0 t extra\n", r"bad.trec:2: expected 5 or 6 columns"),
    ("q1 Q0 d1 1 1.0 t\nq1 Q0 d1 2 0.5 t\n", r"bad.trec:2: duplicate .*first at line 1"),
    ("\n  \n", r"bad.trec: file is empty"),
])
def test_malformed_trec(tmp_path, text, pattern):
    p = tmp_path / "bad.trec"
    p.write_text(text)
    with pytest.raises(InputError, match=pattern):
        Run.read(p)


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="nope.trec: file not found"):
        Run.read(tmp_path / "nope.trec")
    p = tmp_path / "x.json"
    p.write_text('{"q1": {"d1": "high"}}')
    with pytest.raises(InputError, match="is not a number"):
        Run.read(p)
    p.write_text("{not json")
    with pytest.raises(InputError, match=r"x.json:1: invalid JSON"):
        Run.read(p)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    run = _sample()
    with pytest.raises(InputError, match="does not exist"):
        run.write(tmp_path / "missing_dir" / "out.trec")
    target = tmp_path / "out.trec"
    target.write_text("old\n")
    with pytest.raises(ParameterError):
        run.write(target, tag="bad tag")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.trec"]


def test_qrels_trec_with_fractional_iteration(tmp_path):
    p = tmp_path / "qrels.txt"
    p.write_text("q1 0 d1 1\nq1 1.5 d2 0\nq2 Q0 d3 2\n")
    q = Qrels.read(p)
    assert q.to_dict() == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    assert Qrels.from_ranx(q.to_ranx()).to_dict() == q.to_dict()
    q.write(tmp_path / "back.txt")
    assert Qrels.read(tmp_path / "back.txt").to_dict() == q.to_dict()
    p.write_text("q1 0 d1 high\n")
    with pytest.raises(InputError, match=r"qrels.txt:1: rel 'high' is not a number"):
        Qrels.read(p)


def test_json_writer_is_valid_json(tmp_path):
    _sample().write(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["q2"] == {"a": 0.5, "b": -1.0}


def test_import_is_light():
    import subprocess
    import sys

    code = "import mmfuse, mmfuse.runs, sys; assert 'torch' not in sys.modules and 'ranx' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_many_distinct_doc_ids_sorted_table():
    # > 50k mostly-distinct ids take the sort-based encoder; the doc table must still be sorted by UTF-8 bytes
    rng = np.random.default_rng(2)
    n = 60_000
    docs = np.array([f"d{i}" for i in rng.integers(0, 200_000, n)], dtype=object)
    docs[:3] = ["\u00e9", "z", "Z"]
    q = np.array([f"q{i // 100}" for i in range(n)], dtype=object)
    s = rng.random(n)
    run = Run.from_arrays(q, docs, s, on_duplicate="first")
    table = [d.encode() for d in run.doc_ids.tolist()]
    assert table == sorted(set(table))
    ref: dict = {}
    for qq, dd, ss in zip(q.tolist(), docs.tolist(), s.tolist()):
        ref.setdefault(qq, {}).setdefault(dd, ss)
    assert run.to_dict() == ref
