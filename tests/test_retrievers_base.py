"""Retriever protocol, segment -> video aggregation (hand-computed), plug-in loading, precomputed retriever."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.errors import InputError, ParameterError
from mmfuse.retrievers import (
    PrecomputedRetriever,
    Retriever,
    aggregate_segments,
    load_retriever,
    normalize_queries,
    segment_run,
)

# Two queries, five segments: s0,s1,s2 belong to video 0 ("a"), s3,s4 to video 1 ("b").
SEG_VIDEO = np.array([0, 0, 0, 1, 1])
QIDX = np.array([0, 0, 0, 0, 0, 1, 1])
SEG = np.array([0, 1, 2, 3, 4, 1, 4])
SCORES = np.array([1.0, 4.0, 2.0, 3.0, 0.5, 7.0, 7.0])


def _as_dict(agg):
    return {(int(q), int(v)): (float(s), int(b)) for q, v, s, b in zip(agg["qidx"], agg["video"], agg["score"], agg["best_seg"])}


@pytest.mark.parametrize(
    "method, expect",
    [
        ("max", {(0, 0): 4.0, (0, 1): 3.0, (1, 0): 7.0, (1, 1): 7.0}),
        ("sum", {(0, 0): 7.0, (0, 1): 3.5, (1, 0): 7.0, (1, 1): 7.0}),
        ("mean", {(0, 0): 7.0 / 3, (0, 1): 1.75, (1, 0): 7.0, (1, 1): 7.0}),
        ("topn", {(0, 0): 3.0, (0, 1): 1.75, (1, 0): 7.0, (1, 1): 7.0}),  # top_n=2: (4+2)/2, (3+0.5)/2
    ],
)
def test_aggregation_hand_computed(method, expect):
    got = _as_dict(aggregate_segments(QIDX, SEG, SCORES, SEG_VIDEO, method, top_n=2))
    assert {k: v[0] for k, v in got.items()} == pytest.approx(expect)
    # The best segment of each (query, video) is kept as evidence whatever the aggregation.
    assert {k: v[1] for k, v in got.items()} == {(0, 0): 1, (0, 1): 3, (1, 0): 1, (1, 1): 4}


def test_aggregation_rejects_unknown_method():
    with pytest.raises(ParameterError, match="unknown aggregation 'maximum'.*did you mean 'max'"):
        aggregate_segments(QIDX, SEG, SCORES, SEG_VIDEO, "maximum")
    with pytest.raises(ParameterError, match="top_n"):
        aggregate_segments(QIDX, SEG, SCORES, SEG_VIDEO, "topn", top_n=0)


def test_segment_run_builds_video_run_with_evidence():
    segs = {
        "video_id": np.array(["a", "a", "a", "b", "b"]),
        "segment_id": np.array(["a#0", "a#1", "a#2", "b#0", "b#1"]),
        "start": np.array([0.0, 10.0, 20.0, 0.0, 10.0]),
        "end": np.array([10.0, 20.0, 30.0, 10.0, 20.0]),
    }
    run = segment_run("ocr", "ocr", np.array(["q1", "q2"]), QIDX, SEG, SCORES, segs, k=10)
    assert isinstance(run, Run)
    assert run.query("q1") == [("a", 4.0), ("b", 3.0)]
    # Tie at 7.0: trec_eval order puts the larger doc id first.
    assert run.query("q2") == [("b", 7.0), ("a", 7.0)]
    ev = run.evidence
    lo = int(run.offsets[0])
    assert ev["segment_id"][lo] == "a#1" and ev["start"][lo] == 10.0 and ev["end"][lo] == 20.0
    assert set(ev["modality"].tolist()) == {"ocr"}
    assert segment_run("ocr", "ocr", np.array(["q1", "q2"]), QIDX, SEG, SCORES, segs, k=1).query("q1") == [("a", 4.0)]


def test_normalize_queries():
    q, t = normalize_queries({"x": "red car", "y": "dog"})
    assert q.tolist() == ["x", "y"] and t == ["red car", "dog"]
    q, t = normalize_queries(["red car", "dog"])
    assert q.tolist() == ["0", "1"] and t == ["red car", "dog"]
    assert normalize_queries("one")[1] == ["one"]


def test_any_object_with_name_modality_search_is_a_retriever():
    class Mine:
        name, modality = "mine", "custom"

        def search(self, queries, k=100):
            qids, _ = normalize_queries(queries)
            return Run.from_arrays(qids, np.array(["v1"] * len(qids)), np.ones(len(qids)))

    assert isinstance(Mine(), Retriever)
    assert not isinstance(object(), Retriever)


def test_load_retriever_module_class_and_errors():
    from mmfuse.retrievers import OcrRetriever

    assert load_retriever("mmfuse.retrievers:OcrRetriever") is OcrRetriever
    with pytest.raises(ParameterError, match="cannot import module 'no_such_mod'"):
        load_retriever("no_such_mod:X")
    with pytest.raises(ParameterError, match="has no attribute 'Nope'"):
        load_retriever("mmfuse.retrievers:Nope")
    with pytest.raises(ParameterError, match="mmfuse.retrievers"):
        load_retriever("definitely-not-installed")


def test_precomputed_from_matrix_by_id_and_text():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    r = PrecomputedRetriever.from_matrix(scores, ["red car", "a dog"], ["v1", "v2", "v3"], name="mine")
    by_id = r.search({"red car": "ignored text"}, k=2)
    assert by_id.query("red car") == [("v2", 0.9), ("v3", 0.5)]
    by_text = r.search(["a dog", "unknown query"], k=3)
    assert by_text.query("0") == [("v3", 0.8), ("v1", 0.3), ("v2", 0.2)]
    assert by_text.query("1") == []
    with pytest.raises(InputError, match="shape"):
        PrecomputedRetriever.from_matrix(scores, ["a"], ["v1", "v2", "v3"])


def test_precomputed_from_trec_file(tmp_path):
    p = tmp_path / "mine.trec"
    p.write_text("q1 Q0 v1 1 3.0 x\nq1 Q0 v2 2 2.0 x\nq2 Q0 v3 1 1.0 x\n")
    r = PrecomputedRetriever.from_file(p)
    assert r.name == "mine"
    assert r.search({"q2": "t", "q1": "t"}, k=1).query("q1") == [("v1", 3.0)]
    with pytest.raises(InputError, match="does not exist"):
        PrecomputedRetriever.from_file(tmp_path / "nope.trec")
