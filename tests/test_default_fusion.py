"""The default fusion (``auto``: CombSUM of similarity lists, else SEF) and SEF itself: hand-computed cases, the
score-type rule, padding invariance, numerical safety, weights, the MSR-VTT target."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.fusion import default_method, fuse, get_method
from mmfuse.fusion.default import DEFAULT_MISS, padding_mask


def test_is_the_library_default():
    assert default_method() == "auto"
    m = get_method(None)
    assert m.name == "auto" and not m.transductive and m.kind == "adaptive"
    assert get_method("default").name == "auto"
    r1 = Run.from_dict({"q": {"a": 3.0, "b": 1.0}})  # scores outside [-1, 1]: standardized (sef)
    r2 = Run.from_dict({"q": {"b": 2.0, "c": 1.0}})
    assert fuse([r1, r2]).equals(fuse([r1, r2], method="sef", miss=DEFAULT_MISS))


def test_auto_sums_similarity_lists_by_hand():
    # every score in [-1, 1]: CombSUM of the raw scores; a doc a list lacks adds nothing (0 = unrelated)
    lexical = Run.from_dict({"q": {"a": 1.0}, "p": {"b": 0.02, "c": 0.01}}, name="ocr")
    dense = Run.from_dict({"q": {"b": 0.35, "c": 0.3, "a": 0.1}, "p": {"c": 0.9, "b": 0.2}}, name="asr_dense")
    fused = fuse([lexical, dense])
    assert dict(fused.query("q")) == pytest.approx({"a": 1.1, "b": 0.35, "c": 0.3})
    assert dict(fused.query("p")) == pytest.approx({"c": 0.91, "b": 0.22})
    w = fuse([lexical, dense], weights=[2.0, 1.0])
    assert dict(w.query("q")) == pytest.approx({"a": 2.1, "b": 0.35, "c": 0.3})
    # the one-hit list counts in full: sef would give it the spread-free z = 0 and let the dense list win
    assert fuse([lexical, dense], method="sef").query("q")[0][0] == "b"


def test_auto_decides_per_query_by_score_type():
    sim = Run.from_dict({"q": {"a": 0.9, "b": 0.1}, "p": {"a": 0.5, "b": 0.4}}, name="sim")
    big = Run.from_dict({"p": {"a": 12.0, "b": 30.0}}, name="bm25")  # raw BM25 on p only
    fused = fuse([sim, big])
    assert dict(fused.query("q")) == pytest.approx({"a": 0.9, "b": 0.1})  # q: similarities only
    assert dict(fused.query("p")) == pytest.approx(dict(fuse([sim, big], method="sef").query("p")))  # p: sef
    # a query's ranking does not depend on the other queries of the batch
    alone = fuse([sim.subset(["q"]), big.subset([])])
    assert dict(alone.query("q")) == pytest.approx(dict(fused.query("q")))
    # a probability distribution (>= 3 non-negative scores summing to 1) is not a similarity list
    probs = Run.from_dict({"q": {"a": 0.2, "b": 0.5, "c": 0.3}}, name="softmax")
    assert dict(fuse([sim, probs]).query("q")) == pytest.approx(dict(fuse([sim, probs], method="sef").query("q")))
    # a bound passed by a few float32 ulps is still a similarity
    near = Run.from_dict({"q": {"a": float(np.float32(1.0000001))}}, name="near")
    assert dict(fuse([sim, near]).query("q"))["a"] == pytest.approx(1.9, abs=1e-6)


def test_hand_computed():
    # run 1: a=3, b=1 -> z: a=+1, b=-1; run 2: b=2, c=0 -> z: b=+1, c=-1; miss=2: a doc a run lacks gets -1-2=-3
    r1 = Run.from_dict({"q": {"a": 3.0, "b": 1.0}})
    r2 = Run.from_dict({"q": {"b": 2.0, "c": 0.0}})
    fused = fuse([r1, r2], method="sef", miss=2.0)
    assert dict(fused.query("q")) == pytest.approx({"b": 0.0, "a": -2.0, "c": -4.0})
    assert [d for d, _ in fused.query("q")] == ["b", "a", "c"]
    w = fuse([r1, r2], method="sef", miss=2.0, weights=[3.0, 1.0])
    assert dict(w.query("q")) == pytest.approx({"a": 3 * 1 + 1 * -3, "b": 3 * -1 + 1 * 1, "c": 3 * -3 + 1 * -1})


def test_padding_detected_and_dense_equals_truncated():
    rng = np.random.default_rng(0)
    Q, D = 30, 40
    docs = [f"d{j:02d}" for j in range(D)]
    qids = [f"q{i}" for i in range(Q)]
    full = rng.normal(size=(Q, D))
    trunc = np.abs(rng.normal(size=(Q, D)))
    keep = trunc >= np.sort(trunc, axis=1)[:, -8][:, None]   # top-8 real candidates, zeros elsewhere
    dense = np.where(keep, trunc, 0.0)
    a = Run.from_matrix(full, qids, docs, name="full")
    dense_run = Run.from_matrix(dense, qids, docs, name="trunc")
    real_run = Run.from_matrix(dense, qids, docs, threshold=0.0, name="trunc")
    assert len(real_run) == Q * 8
    f1 = fuse([a, dense_run], method="sef")
    f2 = fuse([a, real_run], method="sef")
    assert f1.equals(f2, rtol=1e-9)
    # without detection the zero fill is scored as real candidates and the ranking changes
    f3 = fuse([a, dense_run], method="sef", detect_padding=False)
    assert not f3.equals(f1, rtol=1e-9)
    s = np.array([5.0, 2.0, 0.0, 0.0, 4.0, 4.0, 1.0, 1.0])
    off = np.array([0, 4, 6, 8])
    assert padding_mask(s, off).tolist() == [False, False, True, True, False, False, False, False]


@pytest.mark.parametrize("scores", [
    {"a": 1.0},                                   # single candidate
    {"a": 2.0, "b": 2.0, "c": 2.0},               # constant list
    {"a": 1e300, "b": -1e300, "c": 0.0},          # huge
    {"a": 1e-300, "b": 2e-300, "c": 3e-300},      # tiny
    {"a": 1.0, "b": float("-inf"), "c": 0.5},     # -inf
])
def test_numerically_safe(scores):
    other = Run.from_dict({"q": {"a": 0.3, "x": 0.9, "y": 0.1}, "q2": {"x": 1.0}})
    fused = fuse([Run.from_dict({"q": scores}), other])
    assert np.isfinite(fused.scores).all()
    assert np.isfinite(fuse([Run.from_dict({"q": scores}), other], method="sef").scores).all()
    assert set(fused.query_ids) == {"q", "q2"}  # q2 only in one run: fused from that run alone


def test_query_absent_from_a_run_uses_the_others():
    r1 = Run.from_dict({"q1": {"a": 2.0, "b": 1.0, "c": 0.0}})
    r2 = Run.from_dict({"q1": {"c": 1.0, "b": 0.5}, "q2": {"x": 3.0, "y": 1.0}})
    fused = fuse([r1, r2])
    assert [d for d, _ in fused.query("q2")] == ["x", "y"]


def test_msrvtt_target(msrvtt):
    from mmfuse.benchmarks.datasets import load_dataset
    from mmfuse.eval.metrics import run_video_metrics

    names = ["clip4clip", "VAST", "GRAM", "InternVideo2"]
    r1 = {}
    for cand in ("all", "real"):
        ds = load_dataset(msrvtt, candidates=cand, retrievers=names)
        fused = fuse([ds.runs[n] for n in names])
        r1[cand] = run_video_metrics(ds.qrels, fused, ["R@1"], ties="optimistic")["R@1"]
    assert r1["all"] >= 0.85
    assert r1["real"] == pytest.approx(r1["all"])  # padding detection: same answer whatever the export


def test_probability_lists_are_standardized_on_the_log_scale():
    logits = {"a": 2.0, "b": 1.0, "c": -0.5, "d": -1.0}
    z = sum(np.exp(v) for v in logits.values())
    probs = {k: float(np.exp(v) / z) for k, v in logits.items()}
    other = Run.from_dict({"q": {"a": 0.1, "b": 0.9, "c": 0.5, "e": 0.3}})
    via_probs = fuse([Run.from_dict({"q": probs}), other], method="sef")
    via_logits = fuse([Run.from_dict({"q": logits}), other], method="sef")
    assert via_probs.equals(via_logits, rtol=1e-9)
    assert fuse([Run.from_dict({"q": probs}), other]).equals(via_probs)  # auto: probabilities are not similarities
    raw = fuse([Run.from_dict({"q": probs}), other], method="sef", log_probs=False)
    assert not raw.equals(via_logits, rtol=1e-9)
