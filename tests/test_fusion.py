"""Hand-computed cases for mmfuse-only fusion pieces, ordering, numerics, validation and the registry."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import numpy as np
import pytest

import mmfuse.fusion as F
from mmfuse import Run
from mmfuse.errors import ParameterError
from mmfuse.fusion import align as align_mod
from mmfuse.fusion import fuse, interleave, interleave_run, normalize, register_method
from mmfuse.fusion.registry import Param


def R(d, name="r"):
    return Run.from_dict(d, name=name)


A = R({"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"a": 1.0}}, "A")
B = R({"q1": {"b": 5.0, "d": 1.0}, "q2": {"b": 2.0, "a": 1.0}}, "B")


def test_import_does_not_pull_torch():
    code = "import mmfuse, mmfuse.fusion, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_softmax_norm_hand_computed():
    out = normalize(R({"q": {"a": 2.0, "b": 1.0, "c": 1.0}}), "softmax", temperature=0.5)
    e = np.exp(np.array([0.0, -2.0, -2.0]))
    assert [d for d, _ in out.query("q")] == ["a", "c", "b"]
    assert [s for _, s in out.query("q")] == pytest.approx((e / e.sum()).tolist())


def test_weighted_rrf_hand_computed():
    out = fuse([A, B], method="rrf", weights=[2, 1], k=10).to_dict()
    assert out["q1"]["b"] == pytest.approx(2 / 12 + 1 / 11)
    assert out["q1"]["d"] == pytest.approx(1 / 12)
    assert out["q2"]["a"] == pytest.approx(2 / 11 + 1 / 12)


def test_bordafuse_hand_computed():
    out = fuse([A, B], method="bordafuse").to_dict()
    # q1 candidates a,b,c,d (n=4). A: a4 b3 c2, d unranked (4-3+1)/2=1. B: b4 d3, a,c unranked (4-2+1)/2=1.5
    assert out["q1"] == {"b": 7.0, "a": 5.5, "d": 4.0, "c": 3.5}


def test_condorcet_copeland_hand_computed():
    r1 = R({"q": {"a": 3, "b": 2, "c": 1}})
    r2 = R({"q": {"b": 3, "a": 2, "c": 1}})
    r3 = R({"q": {"a": 3, "c": 2, "b": 1}})
    out = fuse([r1, r2, r3], method="condorcet")
    assert [d for d, _ in out.query("q")] == ["a", "b", "c"]
    assert dict(out.query("q")) == {"a": 2.0, "b": 1.0, "c": 0.0}


def test_ordering_ties_doc_desc_dense_and_sparse(monkeypatch):
    rng = np.random.default_rng(3)
    runs = []
    for i in range(3):
        q = np.repeat([f"q{j}" for j in range(20)], 30)
        d = np.concatenate([rng.choice(80, 30, replace=False) for _ in range(20)]).astype(str)
        runs.append(Run.from_arrays(q, d, rng.integers(0, 4, q.size).astype(float), name=f"r{i}"))
    compiled = fuse(runs, method="combsum", norm="none")
    dense = fuse(runs, method="combsum", norm="none", _use_fast=False)
    monkeypatch.setattr(align_mod, "_DENSE_LIMIT", 0)
    sparse = fuse(runs, method="combsum", norm="none", _use_fast=False)
    assert dense.to_dict() == sparse.to_dict() == compiled.to_dict()
    for out in (dense, sparse, compiled):
        qs, ds, ss = out.entry_query_ids(), out.entry_doc_ids(), out.scores
        naive = sorted(range(len(out)), key=lambda i: (out.qidx()[i], -ss[i], tuple(-ord(c) for c in ds[i]) + (1,)))
        assert list(naive) == list(range(len(out)))
        assert len(set(zip(qs.tolist(), ds.tolist()))) == len(out)
    # the lexsort fallback of order_pairs gives the same order
    a = align_mod.align(runs)
    s = np.round(rng.normal(size=a.n_pairs), 1)
    got = align_mod.order_pairs(a.pair_q, a.pair_d, s, a.q_pair_offsets)
    assert (got == np.lexsort((-a.pair_d, -s, a.pair_q))).all()


@pytest.mark.parametrize("n_docs", [60, 5000])  # narrow doc ranges are scanned, wide ones sorted
def test_compiled_kernels_match_numpy_paths(monkeypatch, n_docs):
    rng = np.random.default_rng(5)
    runs = []
    for i in range(3):
        nq = 15 + i
        q = np.repeat([f"q{j}" for j in range(nq)], 25)
        d = np.concatenate([rng.choice(n_docs, 25, replace=False) for _ in range(nq)]).astype(str)
        runs.append(Run.from_arrays(q, d, rng.integers(0, 5, q.size).astype(float), name=f"r{i}"))
    assert align_mod._kernels() is not None
    fast = align_mod.align(runs)
    outs = {m: fuse(runs, method=m, norm="min-max", _use_fast=False) for m in ("combsum", "combmnz", "wsum")}
    outs["rrf"] = fuse(runs, method="rrf", _use_fast=False)
    monkeypatch.setattr(align_mod, "_kernels", lambda: None)
    slow = align_mod.align(runs)
    for f in ("pair", "pair_q", "pair_d", "q_pair_offsets"):
        assert (getattr(fast, f) == getattr(slow, f)).all(), f
    for m, out in outs.items():
        ref = fuse(runs, method=m, norm="none" if m == "rrf" else "min-max", _use_fast=False)
        assert out.query_ids.tolist() == ref.query_ids.tolist()
        assert out.doc_ids.tolist() == ref.doc_ids.tolist()
        assert (out.offsets == ref.offsets).all() and (out.doc_idx == ref.doc_idx).all()
        assert np.allclose(out.scores, ref.scores, rtol=1e-12, atol=0)

def test_queries_in_some_runs_and_empty_queries():
    a = R({"q1": {"x": 1.0}, "q2": {}, "q3": {"y": 2.0}}, "a")
    b = R({"q1": {"x": 2.0, "z": 1.0}, "q2": {}}, "b")
    out = fuse([a, b], method="combsum", norm="none")
    assert out.query_ids.tolist() == ["q1", "q2", "q3"]
    assert out.to_dict() == {"q1": {"x": 3.0, "z": 1.0}, "q2": {}, "q3": {"y": 2.0}}


def test_depth_cuts_inputs_and_output():
    out = fuse([A, B], method="combsum", norm="none", depth=1)
    assert out.to_dict() == {"q1": {"b": 5.0}, "q2": {"b": 2.0}}
    assert set(out.doc_ids.tolist()) == {"b"}


@pytest.mark.parametrize("method", ["entropy", "q2e_entropy"])
def test_adaptive_numerics(method):
    r1 = R({"q1": {"a": 1e300, "b": -1e300, "c": 0.0}, "q2": {"a": 5.0, "b": 5.0, "c": 5.0}, "q3": {"a": 1e-300}})
    r2 = Run.from_arrays(["q1", "q1", "q2", "q2", "q3", "q3"], ["b", "c", "a", "b", "a", "b"],
                         [float("-inf"), 2.0, float("inf"), 1.0, float("-inf"), float("-inf")], name="r2")
    out = fuse([r1, r2], method=method)
    assert np.isfinite(out.scores).all()
    assert set(out.query_ids.tolist()) == {"q1", "q2", "q3"}
    assert out.query("q2")[0][0] == "a"  # r2 ranks a first (+inf), r1 is flat


def test_entropy_prefers_peaked_list():
    flat = R({"q": {"a": 1.0, "x": 0.99, "y": 0.98, "b": 0.0}}, "flat")
    peak = R({"q": {"b": 1.0, "a": 0.5, "x": 0.0, "y": 0.0}}, "peak")
    # CombSUM(min-max): a = 1 + .5 beats b = 0 + 1; the flat list is unsure, so entropy trusts the peaked one
    assert fuse([flat, peak], method="combsum").query("q")[0][0] == "a"
    ent = fuse([flat, peak], method="entropy", top_k=3, temperature=0.1)
    assert ent.query("q")[0][0] == "b"
    w = F.adaptive.entropy_weights
    assert callable(w)


def test_topk_entropy_hand_computed():
    H, k = F.adaptive.topk_entropy(np.array([1.0, 1.0, 5.0, 3.0, 2.0]), np.array([0, 2, 2, 5]), 2, 1.0)
    p = np.exp([0.0, -2.0]) / np.exp([0.0, -2.0]).sum()
    assert k.tolist() == [2, 0, 2]
    assert H == pytest.approx([math.log(2), 0.0, -(p * np.log(p)).sum()])


def test_interleave_modes():
    a = R({"q": {"x": 3, "y": 2, "z": 1}}, "a")
    b = R({"q": {"y": 3, "w": 2}}, "b")
    assert interleave([a, b])["q"] == [("x", 0, 1), ("y", 1, 1), ("y", 0, 2), ("w", 1, 2), ("z", 0, 3)]
    assert [d for d, _, _ in interleave([a, b], keep="first")["q"]] == ["x", "y", "w", "z"]
    assert len(interleave([a, b], depth=2)["q"]) == 2
    run = interleave_run([a, b])
    assert [d for d, _ in run.query("q")] == ["x", "y", "w", "z"]
    assert [d for d, _ in fuse([a, b], method="interleave").query("q")] == ["x", "y", "w", "z"]
    with pytest.raises(ParameterError, match="did you mean 'first'"):
        interleave([a, b], keep="frist")


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(method="wsum", weights=[1]), ParameterError, "got 1 value"),
    (dict(method="wsum", weights=[1, -1]), ParameterError, "negative"),
    (dict(method="wsum", weights=[0, 0]), ParameterError, "sum to zero"),
    (dict(method="wsum", weights=[1, float("nan")]), ParameterError, "finite"),
    (dict(method="combsum", weights=[1, 2]), ParameterError, "takes no weights"),
    (dict(method="combsom"), ParameterError, "did you mean 'combsum'"),
    (dict(method="rrf", kk=3), ParameterError, "did you mean 'k'"),
    (dict(method="rrf", k="abc"), ParameterError, "expected float"),
    (dict(method="rrf", norm="zmuv"), ParameterError, "fuses ranks"),
    (dict(method="combsum", norm="zmvu"), ParameterError, "did you mean 'zmuv'"),
    (dict(method="combsum", depth=0), ParameterError, "depth"),
    (dict(method="combsum", norm="softmax", norm_temp=2), ParameterError, "norm_temperature"),
])
def test_validation_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        fuse([A, B], **kwargs)


def _same(x: Run, y: Run, qids, scores: bool = True) -> None:
    for q in qids:
        if scores:
            assert dict(x.query(q)) == pytest.approx(dict(y.query(q))), q
        else:
            assert [d for d, _ in x.query(q)] == [d for d, _ in y.query(q)], q


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("method", ["rrf", "combsum", "combmnz", "sef", "bordafuse", "condorcet", "entropy", "wsum"])
def test_coverage_rule_empty_and_disjoint_runs(method, use_fast):
    # a run contributes nothing to a query it has no entries for: fusing with an empty run, or with a run of other
    # queries, gives each query what fusing only the runs that have it gives (Borda shares its unranked points
    # evenly, which shifts scores but not the order)
    f = lambda runs, **kw: fuse(runs, method=method, _use_fast=use_fast, **kw)  # noqa: E731
    empty = Run.from_dict({"q1": {}}, name="empty")
    exact = method != "bordafuse"
    _same(f([A, B, empty]), f([A, B]), ["q1", "q2"], exact)
    other = R({"zz": {"a": 1.0, "b": 0.5}}, "other")
    both = f([A, other])
    _same(both, f([other]), ["zz"], exact)
    _same(both, f([A]), ["q1", "q2"], exact)
    only = f([A, B], queries=["q9", "q2"])
    assert only.query_ids.tolist() == ["q9", "q2"] and only.query("q9") == []
    _same(only, f([A, B]), ["q2"])
    with pytest.raises(ParameterError, match="no runs"):
        fuse([])
    with pytest.raises(ParameterError, match="listed twice"):
        fuse([A], queries=["q1", "q1"])


def test_registry_plugin_and_default(monkeypatch):
    @register_method("test_double_sum", params=[Param("scale", 2.0, float, "multiplier")], default_norm="none")
    def _double(ctx, scale):
        """Test-only: scaled CombSUM."""
        return scale * ctx.pair_sum(ctx.value)

    try:
        m = F.methods()["test_double_sum"]
        assert m.params[0].default == 2.0 and m.doc.startswith("Test-only")
        out = fuse([A, B], method="test_double_sum", scale="3")  # CLI-style string coerced to float
        assert out.to_dict()["q1"]["b"] == 21.0
        with pytest.raises(ParameterError, match="already registered"):
            register_method("test_double_sum")(_double)
        from mmfuse.fusion import registry

        before = registry.DEFAULT_METHOD
        register_method("test_default", default=True, default_norm="none")(lambda ctx: ctx.pair_count())
        try:
            assert F.default_method() == "test_default"
            assert fuse([A, B]).to_dict()["q1"]["b"] == 2.0
        finally:
            registry.set_default(before)
            registry._REGISTRY.pop("test_default")
    finally:
        F.registry._REGISTRY.pop("test_double_sum")


def test_ordering_full_rankings_with_ties():
    # every query ranks the same 12 docs: the reshape path of order_pairs, with many tied fused scores
    rng = np.random.default_rng(5)
    docs = np.array([f"d{i:02d}" for i in range(12)])
    runs = [Run.from_arrays(np.repeat(["qa", "qb", "qc"], 12), np.tile(docs, 3), rng.integers(0, 3, 36).astype(float),
                            name=f"r{i}") for i in range(2)]
    out = fuse(runs, method="combsum", norm="none")
    for q in ("qa", "qb", "qc"):
        want = {d: runs[0][q][d] + runs[1][q][d] for d in docs.tolist()}
        assert out.query(q) == sorted(want.items(), key=lambda x: (-x[1], [-ord(c) for c in x[0]]))


# -- the compiled single pass (mmfuse.fusion.fast) against the general path -------------------------------------

FAST_CASES = [("combsum", "zmuv", {}), ("combsum", "none", {}), ("combsum", "rank", {}), ("combmnz", "min-max", {}),
              ("combanz", "max", {}), ("combgmnz", "softmax", {"gamma": 2.0}), ("wsum", "sum", {"weights": [2, 1, .5]}),
              ("wsum", "min-max-inverted", {"weights": [1, 0, 3]}), ("rrf", "none", {"k": 10}),
              ("rrf", "none", {"weights": [1, 2, 3]}), ("isr", "none", {}), ("log_isr", "none", {}),
              ("logn_isr", "none", {"sigma": 0.5}), ("rbc", "none", {"phi": 0.7})]


def _assert_equivalent(fast: Run, ref: Run) -> None:
    """Same queries, same candidates and scores (float summation order aside), each correctly ordered."""
    assert fast.query_ids.tolist() == ref.query_ids.tolist()
    assert (fast.offsets == ref.offsets).all()
    a, b = fast.to_dict(), ref.to_dict()
    for q in b:
        assert a[q].keys() == b[q].keys()
        assert np.allclose([a[q][d] for d in b[q]], list(b[q].values()), rtol=1e-12, atol=1e-12)
    qi, ds, ss = fast.qidx(), fast.entry_doc_ids(), fast.scores
    for i in range(len(fast) - 1):
        if qi[i] == qi[i + 1]:
            assert ss[i] > ss[i + 1] or (ss[i] == ss[i + 1] and ds[i] > ds[i + 1]), (i, ds[i:i + 2], ss[i:i + 2])


def _tie_runs(seed: int, n_docs: int, scores: str = "int", nq: int = 25):
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(3):
        keep = [f"q{j}" for j in range(nq) if (j + i) % 7]  # some queries missing from some runs
        n = rng.integers(1, 30, size=len(keep))
        q = np.repeat(keep, n)
        d = np.concatenate([rng.choice(n_docs, k, replace=False) for k in n]).astype(str)
        s = rng.integers(0, 4, q.size).astype(float) if scores == "int" else rng.normal(size=q.size) * 10 ** i
        runs.append(Run.from_arrays(q, d, s, name=f"r{i}"))
    return runs


@pytest.mark.parametrize("method, norm, params", FAST_CASES)
@pytest.mark.parametrize("n_docs, scores", [(60, "int"), (100_000, "int"), (300, "float")])
def test_fast_path_matches_general_path(method, norm, params, n_docs, scores):
    runs = _tie_runs(11, n_docs, scores)
    for depth in (None, 5):
        fast = fuse(runs, method=method, norm=norm, depth=depth, **params)
        _assert_equivalent(fast, fuse(runs, method=method, norm=norm, depth=depth, _use_fast=False, **params))


def test_fast_path_is_taken_and_falls_back(monkeypatch):
    from mmfuse.fusion import fast as fast_mod

    runs = _tie_runs(2, 50)
    calls = []
    real = fast_mod.fast_fuse
    fuse_mod = importlib.import_module("mmfuse.fusion.fuse")  # fuse() calls fast_fuse through its module global

    monkeypatch.setattr(fuse_mod, "fast_fuse", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    fuse(runs, method="combsum", norm="zmuv")
    fuse(runs, method="combsum", norm="borda")  # Borda scores missing docs: general path only
    fuse(runs, method="combmed")  # no single-pass form
    assert len(calls) == 1 and calls[0] is not None
    # infinite scores: the compiled pass declines and the general path clamps them
    inf = Run.from_arrays(["q1", "q1", "q1"], ["a", "b", "c"], [np.inf, 1.0, -np.inf], name="inf")
    out = fuse([inf, runs[0]], method="combsum", norm="min-max")
    assert calls[-1] is None
    assert out.query("q1")[0][0] == "a" and np.isfinite(out.scores).all()
    # too many queries x candidates for the packed sort keys: declines too
    monkeypatch.setattr(fast_mod, "_MIN_SCORE_BITS", 64)
    out = fuse(runs, method="rrf")
    assert calls[-1] is None
    _assert_equivalent(out, fuse(runs, method="rrf", _use_fast=False))


def test_fast_path_orders_scores_closer_than_the_key_resolution():
    # 1 + 2^-50 and 1 share their truncated sort key; the exact fix-up must still put the larger first, and
    # exact ties must come out doc id descending.
    hi = 1.0 + 2.0 ** -50
    r = Run.from_arrays(["q"] * 4, ["a", "b", "c", "d"], [hi, 1.0, 1.0, hi], name="r")
    out = fuse([r], method="combsum", norm="none")
    assert [d for d, _ in out.query("q")] == ["d", "a", "c", "b"]
    assert out.scores.tolist() == [hi, hi, 1.0, 1.0]


def test_fast_path_threads_and_negative_zero():
    # enough entries for the query ranges to be fused on several threads
    runs = _tie_runs(4, 5000, "float", nq=800)
    big = [Run.from_arrays(np.concatenate([r.entry_query_ids()] + [r.entry_query_ids() + f"_{k}" for k in range(20)]),
                           np.tile(r.entry_doc_ids(), 21), np.tile(r.scores, 21), name=r.name) for r in runs]
    assert sum(len(r) for r in big) > 200_000
    _assert_equivalent(fuse(big, method="combsum", norm="zmuv"), fuse(big, method="combsum", norm="zmuv",
                                                                      _use_fast=False))
    # -0.0 and 0.0 are the same score: ties broken by doc id
    a = Run.from_arrays(["q", "q"], ["x", "y"], [-0.0, 0.0], name="a")
    assert [d for d, _ in fuse([a], method="combsum", norm="none").query("q")] == ["y", "x"]


def test_fast_path_concurrent_calls_from_threads():
    # the compiled kernels release the GIL and share a pool of scratch arrays: concurrent calls must not mix
    from concurrent.futures import ThreadPoolExecutor

    inputs = [_tie_runs(seed, 3000, "float", nq=60) for seed in range(6)]
    expected = [fuse(runs, method="rrf").to_dict() for runs in inputs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda runs: fuse(runs, method="rrf").to_dict(), inputs * 3))
    assert got == expected * 3
