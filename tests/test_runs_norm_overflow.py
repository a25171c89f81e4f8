"""Score normalisation of huge scores (mmfuse.fusion.norm and the compiled fast path): hand-computed values, not
all-zero scores or NaN from overflowing squares and sums, and exact invariance under power-of-two scaling."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.fusion import fuse, normalize

SQ = math.sqrt(1.5)  # z-scores of three equally spaced values: -sqrt(3/2), 0, sqrt(3/2)


def _one(scores: dict[str, float], name: str = "r") -> Run:
    return Run.from_dict({"q": scores}, name=name)


@pytest.mark.parametrize("fast", [True, False])
def test_combsum_zmuv_near_1e200_ranks_by_both_runs(fast):
    a = _one({"x": 3e200, "y": 2e200, "z": 1e200}, "a")  # z: x=+SQ, y=0, z=-SQ
    b = _one({"x": 1.0, "y": 3.0, "z": 2.0}, "b")  # z: x=-SQ, y=+SQ, z=0
    got = fuse([a, b], method="combsum", norm="zmuv", _use_fast=fast)
    assert [d for d, _ in got.query("q")] == ["y", "x", "z"]  # the overflow made a's scores 0: y, z, x
    s = got["q"]
    assert s["y"] == pytest.approx(SQ, rel=1e-12) and s["z"] == pytest.approx(-SQ, rel=1e-12)
    assert abs(s["x"]) < 1e-12


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("norm, scores, want", [
    ("zmuv", [3e200, 2e200, 1e200], [SQ, 0.0, -SQ]),
    ("zmuv", [1.5e308, 0.0, -1.5e308], [SQ, 0.0, -SQ]),
    ("min-max", [1.5e308, 0.0, -1.5e308], [1.0, 0.5, 0.0]),
    ("min-max-inverted", [1.5e308, 0.0, -1.5e308], [0.0, 0.5, 1.0]),
    ("sum", [1e308, 1e308, 0.0], [0.5, 0.5, 0.0]),
    ("sum", [3e200, 2e200, 1e200], [2 / 3, 1 / 3, 0.0]),
    ("max", [1e308, 5e307, -1e308], [1.0, 0.5, -1.0]),
    ("softmax", [1e308, 0.0, -1e308], [1.0, 0.0, 0.0]),
])
def test_huge_scores_normalise_to_hand_computed_values(fast, norm, scores, want):
    run = _one(dict(zip("xyz", scores)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow warnings either
        fused = fuse([run], method="combsum", norm=norm, _use_fast=fast)["q"]
        single = normalize(run, norm)["q"] if norm != "min-max-inverted" else None
    for doc, w in zip("xyz", want):
        assert fused[doc] == pytest.approx(w, rel=1e-12, abs=1e-12), (norm, doc)
        if single is not None:
            assert single[doc] == pytest.approx(w, rel=1e-12, abs=1e-12), (norm, doc)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("norm", ["zmuv", "min-max", "min-max-inverted", "sum"])
def test_power_of_two_scaling_changes_nothing(fast, norm):
    # these norms are scale-invariant (max is not: its 1e-9 floor holds lists whose maximum is <= 0), and scaling
    # by 2^k is exact: huge lists must give bit-identical values
    rng = np.random.default_rng(7)
    base, scaled = {}, {}
    for q in range(30):
        n = int(rng.integers(2, 40))
        s = rng.normal(size=n) * 10.0 ** rng.integers(-3, 4)
        base[f"q{q}"] = {f"d{i}": float(v) for i, v in enumerate(s)}
        scaled[f"q{q}"] = {f"d{i}": float(v) * 2.0 ** 700 for i, v in enumerate(s)}
    other = {q: {d: float(i) for i, d in enumerate(docs)} for q, docs in base.items()}
    args = dict(method="combsum", norm=norm, _use_fast=fast)
    want = fuse([Run.from_dict(base, name="a"), Run.from_dict(other, name="b")], **args)
    got = fuse([Run.from_dict(scaled, name="a"), Run.from_dict(other, name="b")], **args)
    assert got.equals(want) and np.array_equal(got.scores, want.scores)
