"""`mmfuse rerank` and `mmfuse grid` from the command line, against the loopback server and the tiny model."""

import json

import pytest
from _fake_openai import FakeOpenAI

from mmfuse import Run
from mmfuse.app.cli import main

pytestmark = pytest.mark.slow

COLOURS = ["red", "green", "blue", "yellow", "white", "purple"]


def _cli(*argv):
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return e.code or 0
    return 0


@pytest.fixture()
def inputs(tmp_path, rerank_clips):
    run = tmp_path / "first.trec"
    Run.from_dict({"q1": {c: 10.0 - i for i, c in enumerate(COLOURS)},
                   "q2": {c: 10.0 - i for i, c in enumerate(reversed(COLOURS))}}, name="clip").write(run)
    q = tmp_path / "queries.tsv"
    q.write_text("q1\tsomething purple\nq2\ta blue sky\n")
    return run, q, next(iter(rerank_clips.values())).parent


def test_rerank_openai_cli(inputs, tmp_path, capsys):
    run, q, vids = inputs
    out, stats = tmp_path / "out.trec", tmp_path / "stats.json"
    with FakeOpenAI(script=["garbage"]) as srv:
        code = _cli("rerank", run, "--queries", q, "--videos", vids, "--backend", "openai", "--model", "m",
                    "--base-url", srv.url, "--concurrency", "1", "--top", "4", "--cell", "32",
                    "--cache-dir", tmp_path / "c",
                    "--stats", stats, "-o", out)
    assert code == 0, capsys.readouterr()
    res = Run.read(out)
    assert [d for d, _ in res.query("q1")] == COLOURS  # garbage answer -> incoming order
    assert [d for d, _ in res.query("q2")][:4] == ["blue", "purple", "white", "yellow"]  # 4 reranked, tail kept
    assert [d for d, _ in res.query("q2")][4:] == ["green", "red"]
    s = json.loads(stats.read_text())
    assert s["parse"]["failed"] == 1 and s["parse"]["clean"] == 1 and s["reranked"] == 2
    assert not (tmp_path / "out.trec.partial.jsonl").exists()
    assert "reranked" in capsys.readouterr().out


def test_rerank_resume_and_all_failed(inputs, tmp_path, capsys):
    run, q, vids = inputs
    out = tmp_path / "out.trec"
    partial = tmp_path / "out.trec.partial.jsonl"
    partial.write_text(json.dumps({"qid": "q1", "docs": COLOURS[::-1], "status": "ok"}) + "\n")
    args = ["rerank", run, "--queries", q, "--videos", vids, "--backend", "openai", "--model", "m", "--retries", "0",
            "--cell", "32", "--cache-dir", "", "--resume", "-o", out]
    with FakeOpenAI(default="http500") as srv:
        code = _cli(*args, "--base-url", srv.url)
        assert len(srv.requests) == 1  # only q2 was asked
    assert code == 2  # every query that was tried failed: nothing written, the checkpoint kept for --resume
    err = capsys.readouterr().err
    assert "every query failed" in err and "nothing written" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and partial.exists()
    with FakeOpenAI(default="http500") as srv:  # asked for: the incoming order is written, tagged as it is
        assert _cli(*args, "--base-url", srv.url, "--keep-order-on-failure") == 0
    res = Run.read(out)
    assert [d for d, _ in res.query("q1")] == COLOURS[::-1]  # taken from the partial file
    assert [d for d, _ in res.query("q2")] == COLOURS[::-1]  # q2 failed: its incoming order


def test_rerank_cli_errors(inputs, tmp_path, capsys):
    run, q, vids = inputs
    assert _cli("rerank", run, "--queries", q, "--backend", "openai", "--model", "m", "-o", tmp_path / "o") == 2
    assert "--videos" in capsys.readouterr().err
    assert _cli("rerank", run, "--queries", q, "--videos", vids, "--backend", "opneai", "-o", tmp_path / "o") == 2
    assert "did you mean 'openai'" in capsys.readouterr().err
    assert _cli("rerank", run, "--queries", tmp_path / "nope.tsv", "--videos", vids, "--backend", "openai",
                "-o", tmp_path / "o") == 2
    assert "nope.tsv" in capsys.readouterr().err


