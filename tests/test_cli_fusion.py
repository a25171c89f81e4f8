"""CLI fusion commands on real TREC files: results equal the library, bad input gives one clean error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmfuse import Run
from mmfuse.app.cli import main
from mmfuse.fusion import fuse

RUN_A = "q1 Q0 a 1 3.0 A\nq1 Q0 b 2 2.0 A\nq1 Q0 c 3 1.0 A\nq2 Q0 c 1 1.5 A\n"
RUN_B = "q1  Q0\tb 1 5.0 B\nq1 Q0 d 2 1.0 B\nq2 Q0 a 1 0.5 B\nq2 Q0 c 2 0.25\n"  # odd spacing, missing tag
QRELS = "q1 0 a 1\nq1 0 d 2\nq2 1.5 c 1\n"


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "a.trec").write_text(RUN_A)
    (tmp_path / "b.trec").write_text(RUN_B)
    (tmp_path / "qrels.txt").write_text(QRELS)
    return tmp_path


def cli(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return 0


def test_fuse_trec_matches_library_and_ranx(files, capsys):
    out = files / "fused.trec"
    assert cli("fuse", files / "a.trec", files / "b.trec", "--method", "rrf", "--rrf-k", "60", "-o", out,
               "--tag", "T") == 0
    lines = out.read_text().splitlines()
    assert lines[0].split() == ["q1", "Q0", "b", "1", str(1 / 61 + 1 / 62), "T"]
    got = Run.read(out)
    runs = [Run.read(files / "a.trec"), Run.read(files / "b.trec")]
    assert got.to_dict() == fuse(runs, method="rrf").to_dict()  # the library itself is checked against ranx
    assert [d for d, _ in got.query("q1")] == ["b", "a", "d", "c"]  # a (1/61) beats d (1/62) and c (1/63)


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_fuse_writes_by_extension_with_weights_and_params(files, suffix):
    out = files / f"fused{suffix}"
    assert cli("fuse", files / "a.trec", files / "b.trec", "--method", "wsum", "--weights", "1,2", "--norm", "zmuv",
               "-o", out) == 0
    runs = [Run.read(files / "a.trec"), Run.read(files / "b.trec")]
    assert Run.read(out).to_dict() == fuse(runs, method="wsum", norm="zmuv", weights=[1, 2]).to_dict()
    out2 = files / "soft.trec"
    assert cli("fuse", files / "a.trec", files / "b.trec", "--norm", "softmax", "--method", "combsum",
               "--param", "norm_temperature=0.5", "-o", out2) == 0
    assert out2.exists()


def test_methods_and_eval(files, capsys):
    assert cli("methods") == 0
    text = capsys.readouterr().out
    assert "combsum" in text and "rrf" in text and "entropy" in text
    assert cli("eval", files / "qrels.txt", files / "a.trec", files / "b.trec", "--metrics", "map,ndcg@10", "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"a.trec", "b.trec"} and set(res["a.trec"]) == {"map", "ndcg@10"}
    # hand-computed: q1 ranks a (rel) b c, with d (rel) unretrieved -> AP 0.5; q2 ranks c (rel) first -> AP 1
    assert res["a.trec"]["map"] == pytest.approx(0.75)
    assert cli("eval", files / "qrels.txt", files / "a.trec") == 0
    assert "recall@100" in capsys.readouterr().out


BAD = [
    ("malformed", "q1 Q0 a 1\n", ":1:"),
    ("nan", "q1 Q0 a 1 nan X\n", "NaN"),
    ("text", "q1 Q0 a 1 high X\n", ":1: score 'high'"),
    ("dup", "q1 Q0 a 1 2.0 X\nq1 Q0 a 2 1.0 X\n", "duplicate"),
    ("empty", "", "empty"),
]


@pytest.mark.parametrize("name, content, match", BAD, ids=[b[0] for b in BAD])
def test_bad_run_files(files, capsys, name, content, match):
    bad = files / f"{name}.trec"
    bad.write_text(content)
    out = files / "out.trec"
    code = cli("fuse", files / "a.trec", bad, "-o", out)
    err = capsys.readouterr().err.strip()
    assert code != 0 and match.lower() in err.lower(), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_disjoint_runs_are_fused_with_a_warning(files, capsys):
    # the coverage rule: each query is fused over the runs that have it; no shared id is likely a mistake: warn
    (files / "other.trec").write_text("zz Q0 a 1 2.0 X\nzz Q0 b 2 1.0 X\n")
    out = files / "out.trec"
    code = cli("fuse", files / "a.trec", files / "other.trec", "-o", out, "--method", "rrf")
    err = capsys.readouterr().err
    assert code == 0 and "share no query id" in err and "Traceback" not in err
    fused = Run.read(out)
    assert "zz" in fused and fused["zz"] == pytest.approx({"a": 1 / 61, "b": 1 / 62})


def test_on_duplicate_choices(files):
    dup = files / "dup.trec"
    dup.write_text("q1 Q0 a 1 2.0 X\nq1 Q0 a 2 5.0 X\n")
    for mode, want in [("max", 5.0), ("first", 2.0)]:
        out = files / f"{mode}.trec"
        assert cli("fuse", dup, "--method", "combsum", "--norm", "none", "--on-duplicate", mode, "-o", out) == 0
        assert Run.read(out)["q1"]["a"] == want


@pytest.mark.parametrize("args, match", [
    (["--method", "wsum", "--weights", "1"], "got 1 value"),
    (["--method", "wsum", "--weights", "1,-2"], "negative"),
    (["--method", "wsum", "--weights", "0,0"], "sum to zero"),
    (["--method", "wsum", "--weights", "1,x"], "comma-separated numbers"),
    (["--method", "rff"], "did you mean 'rrf'"),
    (["--method", "rrf", "--param", "kk=2"], "did you mean 'k'"),
    (["--method", "rrf", "--param", "k"], "name=value"),
    (["--norm", "minmax2"], "unknown normalization"),
])
def test_bad_parameters(files, capsys, args, match):
    out = files / "out.trec"
    code = cli("fuse", files / "a.trec", files / "b.trec", *args, "-o", out)
    err = capsys.readouterr().err.strip()
    assert code != 0 and match in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_missing_file_and_unwritable_output(files, capsys):
    assert cli("fuse", files / "a.trec", files / "nope.trec", "-o", files / "o.trec") != 0
    assert "nope.trec" in capsys.readouterr().err
    assert cli("fuse", files / "a.trec", files / "b.trec", "-o", files / "no" / "dir" / "o.trec") != 0
    assert "cannot write" in capsys.readouterr().err
    assert cli("fuse", files / "a.trec", files / "b.trec", "-o", files) != 0
    assert "directory" in capsys.readouterr().err
    assert sorted(p.name for p in files.iterdir()) == ["a.trec", "b.trec", "qrels.txt"]  # nothing partial left


def test_subprocess_error_has_no_traceback(files):
    p = subprocess.run([sys.executable, "-m", "mmfuse.app.cli", "fuse", str(files / "a.trec"), "-o", str(files / "o.trec"),
                        "--weights", "1,2", "--method", "wsum"], capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "got 2 value" in p.stderr


def _pyserini_style_fusion(paths, method, depth, alpha=0.5):
    """An independent oracle written from pyserini's documented fusion semantics (pyserini.fusion / TrecRun):
    each run keeps its first ``depth`` lines per topic in file order; RRF rescoring uses the file's rank column
    (1 / (60 + rank)); 'average' and 'normalize' average raw / per-topic min-max scores over the runs; 'interpolation'
    is alpha * run1 + (1 - alpha) * run2; scores of a doc are summed over the runs that hold it."""
    runs = []
    for p in paths:
        per_topic: dict = {}
        for line in open(p):
            topic, _, doc, rank, score, *_ = line.split()
            per_topic.setdefault(topic, []).append((doc, int(rank), float(score)))
        runs.append({t: rows[:depth] for t, rows in per_topic.items()})
    fused: dict = {}
    for i, run in enumerate(runs):
        for topic, rows in run.items():
            scores = [s for _, _, s in rows]
            lo, hi = min(scores), max(scores)
            for doc, rank, s in rows:
                if method == "rrf":
                    v = 1 / (60 + rank)
                elif method == "average":
                    v = s / len(runs)
                elif method == "normalize":
                    v = (1.0 if hi == lo else (s - lo) / (hi - lo)) / len(runs)
                else:  # interpolation
                    v = (alpha if i == 0 else 1 - alpha) * s
                fused.setdefault(topic, {}).setdefault(doc, 0.0)
                fused[topic][doc] += v
    return fused


def _pyserini_runs(tmp_path, n_runs):
    import numpy as np

    rng = np.random.default_rng(8)
    paths = []
    for i in range(n_runs):
        lines = []
        for t in range(12):
            docs = rng.choice(60, 25, replace=False)
            scores = np.sort(rng.normal(size=25) * (i + 1))[::-1]
            lines += [f"t{t} Q0 d{d} {r} {float(s)!r} run{i}" for r, (d, s) in enumerate(zip(docs, scores), 1)]
        paths.append(tmp_path / f"r{i}.trec")
        paths[-1].write_text("\n".join(lines) + "\n")
    return paths


@pytest.mark.parametrize("method, args", [
    ("rrf", ["--method", "rrf", "--rrf-k", "60"]),
    ("average", ["--method", "combsum", "--norm", "none"]),
    ("normalize", ["--method", "combsum", "--norm", "min-max"]),
    ("interpolation", ["--method", "wsum", "--norm", "none", "--weights", "0.3,0.7"]),
])
def test_fuse_matches_pyserini_fusion_semantics(tmp_path, method, args):
    # pyserini's fusion methods map onto mmfuse methods (README: "Coming from pyserini"); its averages are CombSUM
    # divided by the number of runs (same ranking). --depth cuts the inputs, --k the output, as in pyserini: with
    # --k 1000 every fused doc is written, which is more than --depth when the runs differ
    n_runs = 2 if method == "interpolation" else 3
    paths = _pyserini_runs(tmp_path, n_runs)
    depth = 20
    out = tmp_path / "fused.trec"
    assert cli("fuse", *paths, *args, "--depth", depth, "--k", 1000, "-o", out) == 0
    got = Run.read(out)
    want = _pyserini_style_fusion(paths, method, depth, alpha=0.3)
    scale = n_runs if method in ("average", "normalize") else 1
    mine = got.to_dict()
    assert mine.keys() == want.keys()
    assert max(len(v) for v in mine.values()) > depth
    for t in want:
        assert mine[t].keys() == want[t].keys()
        for d, s in want[t].items():
            assert mine[t][d] == pytest.approx(s * scale, rel=1e-12), (t, d)


def script(*args) -> subprocess.CompletedProcess:
    """The installed console script, as users run it."""
    p = subprocess.run([str(Path(sys.executable).parent / "mmfuse"), *map(str, args)], capture_output=True, text=True)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_fuse_k_is_the_output_depth_and_runs_output_are_pyserinis_spelling(tmp_path):
    # python -m pyserini.fusion --runs A B C --output X --method rrf --rrf.k 60 --depth 20 --k 7: the same fused
    # lists, cut to the best 7 per topic (ties: doc id descending, trec_eval's order)
    paths = _pyserini_runs(tmp_path, 3)
    out = tmp_path / "fused.trec"
    assert script("fuse", "--runs", *paths, "--output", out, "--method", "rrf", "--rrf.k", 60, "--depth", 20,
                  "--k", 7, "--runtag", "mine").returncode == 0
    want = _pyserini_style_fusion(paths, "rrf", 20)
    lines = out.read_text().splitlines()
    assert {line.split()[5] for line in lines} == {"mine"}
    mine = Run.read(out)
    for t, scores in want.items():
        top = sorted(scores, key=lambda d: (-round(scores[d], 12), [-ord(c) for c in d]))[:7]
        assert [d for d, _ in mine.query(t)] == top, t
    # without --k the output keeps the top --depth, as before --k existed
    out2 = tmp_path / "fused2.trec"
    assert script("fuse", *paths, "-o", out2, "--method", "rrf", "--depth", 5).returncode == 0
    assert Run.read(out2).counts().max() == 5


def test_rrf_k_and_param_k_name_the_same_constant(files):
    runs = [files / "a.trec", files / "b.trec"]
    for i, args in enumerate([["--rrf-k", "10"], ["--rrf.k", "10"], ["--param", "k=10"],
                              ["--rrf-k", "10", "--param", "k=10.0"]]):
        out = files / f"k{i}.trec"
        assert script("fuse", *runs, "--method", "rrf", *args, "-o", out).returncode == 0, args
        assert Run.read(out)["q1"]["b"] == pytest.approx(1 / 11 + 1 / 12)  # b: rank 2 in a, rank 1 in b


def _tied_runs(tmp_path, n_runs=3, topics=15, per=40, seed=11):
    """TREC files as ranking tools write them: sorted by score, with many tied scores whose order in the file is
    the tool's (random here), rank column = line position within the topic."""
    import numpy as np

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_runs):
        lines = []
        for t in range(topics):
            docs = rng.choice(120, per, replace=False)
            scores = np.round(rng.uniform(0, 1, size=per), 1)  # ~10 distinct values: ties everywhere
            order = np.lexsort((rng.random(per), -scores))     # score desc, ties in a random (the tool's) order
            lines += [f"t{t} Q0 d{docs[j]} {r} {scores[j]:.1f} run{i}" for r, j in enumerate(order, 1)]
        paths.append(tmp_path / f"tied{i}.trec")
        paths[-1].write_text("\n".join(lines) + "\n")
    return paths


