"""Benchmark harness: loaders (matrix / TREC / Parquet), bad input, sweep == fuse + evaluate, tuning, reports,
plots, CLI, significance tests; MSR-VTT reproduction when the data is present."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmfuse import Qrels, Run
from mmfuse.benchmarks import report as rep
from mmfuse.benchmarks.datasets import fill_mask, load_dataset
from mmfuse.benchmarks.sweep import Config, build_configs, run_benchmark, subsets, sweep
from mmfuse.errors import InputError, ParameterError
from mmfuse.eval.metrics import run_video_metrics
from mmfuse.eval.significance import compare, fisher_randomization_test, paired_t_test
from mmfuse.fusion import fuse

VIDS = ["video7", "video3", "video7", "video5", "video9", "video3"]  # 6 captions of 4 videos, first-seen order


def _write_matrix_ds(root, seed=0, n_rows=6, square=False, names=("alpha", "beta", "gamma")):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vids = VIDS[:n_rows]
    uniq = list(dict.fromkeys(vids))
    ncol = n_rows if square else len(uniq)
    cols = vids if square else uniq
    gt = np.asarray(vids)[:, None] == np.asarray(cols)[None, :]
    for i, n in enumerate(names):
        m = rng.normal(size=(n_rows, ncol)) + 1.5 * gt
        if n == "beta":  # a truncated retriever: top-2 per row, zero fill elsewhere
            m = np.abs(m)
            cut = np.sort(m, axis=1)[:, -2][:, None]
            m = np.where(m >= cut, m, 0.0)
        np.save(root / f"{n}_tiny.npy", m.astype(np.float32))
    (root / "descs_tiny.csv").write_text("key,video_id,sentence\n" + "".join(
        f"ret{i},{v},caption {i}\n" for i, v in enumerate(vids)))
    return root


@pytest.fixture()
def tiny(tmp_path):
    return _write_matrix_ds(tmp_path / "tiny")


def test_matrix_loader_rectangular_gt_and_fill(tiny):
    ds = load_dataset(tiny)
    assert ds.retrievers == ["alpha", "beta", "gamma"]  # suffix "_tiny" stripped
    assert ds.n_queries == 6 and list(ds.doc_ids) == ["video7", "video3", "video5", "video9"]
    assert ds.qrels["ret0"] == {"video7": 1} and ds.qrels["ret5"] == {"video3": 1}
    assert len(ds.runs["beta"]) == 6 * 4  # candidates="all": every column
    real = load_dataset(tiny, candidates="real")
    assert len(real.runs["beta"]) == 6 * 2 and len(real.runs["alpha"]) == 6 * 4
    v2t = load_dataset(tiny, mode="v2t")
    assert v2t.n_queries == 4 and v2t.qrels["video7"] == {"ret0": 1, "ret2": 1}


def test_square_matrix_with_repeated_videos(tmp_path):
    ds = load_dataset(_write_matrix_ds(tmp_path / "sq", square=True))
    # column j is the video of row j; ids made unique, every column of the same video is relevant
    assert ds.qrels["ret0"] == {"video7#0": 1, "video7#2": 1}


def test_fill_mask():
    m = np.array([[3.0, 0.0, 0.0, 1.0], [2.0, 1.0, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0]])
    assert fill_mask(m).tolist() == [[False, True, True, False], [False] * 4, [False] * 4]


@pytest.mark.parametrize("case", ["shape", "rows", "nan", "empty", "unknown", "csvless"])
def test_bad_matrix_input_names_the_file(tmp_path, case):
    root = _write_matrix_ds(tmp_path / "bad")
    kw = {}
    if case == "shape":
        np.save(root / "delta_tiny.npy", np.zeros((6, 5)))
        match = "delta_tiny.npy"
    elif case == "rows":
        (root / "descs_tiny.csv").write_text("video_id,sentence\nvideo7,a\nvideo3,b\n")
        match = "descs_tiny.csv"
    elif case == "nan":
        m = np.load(root / "gamma_tiny.npy")
        m[2, 1] = np.nan
        np.save(root / "gamma_tiny.npy", m)
        match = "gamma_tiny.npy"
    elif case == "empty":
        root = tmp_path / "void"
        root.mkdir()
        match = "void"
    elif case == "unknown":
        kw = {"retrievers": ["alpha", "GRAM"]}
        match = "GRAM"
    else:
        (root / "descs_tiny.csv").unlink()
        match = "CSV"
    with pytest.raises(InputError, match=match) as e:
        load_dataset(root, **kw)
    assert "\n" not in str(e.value)


def _write_run_ds(root, fmt="trec"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels.txt").write_text("q1 0 a 1\nq1 0 b 0\nq2 0 c 2\nq3 1.5 d 1\n")
    r1 = Run.from_dict({"q1": {"a": 0.9, "b": 0.5, "c": 0.1}, "q2": {"c": 0.4, "a": 0.8}, "q3": {"d": 0.3}}, name="one")
    r2 = Run.from_dict({"q1": {"b": 3.0, "a": 2.0}, "q2": {"c": 5.0}, "q3": {"e": 1.0, "d": 0.5}}, name="two")
    ext = ".parquet" if fmt == "parquet" else ".trec"
    r1.write(root / f"one{ext}")
    r2.write(root / f"two{ext}")
    return root, r1, r2


@pytest.mark.parametrize("fmt", ["trec", "parquet"])
def test_run_dataset_loader_and_sweep_equal_fuse(tmp_path, fmt):
    root, r1, r2 = _write_run_ds(tmp_path / fmt, fmt)
    ds = load_dataset(root)
    assert sorted(ds.retrievers) == ["one", "two"] and ds.n_queries == 3
    cfgs = [Config("combsum", "min-max", (), ("one", "two")), Config("rrf", None, (("k", 60),), ("one", "two")),
            Config("sef", "none", (("miss", 2.0),), ("one", "two")), Config("single", None, (), ("two",))]
    res = sweep(ds, cfgs, workers=1)
    for c, r in zip(cfgs, res):
        runs = [ds.runs[n] for n in c.retrievers]
        fused = runs[0] if c.method == "single" else fuse(runs, method=c.method, norm=c.norm, **dict(c.params))
        want = run_video_metrics(ds.qrels, fused, list(r.metrics), n_docs=ds.n_docs, ties="optimistic")
        assert r.metrics == pytest.approx(want), c
        assert r.ms_per_query > 0


def test_sweep_equals_fuse_on_matrix_dataset_parallel(tiny):
    for cand in ("all", "real"):
        ds = load_dataset(tiny, candidates=cand)
        cfgs = [c for c in build_configs(ds.retrievers, ["combsum", "combmnz", "rrf", "sef", "bordafuse"], "every")]
        res = sweep(ds, cfgs, workers=2)
        assert [r.config for r in res] == cfgs
        for r in res:
            c = r.config
            runs = [ds.runs[n] for n in c.retrievers]
            fused = runs[0] if c.method == "single" else fuse(runs, method=c.method, norm=c.norm, **dict(c.params))
            want = run_video_metrics(ds.qrels, fused, list(r.metrics), n_docs=ds.n_docs, ties="optimistic")
            assert r.metrics == pytest.approx(want), c


def test_subsets_and_configs():
    assert subsets(["a", "b", "c"], "all") == [("a", "b", "c")]
    assert subsets(["a", "b", "c"], "pairs") == [("a", "b"), ("a", "c"), ("b", "c")]
    assert len(subsets(["a", "b", "c", "d"], "every")) == 11
    assert subsets(["a", "b"], "singles") == []
    with pytest.raises(ParameterError, match="subset mode"):
        subsets(["a"], "some")
    cfgs = build_configs(["a", "b", "c", "d"])
    assert len(cfgs) >= 200  # the default sweep of 4 retrievers
    with pytest.raises(ParameterError, match="did you mean"):
        build_configs(["a", "b"], ["combsun"])


def test_tune_on_applies_params_unchanged(tmp_path):
    a = load_dataset(_write_matrix_ds(tmp_path / "dsa", seed=1))
    b = load_dataset(_write_matrix_ds(tmp_path / "dsb", seed=2))
    grid = {"rrf": {"k": [1, 60]}, "sef": {"miss": [0.5, 3.0]}}
    import mmfuse.benchmarks.sweep as sw

    old = dict(sw.DEFAULT_GRID)
    sw.DEFAULT_GRID.clear()
    sw.DEFAULT_GRID.update(grid)
    try:
        out = run_benchmark([a, b], subset_mode="all", tune_on="dsa")
    finally:
        sw.DEFAULT_GRID.clear()
        sw.DEFAULT_GRID.update(old)
    tuned = [r for r in out["dsb"] if r.config.method != "single"]
    assert {r.tuned_on for r in tuned} == {"dsa"}
    for r in tuned:
        cands = [x for x in out["dsa"] if x.config.method == r.config.method and x.config.retrievers == r.config.retrievers]
        best = max(cands, key=lambda x: x.metrics["R@1"])
        assert r.config.params == best.config.params
    with pytest.raises(ParameterError, match="tune-on"):
        run_benchmark([a, b], tune_on="nope")


def test_report_json_schema_markdown_and_plots(tiny, tmp_path):
    ds = load_dataset(tiny)
    res = {ds.name: sweep(ds, build_configs(ds.retrievers, ["combsum", "rrf", "sef"], "every"), workers=1)}
    doc = rep.to_json(res, {ds.name: ds.n_queries})
    assert set(doc) == {"datasets"} and set(doc["datasets"][ds.name]) == {"n_queries", "results"}
    for e in doc["datasets"][ds.name]["results"]:
        assert set(e) == {"method", "norm", "retrievers", "params", "tuned_on", "metrics", "ms_per_query"}
        assert set(e["metrics"]) == {"R@1", "R@5", "R@10", "MdR", "MnR", "MRR@10", "nDCG@10"}
        assert 0.0 <= e["metrics"]["R@1"] <= 1.0  # a fraction of the queries
    path = tmp_path / "r.json"
    rep.write_json(path, res, {ds.name: ds.n_queries})
    assert json.loads(path.read_text()) == json.loads(json.dumps(doc))
    from mmfuse.benchmarks.plots import plot_all

    files = plot_all(ds.name, res[ds.name], tmp_path / "plots")
    assert len(files) == 4
    for f in files.values():
        assert (tmp_path / "plots" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = rep.markdown(res, {ds.name: ds.n_queries}, plots={ds.name: files})

    def numbered_rows(heading: str) -> list[list[str]]:
        part = md.split(heading, 1)[1].split("\n### ", 1)[0]
        return [[c.strip() for c in ln.split("|")[1:-1]] for ln in part.splitlines()
                if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]

    table = numbered_rows("### All measured configurations")
    r1 = [float(row[3]) for row in table]
    assert r1 == sorted(r1, reverse=True) and len(table) == len(res[ds.name])
    # each retriever alone, then every method at its defaults on all retrievers (one row per method/norm)
    per = numbered_rows("### Each retriever alone, and every method")
    singles = [r for r in res[ds.name] if r.config.method == "single"]
    assert [row[1] for row in per[:len(singles)]] == sorted((r.config.retrievers[0] for r in singles),
                                                             key=lambda n: -next(r.metrics["R@1"] for r in singles
                                                                                 if r.config.retrievers[0] == n))
    methods = per[len(singles):]
    assert len(methods) == len({(r.config.method, r.config.norm) for r in res[ds.name] if r.config.method != "single"})
    full = rep.escape_md("+".join(max((r.config.retrievers for r in res[ds.name]), key=len)))
    assert all(row[2] == full for row in methods), methods  # the full retriever set
    assert [float(row[3]) for row in methods] == sorted((float(row[3]) for row in methods), reverse=True)
    assert "Sensitivity" in md


def test_cli_bench_and_errors(tiny, tmp_path):
    from typer.testing import CliRunner

    from mmfuse.app.cli import app, main

    out = tmp_path / "o"
    out.mkdir()
    r = CliRunner().invoke(app, ["bench", str(tiny), "--methods", "combsum,sef", "--subsets", "all", "--json",
                                 str(out / "r.json"), "--report", str(out / "r.md"), "--plots", str(out / "p"),
                                 "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "R@1" in r.output and (out / "r.md").exists() and list((out / "p").glob("*.png"))
    data = json.loads((out / "r.json").read_text())
    assert data["datasets"]["tiny"]["n_queries"] == 6
    with pytest.raises(SystemExit) as e:
        main(["bench", str(tiny), "--retrievers", "alpha,GRAM"])
    assert e.value.code != 0


def test_significance_against_ranx():
    import ranx

    rng = np.random.default_rng(0)
    qd = {f"q{i}": {f"d{j}": 1 for j in rng.choice(20, 2, replace=False)} for i in range(30)}
    runs = []
    for k in range(2):
        rd = {q: {f"d{j}": float(s) for j, s in enumerate(rng.permutation(20) + k * 0.5 * (rng.random(20)))}
              for q in qd}
        runs.append((rd, f"r{k}"))
    ours = compare(Qrels.from_dict(qd), [Run.from_dict(rd, name=n) for rd, n in runs], ["ndcg@10"], test="student")
    # ranx.compare's Student test: its per-query scores through its own paired_student_t_test
    from ranx.statistical_tests import paired_student_t_test

    per = [ranx.evaluate(ranx.Qrels(qd), ranx.Run(rd), "ndcg@10", return_mean=False) for rd, _ in runs]
    p_ranx, _ = paired_student_t_test(per[0], per[1])
    assert ours["r1"]["ndcg@10"]["p_value"] == pytest.approx(p_ranx, rel=1e-9)
    assert ours["r1"]["ndcg@10"]["mean"] == pytest.approx(float(np.mean(per[1])))
    # Fisher: the sign-flip randomization test ranx runs, checked against the exact p-value (all 2^12 flips)
    import itertools

    a, b = rng.random(12), rng.random(12) + 0.15
    d = b - a
    flips = np.array(list(itertools.product([-1, 1], repeat=d.size)))
    exact = float((np.abs(flips @ d) >= abs(d.sum()) - 1e-12).mean())
    assert fisher_randomization_test(a, b, 20000) == pytest.approx(exact, abs=0.015)
    assert paired_t_test(a, a) == 1.0


# ---- MSR-VTT 1k-A (skipped when the score matrices are absent) ----------------------------------------------------
@pytest.fixture(scope="module")
def msr_all(request):
    path = request.getfixturevalue("msrvtt")
    return load_dataset(path, candidates="all")


def test_msrvtt_reproduces_published_figures(msr_all):
    ds = msr_all
    names = ["clip4clip", "VAST", "GRAM", "InternVideo2"]
    want = {"clip4clip": 0.344, "VAST": 0.494, "GRAM": 0.531, "InternVideo2": 0.546}
    for n in names:
        assert run_video_metrics(ds.qrels, ds.runs[n], ["R@1"], ties="optimistic")["R@1"] == pytest.approx(want[n])
    runs = [ds.runs[n] for n in names]
    for method, norm, params, r1 in [("combsum", "min-max", {}, 0.815), ("combsum", "zmuv", {}, 0.833),
                                     ("rrf", None, {"k": 60}, 0.803)]:
        fused = fuse(runs, method=method, norm=norm, **params)
        assert run_video_metrics(ds.qrels, fused, ["R@1"], ties="optimistic")["R@1"] == pytest.approx(r1), method
