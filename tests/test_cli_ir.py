"""The CLI in IR conventions, run the way users run it (the installed ``mmfuse`` console script in a subprocess):
eval and compare against ranx and hand-computed trec_eval output, convert round trips, tables that fit 80 columns,
and a config template whose every commented value loads."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmfuse import Qrels, Run
from mmfuse.config import load_config

MMFUSE = Path(sys.executable).parent / "mmfuse"
pytestmark = pytest.mark.skipif(not MMFUSE.exists(), reason=f"console script not installed at {MMFUSE}")


def mmfuse(*args, cwd: Path, columns: int | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if columns:
        env["COLUMNS"] = str(columns)
    p = subprocess.run([str(MMFUSE), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in p.stdout + p.stderr, p.stderr
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= width, max(lines, key=len)
    return lines


def write_trec_run(path: Path, run: dict) -> Path:
    path.write_text("".join(f"{q} Q0 {d} {r} {s!r} x\n" for q, docs in run.items()
                            for r, (d, s) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1]), 1)))
    return path


def write_qrels(path: Path, qrels: dict) -> Path:
    path.write_text("".join(f"{q} 0 {d} {r}\n" for q, docs in qrels.items() for d, r in docs.items()))
    return path


def random_case(seed: int, n_q: int = 25, n_runs: int = 2):
    rng = np.random.default_rng(seed)
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(0, 3)) for j in rng.choice(40, 6, replace=False)} for i in range(n_q)}
    runs = []
    for _ in range(n_runs):
        # distinct scores: ranx orders ties differently from trec_eval (tested in test_metrics)
        runs.append({q: {f"d{j}": float(s) for j, s in zip(rng.choice(40, 20, replace=False), rng.permutation(20) + .5)}
                     for q in qrels if rng.random() > 0.1})
    return qrels, runs


# ---- eval ---------------------------------------------------------------------------------------------------------
HAND_QRELS = {"q1": {"a": 1, "d": 2}, "q2": {"c": 1}, "q10": {"x": 1}}
HAND_RUN = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}, "q2": {"c": 1.5, "a": 0.5}}


def test_eval_prints_trec_eval_format_hand_computed(tmp_path):
    # q1 ranks a (rel 1) b c d (rel 2); q2 ranks c (rel 1) first; q10 is judged but absent from the run (an empty
    # list: trec_eval -c). ndcg_cut_2 of q1 = 1 / (2 + 1/log2(3)) = 0.3801; means over the 3 queries.
    write_qrels(tmp_path / "qrels.txt", HAND_QRELS)
    write_trec_run(tmp_path / "run.trec", HAND_RUN)
    names = ["P_2", "recall.2", "map", "recip_rank", "success_1", "Rprec", "ndcg_cut_2"]
    p = mmfuse("eval", "qrels.txt", "run.trec", "-m", ",".join(names[:3]), "-m", ",".join(names[3:]), "-q",
               "--format", "trec_eval", cwd=tmp_path)
    printed = ["P_2", "recall_2", "map", "recip_rank", "success_1", "Rprec", "ndcg_cut_2"]  # trec_eval's spelling
    want = {"q1": [0.5, 0.5, 0.75, 1, 1, 0.5, 0.3801], "q2": [0.5, 1, 1, 1, 1, 1, 1], "q10": [0] * 7,
            "all": [0.3333, 0.5, 0.5833, 0.6667, 0.6667, 0.5, 0.4600]}
    lines = ["runid                 \tall\trun.trec"]
    for q in ("q1", "q2", "q10", "all"):  # natural order, the mean last
        lines += [f"{m:<22}\t{q}\t{v:6.4f}" for m, v in zip(printed, want[q])]
    assert p.stdout.splitlines() == lines
    assert "run.trec: answers 2 of the 3 queries" in p.stderr and len(p.stderr.splitlines()) == 1


def test_eval_matches_ranx_in_every_format(tmp_path):
    import ranx

    qd, (ra, rb) = random_case(5)
    write_qrels(tmp_path / "qrels.txt", qd)
    write_trec_run(tmp_path / "a.trec", ra)
    write_trec_run(tmp_path / "b.trec", rb)
    ours = {"ndcg_cut_10": "ndcg@10", "P_5": "precision@5", "recall@20": "recall@20", "map": "map",
            "recip_rank": "mrr", "success_1": "hit_rate@1", "Rprec": "r-precision", "map_cut_10": "map@10"}
    names = ",".join(ours)
    want = {n: ranx.evaluate(ranx.Qrels(qd), ranx.Run(r), list(ours.values()), make_comparable=True)
            for n, r in (("a.trec", ra), ("b.trec", rb))}
    got = json.loads(mmfuse("eval", "qrels.txt", "a.trec", "b.trec", "-m", names, "--format", "json", cwd=tmp_path).stdout)
    for run in want:
        for m, ranx_name in ours.items():
            assert got[run][m] == pytest.approx(float(want[run][ranx_name]), rel=1e-9, abs=1e-12), (run, m)
    per_query = json.loads(mmfuse("eval", "qrels.txt", "a.trec", "-m", names, "-q", "--json", cwd=tmp_path).stdout)
    q = per_query["a.trec"]
    assert list(q["per_query"]) == sorted(qd, key=lambda x: int(x[1:])) and q["all"] == pytest.approx(got["a.trec"])
    for m in ours:
        assert np.mean([v[m] for v in q["per_query"].values()]) == pytest.approx(got["a.trec"][m])
    csv_rows = mmfuse("eval", "qrels.txt", "a.trec", "b.trec", "-m", names, "--format", "csv", cwd=tmp_path).stdout
    head, *rows = [r.split(",") for r in csv_rows.splitlines()]
    assert head == ["run", "query", *ours]
    assert {(r[0], r[1]): [float(x) for x in r[2:]] for r in rows} == {
        (run, "all"): pytest.approx([got[run][m] for m in ours]) for run in got}
    te = mmfuse("eval", "qrels.txt", "a.trec", "b.trec", "-m", names, "--format", "trec_eval", cwd=tmp_path).stdout
    run = None
    for line in te.splitlines():
        m, qid, v = (x.strip() for x in line.split("\t"))
        if m == "runid":
            run = v
        else:
            assert qid == "all" and v == f"{got[run][m]:6.4f}"
    table = mmfuse("eval", "qrels.txt", "a.trec", "b.trec", "-m", names, cwd=tmp_path, columns=100).stdout
    assert "values are fractions of 1" in table and f"{got['b.trec']['Rprec']:.4f}" in table


# ---- compare ------------------------------------------------------------------------------------------------------
def test_compare_matches_ranx_compare(tmp_path):
    import ranx

    qd, (ra, rb, rc) = random_case(11, n_q=30, n_runs=3)
    write_qrels(tmp_path / "qrels.txt", qd)
    for name, r in zip("abc", (ra, rb, rc)):
        write_trec_run(tmp_path / f"{name}.trec", r)
    metrics = ["ndcg@10", "map"]
    got = json.loads(mmfuse("compare", "qrels.txt", "a.trec", "b.trec", "c.trec", "-m", ",".join(metrics),
                            "--format", "json", cwd=tmp_path).stdout)
    assert got["baseline"] == "a.trec" and got["test"] == "student"
    runs = [ranx.Run(r, name=f"{n}.trec") for n, r in zip("abc", (ra, rb, rc))]
    rep = ranx.compare(ranx.Qrels(qd), runs, metrics, stat_test="student", make_comparable=True).to_dict()
    for other in ("b.trec", "c.trec"):
        for m in metrics:
            assert got["runs"][other][m]["p_value"] == pytest.approx(rep["a.trec"]["comparisons"][other][m], rel=1e-9)
            assert got["runs"][other][m]["mean"] == pytest.approx(rep[other]["scores"][m], rel=1e-9)
        assert got["runs"]["a.trec"][m]["p_value"] is None
    table = mmfuse("compare", "qrels.txt", "a.trec", "b.trec", "c.trec", "-m", ",".join(metrics), cwd=tmp_path,
                   columns=80).stdout
    fits(table)
    assert "baseline" in table and "paired t-test" in table
    assert f"p={got['runs']['c.trec']['map']['p_value']:.3g}" in table


def test_compare_fisher_against_the_exact_randomization_p_value(tmp_path):
    # 12 queries: all 2^12 sign flips give the exact two-sided p-value that both Monte Carlo tests estimate
    import ranx

    qd = {f"q{i}": {f"d{i}": 1} for i in range(12)}
    rng = np.random.default_rng(2)
    rank_a, rank_b = rng.integers(1, 6, 12), rng.integers(1, 4, 12)  # the relevant doc's rank per query

    def run_at(ranks):
        return {f"q{i}": {**{f"x{j}": 10.0 - j for j in range(1, 6)}, f"d{i}": 10.5 - int(r)} for i, r in enumerate(ranks)}

    ra, rb = run_at(rank_a), run_at(rank_b)
    write_qrels(tmp_path / "qrels.txt", qd)
    write_trec_run(tmp_path / "a.trec", ra)
    write_trec_run(tmp_path / "b.trec", rb)
    got = json.loads(mmfuse("compare", "qrels.txt", "a.trec", "b.trec", "-m", "mrr", "--test", "fisher",
                            "--permutations", "20000", "--seed", "7", "--format", "json", cwd=tmp_path).stdout)
    d = 1 / rank_b - 1 / rank_a
    flips = np.array(list(itertools.product([-1, 1], repeat=d.size)))
    exact = float((np.abs(flips @ d) >= abs(d.sum()) - 1e-12).mean())
    assert 0.02 < exact < 0.9  # a case where the estimate is not trivially 0 or 1
    assert got["runs"]["b.trec"]["mrr"]["p_value"] == pytest.approx(exact, abs=0.015)
    rep = ranx.compare(ranx.Qrels(qd), [ranx.Run(ra, name="a"), ranx.Run(rb, name="b")], ["mrr"], stat_test="fisher",
                       n_permutations=20000, random_seed=7).to_dict()
    assert rep["a"]["comparisons"]["b"]["mrr"] == pytest.approx(exact, abs=0.015)
    assert got["permutations"] == 20000 and got["seed"] == 7


# ---- convert ------------------------------------------------------------------------------------------------------
def test_convert_round_trips_runs_and_qrels_in_natural_order(tmp_path):
    run = {"q10": {"a": 3.0, "b": 1.25}, "q2": {"c": 2.0}, "q1": {"b": 0.5, "a": 0.75, "c": 0.1}}
    write_trec_run(tmp_path / "r.trec", run)
    mmfuse("convert", "r.trec", "r.parquet", cwd=tmp_path)
    mmfuse("convert", "r.parquet", "r.json", cwd=tmp_path)
    mmfuse("convert", "r.json", "back.trec", "--tag", "T", cwd=tmp_path)
    assert json.loads((tmp_path / "r.json").read_text()) == {"q1": {"a": 0.75, "b": 0.5, "c": 0.1}, "q2": {"c": 2.0},
                                                            "q10": {"a": 3.0, "b": 1.25}}
    assert list(json.loads((tmp_path / "r.json").read_text())) == ["q1", "q2", "q10"]
    assert (tmp_path / "back.trec").read_text().splitlines() == [
        "q1 Q0 a 1 0.75 T", "q1 Q0 b 2 0.5 T", "q1 Q0 c 3 0.1 T", "q2 Q0 c 1 2 T", "q10 Q0 a 1 3 T", "q10 Q0 b 2 1.25 T"]
    assert Run.read(tmp_path / "r.parquet").to_dict() == Run.from_dict(run).to_dict()
    mmfuse("convert", "r.trec", "top1.json", "--depth", "1", cwd=tmp_path)
    assert json.loads((tmp_path / "top1.json").read_text()) == {"q1": {"a": 0.75}, "q2": {"c": 2.0}, "q10": {"a": 3.0}}
    write_qrels(tmp_path / "qrels.txt", HAND_QRELS)
    p = mmfuse("convert", "qrels.txt", "qrels.parquet", cwd=tmp_path)
    assert "qrels: 3 queries, 4 judgements" in p.stderr
    mmfuse("convert", "qrels.parquet", "qrels.json", cwd=tmp_path)
    mmfuse("convert", "qrels.json", "qrels2.txt", "--kind", "qrels", cwd=tmp_path)
    assert Qrels.read(tmp_path / "qrels2.txt").to_dict() == HAND_QRELS
    assert [line.split()[0] for line in (tmp_path / "qrels2.txt").read_text().splitlines()] == ["q1", "q1", "q2", "q10"]
    # OUT equal to IN needs --force; then the file is converted in place
    p = mmfuse("convert", "r.json", "r.json", cwd=tmp_path, ok=False)
    assert p.returncode == 2 and "is also an input" in p.stderr
    mmfuse("convert", "r.json", "r.json", "--depth", "1", "--force", cwd=tmp_path)
    assert json.loads((tmp_path / "r.json").read_text()) == {"q1": {"a": 0.75}, "q2": {"c": 2.0}, "q10": {"a": 3.0}}


# ---- tables at 80 columns -----------------------------------------------------------------------------------------
def test_methods_fit_80_columns(tmp_path):
    from mmfuse.fusion import default_method, get_method, methods

    lines = fits(mmfuse("methods", cwd=tmp_path, columns=80).stdout)
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split() and line.split()[0] in methods()}
    assert set(rows) == set(methods())  # one row per method, its name whole
    assert rows[default_method()][0] == "*"
    assert all(rows[n][rows[n][0] == "*"] == m.kind for n, m in methods().items())
    detail = mmfuse("methods", "weighted_rrf", cwd=tmp_path, columns=80).stdout  # an alias names the method
    fits(detail)
    m = get_method("rrf")
    assert "reciprocal_rank" in detail and "ranx" in detail and re.search(r"\bk\s+60\s+float\b", detail)
    for p in get_method(default_method()).params:
        assert re.search(rf"\b{p.name}\s+{re.escape(repr(p.default))}\b", mmfuse("methods", default_method(),
                                                                                 cwd=tmp_path, columns=80).stdout)
    assert m.doc.split()[0] in detail


def test_bench_table_fits_80_columns(tmp_path):
    names = ["clip4clip_vit_b32_long_name", "internvideo2_6b_stage2", "asr_dense_minilm", "ocr_bm25_ngrams"]
    rng = np.random.default_rng(0)
    ds = tmp_path / "my_dataset"
    ds.mkdir()
    write_qrels(ds / "qrels.txt", {f"q{i}": {f"d{i}": 1} for i in range(12)})
    for n in names:
        run = {}
        for q in range(12):
            s = rng.normal(size=30)
            s[q] += 2
            run[f"q{q}"] = {f"d{d}": float(s[d]) for d in np.argsort(-s)[:15]}
        write_trec_run(ds / f"{n}.trec", run)
    out = mmfuse("bench", ds, "--subsets", "all", "--methods", "combsum,rrf", "--top", "50", "--workers", "1",
                 cwd=tmp_path, columns=80).stdout
    lines = fits(out)
    start = next(i for i, line in enumerate(lines) if line.startswith("retrievers:"))
    legend = " ".join(lines[start:next(i for i, line in enumerate(lines) if line.startswith("R@k:"))])
    for n in names:
        assert f"={n}" in legend  # every retriever's full name, once, in the legend
    codes = dict(re.findall(r"(\S+)=(\S+)", legend))
    numbers = r"(\s+[01]\.\d{3}){3}\s+\d+(\.\d+)?\s+\d+\.\d\s+\d+\.\d{3}\s*$"  # R@1 R@5 R@10 MdR MnR ms/q
    singles = [line for line in lines if line.split() and line.split()[0] in names]
    assert len(singles) == 4 and all(re.search(numbers, line) for line in singles)
    fused = [line for line in lines if line.split() and line.split()[0] in ("combsum/min-max", "rrf")]
    assert fused and all(re.search(numbers, line) for line in fused)
    for line in fused:
        assert set(next(w for w in line.split() if "+" in w).split("+")) == set(codes)  # all four, by code
    assert "fractions of 1" in out and "ms/q" in out


@pytest.mark.slow
def test_search_table_fits_80_columns(tmp_path_factory):
    from _pipeline_helpers import corpus_index

    index = corpus_index(tmp_path_factory)
    doc = json.loads(mmfuse("search", "grandmother grows tomatoes", "--index", index, "--json", cwd=index).stdout)
    out = mmfuse("search", "grandmother grows tomatoes", "--index", index, cwd=index, columns=80).stdout
    lines = fits(out)
    legend = " ".join(lines[lines.index(next(x for x in lines if x.startswith("per retriever"))):])
    for m in {m for h in doc["hits"] for m in h["modalities"]}:
        assert f"={m}" in legend
    for h in doc["hits"]:
        assert re.search(rf"^\s*{h['rank']}\s+{re.escape(h['video_id'])}\s+{h['score']:.4g}\s", out, re.M), h


# ---- mmfuse init -------------------------------------------------------------------------------------------------
KEY = re.compile(r"^# ?([A-Za-z_][A-Za-z0-9_]*) = ")
TABLE = re.compile(r"^# ?\[")


def test_every_commented_value_of_init_loads(tmp_path):
    mmfuse("init", "mmfuse.toml", cwd=tmp_path)
    lines = (tmp_path / "mmfuse.toml").read_text().splitlines()
    units, i = [], 0
    while i < len(lines):  # a commented-out table is uncommented whole: its keys belong to it
        if TABLE.match(lines[i]):
            j = i + 1
            while j < len(lines) and lines[j].startswith("#") and not TABLE.match(lines[j]):
                j += 1
            units.append([k for k in range(i, j) if k == i or KEY.match(lines[k])])
            i = j
            continue
        if KEY.match(lines[i]):
            units.append([i])
        i += 1
    assert len(units) >= 10 and any(lines[u[0]].startswith("# norm") for u in units)

    def load(keys: list[int]) -> None:
        text = [re.sub(r"^# ?", "", x) if k in keys else x for k, x in enumerate(lines)]
        (tmp_path / "try.toml").write_text("\n".join(text) + "\n")
        load_config(tmp_path / "try.toml")

    for unit in units:
        load(unit)
    load([k for u in units for k in u])
