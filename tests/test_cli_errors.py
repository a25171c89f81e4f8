"""Every user mistake, run the way users run it: the installed ``mmfuse`` console script in a subprocess.

Each class of mistake (usage errors, out-of-range values, outputs that would replace inputs or cannot be written) is
tried with many variants. Each must end with exit code 2, exactly one line on stderr, no traceback, no death by a
signal, and every file that was there before unchanged (same bytes, same mtime) with nothing new written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _fake_openai import FakeOpenAI

import mmfuse

MMFUSE = Path(sys.executable).parent / "mmfuse"
pytestmark = pytest.mark.skipif(not MMFUSE.exists(), reason=f"console script not installed at {MMFUSE}")

RUN_A = "q1 Q0 a 1 3.0 A\nq1 Q0 b 2 2.0 A\nq1 Q0 c 3 1.0 A\nq2 Q0 c 1 1.5 A\n"
RUN_B = "q1 Q0 b 1 5.0 B\nq1 Q0 d 2 1.0 B\nq2 Q0 a 1 0.5 B\nq2 Q0 c 2 0.25 B\n"
QRELS = "q1 0 a 1\nq1 0 d 1\nq2 0 c 1\n"


def mmfuse_cli(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(MMFUSE), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its bytes (or link target) and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body = os.readlink(p) if p.is_symlink() else (p.read_bytes() if p.is_file() else None)
        out[str(p.relative_to(root))] = (st.st_mtime_ns, body)
    return out


def assert_one_line_error(p: subprocess.CompletedProcess, *fragments: str) -> str:
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)  # a signal death is a negative code
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, (f, err)
    return err


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A small workspace: two runs, qrels, queries, an empty video folder, a fake video, a run dataset."""
    d = tmp_path_factory.mktemp("ws")
    (d / "a.trec").write_text(RUN_A)
    (d / "b.trec").write_text(RUN_B)
    (d / "qrels.txt").write_text(QRELS)
    (d / "q.tsv").write_text("q1\tred ball\nq2\tblue sky\n")
    (d / "videos").mkdir()
    (d / "v.mp4").write_bytes(b"not really a video")
    (d / "out").mkdir()
    ds = d / "ds"
    ds.mkdir()
    (ds / "qrels.txt").write_text(QRELS)
    (ds / "alpha.trec").write_text(RUN_A)
    (ds / "beta.trec").write_text(RUN_B)
    (d / "link.trec").symlink_to(d / "a.trec")
    return d


@pytest.fixture()
def unchanged(ws):
    """Fails the test when the command under test changed, replaced, removed or added any file."""
    before = snapshot(ws)
    yield ws
    assert snapshot(ws) == before


# ---- usage errors: click's own, printed as one line with "did you mean" and the --help hint ---------------------
USAGE = [
    (["fuze"], ["No such command 'fuze'", "Did you mean 'fuse'?", "mmfuse --help"]),
    (["fuse", "--runz", "a.trec", "b.trec", "-o", "o.trec"], ["No such option: --runz", "did you mean '--runs'?",
                                                              "mmfuse fuse --help"]),
    (["fuse", "a.trec", "-o", "o.trec", "--dept", "5"], ["--dept", "did you mean '--depth'?"]),
    (["fuse", "a.trec"], ["Missing option", "--output"]),
    (["fuse", "-o", "o.trec"], ["Missing argument"]),
    (["fuse", "a.trec", "-o"], ["-o", "requires an argument"]),
    (["eval"], ["Missing argument"]),
    (["--nope"], ["No such option: --nope", "mmfuse --help"]),
    (["methods", "rrf", "extra"], ["unexpected extra argument", "mmfuse methods --help"]),
    (["methods", "rff"], ["unknown fusion method 'rff'", "did you mean 'rrf'"]),
    (["bench", "ds", "--workerz", "2"], ["did you mean '--workers'?"]),
    (["rerank", "a.trec", "--queries", "q.tsv", "-o", "o.trec", "--top"], ["--top", "requires an argument"]),
    (["grid", "v.mp4"], ["Missing option", "--output"]),
    (["search"], ["give one QUERY, or --queries FILE"]),
]