def test_rerank_tiny_model_cli(inputs, tmp_path, tiny_vlm_dir, capsys):
    run, q, vids = inputs
    out = tmp_path / "out.trec"
    code = _cli("rerank", run, "--queries", q, "--videos", vids, "--backend", "transformers", "--model", tiny_vlm_dir,
                "--device", "cpu", "--top", "3", "--grid", "1x2", "--cell", "28", "--cache-dir", "", "-o", out)
    assert code == 0, capsys.readouterr()
    res = Run.read(out)
    assert sorted(d for d, _ in res.query("q1")) == sorted(COLOURS)
    assert [d for d, _ in res.query("q1")][3:] == COLOURS[3:]


def test_grid_cli(rerank_clips, tmp_path):
    from PIL import Image

    out = tmp_path / "g.png"
    assert _cli("grid", rerank_clips["green"], "-o", out, "--grid", "1x3", "--cell", "40", "--label", "2") == 0
    img = Image.open(out)
    assert img.size == (120, 40) and img.getpixel((1, 1)) == (255, 230, 0)
    assert _cli("grid", tmp_path / "missing.mp4", "-o", out) == 2


def test_rerank_two_runs_is_vic_fusion(inputs, tmp_path, capsys):
    run, q, vids = inputs
    other = tmp_path / "ocr.trec"
    Run.from_dict({"q1": {"blue": 2.0, "purple": 1.0}}, name="ocr").write(other)
    out = tmp_path / "fused.trec"
    with FakeOpenAI() as srv:
        code = _cli("rerank", run, other, "--queries", q, "--videos", vids, "--backend", "openai", "--model", "m",
                    "--base-url", srv.url, "--cell", "32", "--cache-dir", "", "-o", out)
    assert code == 0, capsys.readouterr()
    texts = ["".join(p.get("text", "") for p in r["messages"][0]["content"] if p["type"] == "text")
             for r in srv.requests]
    text = next(t for t in texts if "purple" in t)  # queries run concurrently: find q1's request
    assert "interleaved order" in text and "first #1, ocr -" in text and "first #3, ocr #1" in text  # names: file stems
    res = Run.read(out)
    assert [d for d, _ in res.query("q1")][0] == "purple" and len(res.query("q1")) == 6


def test_rerank_sample_corpus(repo_root, tmp_path, capsys):
    corpus = repo_root / "examples" / "corpus"
    if not (corpus / "queries.tsv").exists():
        pytest.skip("sample corpus not generated")
    from mmfuse.rerankers.reranker import index_videos, load_queries

    docs = sorted(index_videos(corpus))
    qids = list(load_queries(corpus / "queries.tsv"))[:3]
    run = tmp_path / "all.trec"
    Run.from_dict({q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q in qids}).write(run)
    out, stats = tmp_path / "out.trec", tmp_path / "stats.json"
    with FakeOpenAI() as srv:
        code = _cli("rerank", run, "--queries", corpus / "queries.tsv", "--videos", corpus,
                    "--subtitles", corpus / "subtitles.json", "--backend", "openai", "--model", "m",
                    "--base-url", srv.url, "--top", "12", "--cell", "48", "--cache-dir", "", "--stats", stats, "-o", out)
    assert code == 0, capsys.readouterr()
    s = json.loads(stats.read_text())
    assert s["reranked"] == 3 and s["parse"]["clean"] == 3 and s["missing_videos"] == {}
    assert sorted(d for d, _ in Run.read(out).query(qids[0])) == docs
    text = "".join(p.get("text", "") for p in srv.requests[0]["messages"][0]["content"] if p["type"] == "text")
    assert "Speech/subtitles:" in text and "yellow ball moves" not in text  # captions never leak