def test_rrf_on_tied_runs_reproduces_pyserini(tmp_path):
    # pyserini ranks each document by its line in the run file; mmfuse's default (--ranks input) does the same, so
    # every fused score equals the oracle's and the ranking is the oracle's under trec_eval's tie order
    paths = _tied_runs(tmp_path)
    depth = 30  # pyserini's depth keeps the first lines in file order; so does mmfuse's in input-rank mode
    out = tmp_path / "fused.trec"
    assert cli("fuse", *paths, "--method", "rrf", "--param", "k=60", "--depth", str(depth), "-o", out) == 0
    want = _pyserini_style_fusion(paths, "rrf", depth)
    got = Run.read(out, name="x")
    for t, scores in want.items():
        oracle = sorted(sorted(scores.items(), reverse=True), key=lambda x: -x[1])  # score desc, doc id desc
        assert got.query(t) == oracle[:depth], t  # exact scores, same positions
    # the score order (trec_eval's ranks) is not pyserini's on such files: the test can tell the two apart
    out2 = tmp_path / "score.trec"
    assert cli("fuse", *paths, "--method", "rrf", "--param", "k=60", "--depth", str(depth), "--ranks", "score",
               "-o", out2) == 0
    by_score = Run.read(out2)
    differ = sum(by_score.query(t) != got.query(t) for t in want)
    assert differ > len(want) // 2


def test_more_results_than_depth_on_tied_runs_reproduce_pyserini(tmp_path):
    # --k above --depth: the inputs are still cut at --depth in file order (pyserini's depth), every fused doc is
    # written, with pyserini's scores at pyserini's positions
    paths = _tied_runs(tmp_path)
    out = tmp_path / "fused.trec"
    assert script("fuse", *paths, "--method", "rrf", "--rrf-k", 60, "--depth", 10, "--k", 1000, "-o", out).returncode == 0
    want = _pyserini_style_fusion(paths, "rrf", 10)
    got = Run.read(out, name="x")
    assert got.counts().max() > 10
    for t, scores in want.items():
        assert got.query(t) == sorted(sorted(scores.items(), reverse=True), key=lambda x: -x[1]), t
