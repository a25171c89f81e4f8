"""The default fusion (SEF): hand-computed case, padding invariance, numerical safety, weights, MSR-VTT target."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.fusion import default_method, fuse, get_method
from mmfuse.fusion.default import DEFAULT_MISS, padding_mask


def test_is_the_library_default():
    assert default_method() == "sef"
    m = get_method(None)
    assert m.name == "sef" and not m.transductive and m.kind == "adaptive"
    r1 = Run.from_dict({"q": {"a": 3.0, "b": 1.0}})
    r2 = Run.from_dict({"q": {"b": 2.0, "c": 1.0}})
    assert fuse([r1, r2]).equals(fuse([r1, r2], method="sef", miss=DEFAULT_MISS))


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
    f1 = fuse([a, dense_run])
    f2 = fuse([a, real_run])
    assert f1.equals(f2, rtol=1e-9)
    # without detection the zero fill is scored as real candidates and the ranking changes
    f3 = fuse([a, dense_run], detect_padding=False)
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
    via_probs = fuse([Run.from_dict({"q": probs}), other])
    via_logits = fuse([Run.from_dict({"q": logits}), other])
    assert via_probs.equals(via_logits, rtol=1e-9)
    raw = fuse([Run.from_dict({"q": probs}), other], log_probs=False)
    assert not raw.equals(via_logits, rtol=1e-9)
