"""The Run model's public per-query API and operations, and its constructors' answers to bad input: every variant
is a valid Run or one InputError with a message naming what is wrong (never a later numba/Arrow failure)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mmfuse import Qrels, Run
from mmfuse.errors import InputError
from mmfuse.runs import RankedList


def _sample() -> Run:
    ev = {"segment_id": np.array(["s1", "s2", "s3", "s4", "s5"])}
    return Run.from_arrays(["q1", "q1", "q1", "q2", "q2"], ["a", "c", "b", "x", "y"], [3.0, 1.0, 2.0, 0.5, 0.7],
                           evidence=ev, name="s")


def test_lists_are_per_query_views_with_evidence():
    run = _sample()
    views = list(run.lists())
    assert [v.query_id for v in views] == ["q1", "q2"]
    assert views[0].doc_ids.tolist() == ["a", "b", "c"] and views[0].scores.tolist() == [3.0, 2.0, 1.0]
    assert views[0].evidence["segment_id"].tolist() == ["s1", "s3", "s2"]  # evidence follows its documents
    assert views[1].doc_ids.tolist() == ["y", "x"] and len(views[1]) == 2
    one = run.list("q2")
    assert one.query_id == "q2" and one.doc_ids.tolist() == ["y", "x"] and one.evidence["segment_id"].tolist() == ["s5", "s4"]
    with pytest.raises(KeyError):
        run.list("nope")


def test_from_lists_rebuilds_the_run_and_keeps_empty_queries():
    run = _sample()
    assert Run.from_lists(run.lists(), name="s").equals(run)
    back = Run.from_lists(run.lists(), name="s")
    assert back.evidence["segment_id"].tolist() == run.evidence["segment_id"].tolist()
    # reversed order of one query's list, scored n..1, as a reranker would: the new order is kept
    v = run.list("q1")
    rev = RankedList("q1", v.doc_ids[::-1], np.array([3.0, 2.0, 1.0]), {k: e[::-1] for k, e in v.evidence.items()})
    out = Run.from_lists([rev, RankedList("q3", np.array([], dtype=object), np.array([]), {})])
    assert out.query_ids.tolist() == ["q1", "q3"] and out.counts().tolist() == [3, 0]
    assert out.list("q1").doc_ids.tolist() == ["c", "b", "a"]
    assert out.list("q1").evidence["segment_id"].tolist() == ["s2", "s3", "s1"]
    with pytest.raises(InputError, match="'q1' has 3 doc ids but 2 scores"):
        Run.from_lists([RankedList("q1", v.doc_ids, np.array([1.0, 2.0]))])
    with pytest.raises(InputError, match="different evidence columns"):
        Run.from_lists([v, RankedList("q9", np.array(["z"], dtype=object), np.array([1.0]), {"other": np.array([1])})])


def test_ensure_queries_subset_empty_and_natural_order():
    run = _sample()
    got = run.ensure_queries(["q2", "q9", "q1"])
    assert got.query_ids.tolist() == ["q2", "q9", "q1"] and got.counts().tolist() == [2, 0, 3]
    assert got.list("q1").evidence["segment_id"].tolist() == ["s1", "s3", "s2"]
    assert run.ensure_queries([]).n_queries == 0
    assert Run.empty(["a", "b"]).ensure_queries(["b"]).counts().tolist() == [0]
    e = Run.empty(["a", "b"], name="none")
    assert e.name == "none" and e.n_queries == 2 and len(e) == 0 and e.to_dict() == {"a": {}, "b": {}}
    assert run.subset(["q2"]).to_dict() == {"q2": {"y": 0.7, "x": 0.5}}
    with pytest.raises(KeyError):
        run.subset(["q9"])
    ids = ["q10", "q2", "q1", "a", "q01", "b2", "b10", "q2x"]
    r = Run.from_arrays(ids, ["d"] * len(ids), np.arange(len(ids), dtype=float))
    # digits compare as numbers, then plain order breaks the q01/q1 tie; the rest is byte order
    assert r.in_natural_order().query_ids.tolist() == ["a", "b2", "b10", "q01", "q1", "q2", "q2x", "q10"]


def test_doc_table_is_the_stored_table(tmp_path):
    table = np.array(["a", "b"], dtype=object)
    assert Run(["q"], table, [0, 2], [1, 0], [2.0, 1.0]).doc_table() is table  # given as numpy: kept as numpy
    run = _sample()
    p = tmp_path / "r.trec"
    run.write(p)
    read = Run.read(p)
    table = read.doc_table()
    assert isinstance(table, pa.Array) and table.to_pylist() == read.doc_ids.tolist() == sorted(read.doc_ids.tolist())


@pytest.mark.parametrize("make, pattern", [
    (lambda: Run.from_dict(None), "expected a mapping .*got NoneType"),
    (lambda: Run.from_dict([("q", {"d": 1})]), "expected a mapping"),
    (lambda: Run.from_dict({"q": [1, 2]}), "query 'q' must map doc ids to scores"),
    (lambda: Run.from_dict({"q": {"d": "high"}}), "score 'high' of query 'q', doc 'd' is not a number"),
    (lambda: Run.from_dict({"q": {"d": None}}), "is not a number"),
    (lambda: Run.from_dict({"q": {"d": 10 ** 400}}), "is not a number"),
    (lambda: Run.from_dict({None: {"d": 1}}), "a query id is None"),
    (lambda: Run.from_dict({"q": {None: 1}}), "doc id None"),
    (lambda: Run.from_arrays(["q"], ["a"], [[1.0]]), r"scores must be one-dimensional, got shape \(1, 1\)"),
    (lambda: Run.from_arrays(["q"], ["a"], np.ones((1, 1, 1))), "scores must be one-dimensional"),
    (lambda: Run.from_arrays(["q"], ["a"], 1.0), r"scores must be one-dimensional, got shape \(\)"),
    (lambda: Run.from_arrays(["q", "q"], ["a"], [1.0, 2.0]), r"differ in length \(2, 1, 2\)"),
    (lambda: Run.from_arrays(["q"], ["a", "b"], [1.0]), "differ in length"),
    (lambda: Run.from_arrays(["q"], ["a"], ["x"]), "scores must be numbers"),
    (lambda: Run.from_arrays(["q"], ["a"], [None]), "NaN score for query 'q', doc 'a'"),
    (lambda: Run.from_arrays([["q"]], ["a"], [1.0]), r"query_id must be one-dimensional, got shape \(1, 1\)"),
    (lambda: Run.from_arrays("q", ["a"], [1.0]), "query_id must be one-dimensional"),
    (lambda: Run.from_arrays([1.5], ["a"], [1.0]), "row 1: query_id 1.5 is a float"),
    (lambda: Run.from_arrays(np.array([1.5]), ["a"], [1.0]), "query_id must hold strings or integers, got float64"),
    (lambda: Run.from_arrays(["q"], [b"\xff"], [1.0]), "row 1: doc_id b'\\\\xff' is a bytes"),
    (lambda: Run.from_arrays(["q"], pa.array([b"\xff"]), [1.0]), "doc_id is not valid UTF-8"),
    (lambda: Run.from_arrays(["q"], pa.array([1.5]), [1.0]), "doc_id must hold strings, got Arrow type double"),
    (lambda: Run.from_arrays(["q"], ["a"], [float("nan")]), "NaN score for query 'q', doc 'a'"),
    (lambda: Run.from_arrays(["q"], ["a"], [1.0], evidence={"e": np.array(5)}), "evidence column 'e' has 0 rows"),
    (lambda: Run.from_arrays(["q"], ["a"], [1.0], evidence={"e": [1, 2]}), "evidence column 'e' has 2 rows"),
    (lambda: Run.from_arrays(["q"], ["a"], [1.0], queries=["x"]), "entries for queries not listed"),
    (lambda: Run.from_arrays(["q"], ["a"], [1.0], queries=["q", "q"]), "lists a query id twice"),
    (lambda: Run.from_matrix([1.0, 2.0]), "score matrix must be 2-D"),
    (lambda: Run.from_matrix([["a"]]), "score matrix must be numbers"),
    (lambda: Qrels.from_dict(None), "expected a mapping"),
    (lambda: Qrels.from_dict({"q": {"d": "x"}}), "relevance 'x' of query 'q', doc 'd' is not an integer"),
    (lambda: Qrels.from_dict({"q": {"d": 1.5}}), "relevance 1.5 .* is not an integer"),
    (lambda: Qrels.from_dict({"q": {"d": 2 ** 70}}), "is not an integer"),
    (lambda: Qrels.from_arrays(["q"], ["d"], [[1]]), "relevance must be one-dimensional"),
    (lambda: Qrels.from_arrays(["q"], ["d"], [float("inf")]), "relevance must be integers"),
    (lambda: Qrels.from_arrays(["q"], ["d"], ["high"]), "relevance must be numbers"),
    (lambda: Qrels.from_arrays(["q", "q"], ["d"], [1, 1]), "differ in length"),
])
def test_bad_constructor_input_is_one_clear_error(make, pattern):
    with pytest.raises(InputError, match=pattern):
        make()


@pytest.mark.parametrize("make", [
    lambda: Run.from_arrays([], [], []),
    lambda: Run.from_arrays(np.array([]), np.array([]), np.array([])),
    lambda: Run.from_arrays(pa.array([], pa.string()), pa.array([], pa.string()), pa.array([], pa.float64())),
    lambda: Run.from_dict({}),
    lambda: Run.from_lists([]),
    lambda: Run.empty(),
])
def test_empty_input_is_a_valid_empty_run(make, tmp_path):
    run = make()
    assert len(run) == 0 and run.n_queries == 0 and run.to_dict() == {}
    assert list(run.lists()) == [] and len(run.cut(3)) == 0 and run.ensure_queries(["q"]).counts().tolist() == [0]
    run.write(tmp_path / "e.json")
    assert Run.from_json(tmp_path / "e.json").to_dict() == {}


def test_integer_ids_become_text():
    run = Run.from_arrays(np.array([1, 2]), [10, 20], [1.0, 2.0])
    assert run.to_dict() == {"1": {"10": 1.0}, "2": {"20": 2.0}}
    assert Run.from_arrays(pa.array([7]), pa.array(["d"]), [1.0]).query_ids.tolist() == ["7"]
    assert Qrels.from_arrays([1], ["d"], np.array([2.0])).to_dict() == {"1": {"d": 2}}


def test_infinite_scores_tie_like_any_other():
    # inf - inf is NaN: an order check built on differences let two infinite scores through in doc-ascending order
    run = Run.from_arrays(["q"] * 4, ["a", "b", "c", "d"], [np.inf, np.inf, 1.0, -np.inf])
    assert run.query("q") == [("b", np.inf), ("a", np.inf), ("c", 1.0), ("d", -np.inf)]