@pytest.mark.parametrize("args, fragments", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line(unchanged, args, fragments):
    assert_one_line_error(mmfuse_cli(*args, cwd=unchanged), *fragments)


def test_bare_command_prints_the_help(unchanged):
    p = mmfuse_cli(cwd=unchanged)
    assert p.returncode in (0, 2) and "Traceback" not in p.stdout + p.stderr
    assert "Usage: mmfuse" in p.stdout + p.stderr and "fuse" in p.stdout + p.stderr


def test_version(unchanged):
    p = mmfuse_cli("--version", cwd=unchanged)
    assert p.returncode == 0 and p.stdout.strip() == f"mmfuse {mmfuse.__version__}" and p.stderr == ""


def test_debug_shows_the_traceback(unchanged):
    p = mmfuse_cli("--debug", "fuze", cwd=unchanged)
    assert p.returncode != 0 and "Traceback" in p.stderr
    p = mmfuse_cli("--debug", "fuse", "a.trec", "missing.trec", "-o", "o.trec", cwd=unchanged)
    assert p.returncode != 0 and "Traceback" in p.stderr and "missing.trec" in p.stderr


# ---- option values: ranges, finiteness, non-empty lists, choices (the typed option layer) -------------------------
FUSE = ["fuse", "a.trec", "b.trec", "-o", "out/f.trec"]
RERANK = ["rerank", "a.trec", "--queries", "q.tsv", "--videos", "videos", "--backend", "openai", "--model", "m",
          "--base-url", "http://127.0.0.1:9/v1", "--cache-dir", "", "-o", "out/r.trec"]
VALUES = [
    (FUSE + ["--depth", "99999999999999999999999"], "--depth", "too large"),
    (FUSE + ["--depth", "0"], "--depth", "at least 1"),
    (FUSE + ["--depth", "9" * 5000], "--depth", "(5000 characters) is out of range"),
    (FUSE + ["--depth", "1.5"], "--depth", "not a whole number"),
    (FUSE + ["--depth", "1_000"], "--depth", "not a whole number"),
    (FUSE + ["--depth", "１２"], "--depth", "not a whole number"),
    (FUSE + ["--k", "0"], "--k", "at least 1"),
    (FUSE + ["--k", "60.5"], "--k", "not a whole number"),
    (FUSE + ["--rrf-k", "inf"], "--rrf-k", "not a finite number"),
    (FUSE + ["--rrf.k", "nan"], "--rrf.k", "not a finite number"),
    (FUSE + ["--rrf-k", "1e400"], "--rrf-k", "not a finite number"),
    (FUSE + ["--rrf-k", "-1"], "--rrf-k", ">= 0"),
    (FUSE + ["--method", "rrf", "--rrf-k", "5", "--param", "k=6"], "--rrf-k", "give one of them"),
    (FUSE + ["--method", "combsum", "--rrf.k", "5"], "--rrf-k", "method 'combsum' has no constant k"),
    (FUSE + ["--stream", "--k", "10", "--depth", "100"], "--k 10 with --stream", "give --depth alone"),
    (FUSE + ["--block-rows", "0"], "--block-rows", "at least 1"),
    (FUSE + ["--weights", ""], "--weights", "names nothing"),
    (FUSE + ["--weights", "1,inf"], "--weights", "not a finite number"),
    (FUSE + ["--tag", "a b"], "--tag", "one word"),
    (FUSE + ["--tag", ""], "--tag", "one word"),
    (FUSE + ["--format", "xml"], "--format", "not one of"),
    (FUSE + ["--format", "trec\nparquet"], "--format", "not one of"),
    (FUSE + ["--on-duplicate", "maxx"], "--on-duplicate", "did you mean 'max'"),
    (FUSE + ["--param", "k"], "--param", "name=value"),
    (FUSE + ["--param", "=3"], "--param", "name=value"),
    (FUSE + ["--method", "rff"], "--method", "did you mean 'rrf'"),
    (FUSE + ["--norm", "minmaxx"], "--norm", "unknown normalization"),
    (FUSE + ["--method", "rrf", "--param", "k=inf"], "k", "finite"),
    (["eval", "qrels.txt", "a.trec", "--metrics", ""], "--metrics", "names nothing"),
    (["eval", "qrels.txt", "a.trec", "--metrics", "ndcg@1o"], "--metrics", "did you mean 'ndcg@10'"),
    (["eval", "qrels.txt", "a.trec", "--metrics", "R@10"], "--metrics", "ambiguous: write recall@10"),
    (["eval", "qrels.txt", "a.trec", "-m", "map", "-m", "P"], "-m", "'P' needs a cutoff, such as P_10"),
    (["eval", "qrels.txt", "a.trec", "--format", "xml"], "--format", "not one of table, trec_eval, json, csv"),
    (["eval", "qrels.txt", "a.trec", "--format", "trec-eval"], "--format", "did you mean 'trec_eval'"),
    (["eval", "qrels.txt", "a.trec", "--json", "--format", "csv"], "--json and --format csv", "give one of them"),
    (["eval", "qrels.txt", "a.trec", "--run-format", "tsv"], "--run-format", "not one of"),
    (["compare", "qrels.txt", "a.trec"], "compare needs at least two runs", "baseline first"),
    (["compare", "qrels.txt", "a.trec", "b.trec", "--test", "wilcoxon"], "--test", "not one of t, student, fisher"),
    (["compare", "qrels.txt", "a.trec", "b.trec", "--max-p", "0"], "--max-p", "> 0"),
    (["compare", "qrels.txt", "a.trec", "b.trec", "--max-p", "1.5"], "--max-p", "<= 1"),
    (["compare", "qrels.txt", "a.trec", "b.trec", "--permutations", "0"], "--permutations", "at least 1"),
    (["compare", "qrels.txt", "a.trec", "b.trec", "-m", "ndgc@10"], "-m", "did you mean 'ndcg@10'"),
    (["convert", "a.trec", "out/x.json", "--depth", "0"], "--depth", "at least 1"),
    (["convert", "a.trec", "out/x.json", "--kind", "qrel"], "--kind", "did you mean 'qrels'"),
    (["convert", "a.trec", "out/x", "--to", "xml"], "--to", "not one of trec, parquet, json"),
    (["bench", "ds", "--workers", "0"], "--workers", "at least 1"),
    (["bench", "ds", "--top", "0"], "--top", "at least 1"),
    (["bench", "ds", "--subsets", "pair"], "--subsets", "did you mean 'pairs'"),
    (["bench", "ds", "--mode", "t2x"], "--mode", "not one of"),
    (["bench", "ds", "--candidates", "sum"], "--candidates", "not one of"),
    (["bench", "ds", "--methods", ""], "--methods", "names nothing"),
    (["bench", "ds", "--methods", "combsum,rff"], "--methods", "did you mean 'rrf'"),
    (["bench", "ds", "--retrievers", ","], "--retrievers", "names nothing"),
    (["index", "videos", "--index", "out/idx", "--frames", "0"], "--frames", "at least 1"),
    (["index", "videos", "--index", "out/idx", "--frames", "65"], "--frames", "at most 64"),
    (["index", "videos", "--index", "out/idx", "--window", "0"], "--window", "> 0"),
    (["index", "videos", "--index", "out/idx", "--window", "inf"], "--window", "not a finite number"),
    (["index", "videos", "--index", "out/idx", "--workers", "0"], "--workers", "at least 1"),
    (["index", "videos", "--index", "out/idx", "--engine", "rey"], "--engine", "did you mean 'ray'"),
    (["index", "videos", "--index", "out/idx", "--modalities", ""], "--modalities", "names nothing"),
    (["search", "red", "--index", "out/idx", "--k", "0"], "--k", "at least 1"),
    (["search", "red", "--index", "out/idx", "--k", "99999999999999999999999"], "--k", "too large"),
    (["search", "red", "--index", "out/idx", "--aggregation", "maxx"], "--aggregation", "did you mean 'max'"),
    (["search", "red", "--index", "out/idx", "--pooling", "meen"], "--pooling", "did you mean 'mean'"),
    (["search", "red", "--index", "out/idx", "--fusion", "combsun"], "--fusion", "did you mean 'combsum'"),
    (RERANK + ["--concurrency", "0"], "--concurrency", "at least 1"),
    (RERANK + ["--subtitle-tokens", "-5"], "--subtitle-tokens", "at least 0"),
    (RERANK + ["--top", "0"], "--top", "at least 1"),
    (RERANK + ["--window", "1"], "--window", "at least 2"),
    (RERANK + ["--step", "0"], "--step", "at least 1"),
    (RERANK + ["--timeout", "0"], "--timeout", "> 0"),
    (RERANK + ["--retries", "-1"], "--retries", "at least 0"),
    (RERANK + ["--batch-size", "0"], "--batch-size", "at least 1"),
    (RERANK + ["--depth", "0"], "--depth", "at least 1"),
    (RERANK + ["--grid", "0x2"], "--grid", "rows and cols"),
    (RERANK + ["--grid", "9x9"], "--grid", "at most 64"),
    (RERANK + ["--grid", "axb"], "--grid", "ROWSxCOLS"),
    (RERANK + ["--cell", "abc"], "--cell", "N or WxH"),
    (RERANK + ["--cell", "8"], "cell", "at least 16x16"),
    (RERANK + ["--cell", "20000"], "grid 2x2 of 20000x20000 px cells", "at most 8192 px a side"),
    (RERANK + ["--backend", "opneai"], "--backend", "did you mean 'openai'"),
    (RERANK + ["--mode", "listwize"], "--mode", "did you mean 'listwise'"),
    (RERANK + ["--sampling", "scenes"], "--sampling", "did you mean 'scene'"),
    (RERANK + ["--dtype", "float8"], "--dtype", "not one of"),
    (["grid", "v.mp4", "-o", "out/g.png", "--cell", "20000"], "20000x20000", "at most 8192 px a side"),
    (["grid", "v.mp4", "-o", "out/g.png", "--cell", "4000", "--grid", "8x8"], "32000x32000", "16777216 px in all"),
    (["grid", "v.mp4", "-o", "out/g.png", "--cell", "99999999999999999999999"], "cell", "at most 8192"),
    (["demo", "--out", "out/demo", "--k", "0"], "--k", "at least 1"),
    (["demo", "--out", "out/demo", "--rerank-top", "0"], "--rerank-top", "at least 1"),
    (["demo", "--out", "out/demo", "--show", "-1"], "--show", "at least 0"),
    (["demo", "--out", "out/demo", "--vlm-backend", "foo"], "--vlm-backend", "not one of"),
]


@pytest.mark.parametrize("args, where, what", VALUES, ids=[" ".join(a)[:80] for a, _, _ in VALUES])
def test_bad_values_are_one_line_before_any_work(unchanged, args, where, what):
    assert_one_line_error(mmfuse_cli(*args, cwd=unchanged), where, what)


# ---- outputs: never over an input, never where it cannot be written, checked before the work ---------------------
FILES = [
    (["fuse", "a.trec", "b.trec", "-o", "a.trec"], ["a.trec: is also an input", "--force"]),
    (["fuse", "a.trec", "b.trec", "-o", "out/../b.trec"], ["is also an input"]),
    (["fuse", "a.trec", "b.trec", "-o", "link.trec"], ["is also an input"]),  # a symlink to a.trec
    (["fuse", "link.trec", "b.trec", "-o", "a.trec"], ["is also an input"]),
    (["fuse", "a.trec", "b.trec", "-o", "out"], ["is a directory"]),
    (["fuse", "a.trec", "b.trec", "-o", "missing/dir/f.trec"], ["does not exist"]),
    (RERANK[:-2] + ["-o", "a.trec"], ["is also an input"]),
    (RERANK[:-2] + ["-o", "q.tsv"], ["is also an input"]),
    (RERANK + ["--stats", "a.trec"], ["is also an input"]),
    (RERANK + ["--stats", "out/r.trec"], ["both -o and --stats"]),
    (["bench", "ds", "--json", "ds/qrels.txt"], ["is also an input"]),
    (["bench", "ds", "--json", "out/r.json", "--report", "ds/alpha.trec"], ["is also an input"]),
    (["bench", "ds", "--json", "out/r.json", "--report", "out"], ["is a directory"]),
    (["bench", "ds", "--json", "out/r.json", "--report", "nodir/r.md"], ["does not exist"]),
    (["bench", "ds", "--json", "out/r.md", "--report", "out/r.md"], ["both --json and --report"]),
    (["bench", "ds", "--json", "out/r.json", "--plots", "a.trec"], ["is a file"]),
    (["grid", "v.mp4", "-o", "v.mp4", "--cell", "32"], ["is also an input"]),
    (["convert", "a.trec", "a.trec"], ["a.trec: is also an input", "--force"]),
    (["convert", "a.trec", "link.trec"], ["is also an input"]),
    (["convert", "a.trec", "out"], ["is a directory"]),
    (["convert", "a.trec", "missing/dir/f.json"], ["does not exist"]),
]


@pytest.mark.parametrize("args, fragments", FILES, ids=[" ".join(a) for a, _ in FILES])
def test_outputs_never_replace_inputs(unchanged, args, fragments):
    # `unchanged` checks afterwards that every input is intact and that no output (e.g. --json) was written
    assert_one_line_error(mmfuse_cli(*args, cwd=unchanged), *fragments)


# ---- inputs that are missing, folders, or not what they claim: one line naming the file ------------------------------
INPUTS = [
    (["fuse", "a.trec", "nope.trec", "-o", "out/f.trec"], "nope.trec"),
    (["fuse", "a.trec", "out", "-o", "out/f.trec"], "out: is a directory"),
    (["fuse", "a.trec", "q.tsv", "-o", "out/f.trec"], "q.tsv:1"),
    (["eval", "nope.txt", "a.trec"], "nope.txt"),
    (["eval", "qrels.txt", "out"], "out: is a directory"),
    (["bench", "nope"], "nope: no such dataset directory"),
    (["bench", "a.trec"], "a dataset is a directory"),
    (RERANK[:3] + ["nope.tsv"] + RERANK[4:], "nope.tsv"),
    (RERANK[:4] + ["--mapping", "nope.tsv"] + RERANK[6:], "nope.tsv"),
    (RERANK + ["--subtitles", "nope.json"], "nope.json"),
    (["grid", "nope.mp4", "-o", "out/g.png"], "nope.mp4"),
    (["grid", "v.mp4", "-o", "out/g.png", "--cell", "32"], "v.mp4: not a readable"),
    (["init", "out/nodir/m.toml"], "does not exist"),
    (["demo", "--corpus", "nope", "--cache", "out/c", "--out", "out/o"], "queries.tsv: missing"),
    (["index", "nope", "--index", "out/idx"], "nope: video folder does not exist"),
    (["search", "red", "--index", "nope"], "index nope does not exist"),
    (["convert", "nope.trec", "out/x.json"], "nope.trec: file not found"),
    (["convert", "q.tsv", "out/x.json"], "q.tsv:1"),
    (["convert", "qrels.txt", "out/q.json", "--depth", "2"], "--depth applies to runs; qrels.txt holds qrels"),
    (["convert", "a.trec", "out/q.txt", "--kind", "qrels"], "a.trec:1: expected 4 columns"),
]


@pytest.mark.parametrize("args, fragment", INPUTS, ids=[" ".join(a)[:80] for a, _ in INPUTS])
def test_bad_inputs_are_one_line(unchanged, args, fragment):
    assert_one_line_error(mmfuse_cli(*args, cwd=unchanged), fragment)


def test_force_replaces_an_input_on_purpose(tmp_path):
    (tmp_path / "a.trec").write_text(RUN_A)
    (tmp_path / "b.trec").write_text(RUN_B)
    p = mmfuse_cli("fuse", "a.trec", "b.trec", "--method", "rrf", "-o", "a.trec", "--force", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # hand-computed RRF (k=60): q1 b = 1/62 + 1/61 is first
    assert (tmp_path / "a.trec").read_text().splitlines()[0].split()[:3] == ["q1", "Q0", "b"]


# ---- eval: rows named apart, queries that match nothing are said -------------------------------------------------
def test_eval_names_runs_of_the_same_file_name_apart(tmp_path):
    for sub, text in (("x", RUN_A), ("y", RUN_B)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "run.trec").write_text(text)
    (tmp_path / "qrels.txt").write_text(QRELS)
    p = mmfuse_cli("eval", "qrels.txt", "x/run.trec", "y/run.trec", "--metrics", "mrr@10", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    # by hand: run A has a relevant doc first for q1 (a) and q2 (c) -> MRR 1; run B has d at 2 (q1) and c at 2 (q2)
    assert res == {"x/run.trec": {"mrr@10": 1.0}, "y/run.trec": {"mrr@10": 0.5}}


def test_eval_and_bench_warn_when_queries_do_not_match(tmp_path):
    (tmp_path / "qrels.txt").write_text(QRELS)
    (tmp_path / "other.trec").write_text("Q1 Q0 a 1 1.0 X\nQ2 Q0 c 1 1.0 X\n")  # ids differ in case only
    (tmp_path / "half.trec").write_text("q1 Q0 a 1 1.0 X\n")
    p = mmfuse_cli("eval", "qrels.txt", "other.trec", "half.trec", "--json", cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2, p.stderr
    assert "other.trec: answers 0 of the 2 queries" in lines[0] and "query ids match" in lines[0]
    assert "half.trec: answers 1 of the 2 queries" in lines[1]
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "qrels.txt").write_text(QRELS)
    (ds / "alpha.trec").write_text(RUN_A)
    (ds / "other.trec").write_text((tmp_path / "other.trec").read_text())
    p = mmfuse_cli("bench", "ds", "--methods", "combsum", "--subsets", "all", "--workers", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    warns = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    assert len(warns) == 1 and "run other answers 0 of the 2 qrels queries" in warns[0], p.stderr


def test_evaluation_result_carries_the_matched_count():
    from mmfuse import Qrels, Run, evaluate

    q = Qrels.from_dict({"q1": {"a": 1}, "q2": {"c": 1}})
    res = evaluate(q, Run.from_dict({"Q1": {"a": 1.0}}), ["mrr@10"])
    assert res == {"mrr@10": 0.0} and (res.queries, res.matched) == (2, 0)
    res = evaluate(q, Run.from_dict({"q1": {"a": 1.0}, "zz": {"a": 1.0}}), ["mrr@10"])
    assert res["mrr@10"] == 0.5 and (res.queries, res.matched) == (2, 1)


# ---- bench report: names from files stay literal Markdown ------------------------------------------------------------
ODD = ["pipe|name", "star*em*", "link[x](http:__e)", "under_score_", "tick`s", "lt<b>gt"]


def test_bench_report_escapes_file_names(tmp_path):
    from markdown_it import MarkdownIt

    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "qrels.txt").write_text(QRELS)
    for i, name in enumerate(ODD):
        (ds / f"{name}.trec").write_text(RUN_A if i % 2 else RUN_B)
    p = mmfuse_cli("bench", "ds", "--methods", "combsum", "--subsets", "pairs", "--workers", "1",
                   "--report", "r.md", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    html = MarkdownIt("commonmark").enable("table").render((tmp_path / "r.md").read_text())
    assert "<em>" not in html and "<a href" not in html and "<b>" not in html  # nothing became markup
    tables = re.findall(r"<table>(.*?)</table>", html, re.S)
    assert tables
    for t in tables:  # a "|" in a name would split its cell: every row keeps the header's width
        assert len({len(re.findall(r"<t[dh]", r)) for r in re.findall(r"<tr>(.*?)</tr>", t, re.S)}) == 1
    for name in ODD:
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in html, name  # each name shows as the literal text


# ---- rerank: when every query fails nothing is written ---------------------------------------------------------------
def test_rerank_every_query_failed_writes_nothing(tmp_path):
    pytest.importorskip("httpx")
    pytest.importorskip("PIL")
    (tmp_path / "a.trec").write_text(RUN_B)  # two candidates per query: each needs a model call
    (tmp_path / "q.tsv").write_text("q1\tred ball\nq2\tblue sky\n")
    (tmp_path / "videos").mkdir()
    before = snapshot(tmp_path)
    with FakeOpenAI(default="http500") as srv:
        p = mmfuse_cli("rerank", "a.trec", "--queries", "q.tsv", "--videos", "videos", "--backend", "openai",
                       "--model", "m", "--base-url", srv.url, "--retries", "0", "--cell", "32", "--cache-dir", "",
                       "-o", "out.trec", cwd=tmp_path)
    assert_one_line_error(p, "every query failed", "nothing written to out.trec", "--resume")
    after = snapshot(tmp_path)
    assert set(after) - set(before) == {"out.trec.partial.jsonl"}  # the checkpoint --resume continues from
    assert all(after[k] == v for k, v in before.items())
