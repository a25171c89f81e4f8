"""One retrieve -> fuse path: the installed ``mmfuse search`` (single and batch), ``Pipeline`` and the demo give the
same rankings and scores on the same index and queries, and batch search writes runs that eval/bench/rerank read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _pipeline_helpers import CORPUS, corpus_index, demo_cache

pytestmark = pytest.mark.slow

MMFUSE = str(Path(sys.executable).parent / "mmfuse")


def _cli(*args, check=True):
    p = subprocess.run([MMFUSE, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return corpus_index(tmp_path_factory)


@pytest.fixture(scope="module")
def queries():
    from mmfuse.rerankers import load_queries

    return load_queries(CORPUS / "queries.tsv")


@pytest.fixture(scope="module")
def pipeline_result(index, queries):
    from mmfuse import Pipeline

    return Pipeline(index=index).run(queries, k=10)


@pytest.fixture(scope="module")
def batch(index, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    _cli("search", "--queries", CORPUS / "queries.tsv", "--index", index, "-o", out / "fused.trec",
         "--per-modality-dir", out / "runs")
    return out


def test_batch_cli_equals_pipeline(batch, pipeline_result, queries):
    from mmfuse import Run

    fused = Run.read(batch / "fused.trec")
    for qid in queries:
        got, want = fused.query(qid), pipeline_result.final.query(qid)
        assert [d for d, _ in got] == [d for d, _ in want], qid
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-12, abs=1e-15), qid
    for run in pipeline_result.runs:
        written = Run.read(batch / "runs" / f"{run.name}.trec")
        for qid in queries:
            got = dict(written.query(qid)) if qid in written else {}  # TREC has no line for an empty list
            assert got == pytest.approx(dict(run.query(qid))), (run.name, qid)


def test_single_query_cli_json_equals_pipeline(index, queries):
    # the same single query through both (a batch of other queries may differ in the last float32 bits of a dense
    # query embedding: encoders pad a batch to its longest text)
    from mmfuse import Pipeline

    pipe = Pipeline(index=index)
    for qid in ("q09", "q11", "q18"):
        doc = json.loads(_cli("search", queries[qid], "--index", index, "--json").stdout)
        res = pipe.run({"q": queries[qid]}, k=10)
        assert doc == json.loads(json.dumps(res.as_dict("q")))
        assert [(h["video_id"], h["score"]) for h in doc["hits"]] == res.final.query("q")
        assert doc["fusion"] == res.fusion and doc["query"] == queries[qid]
        # every hit says which retrievers found it, at which rank, and the text it matched
        for h in doc["hits"]:
            for name, m in h["modalities"].items():
                run = next(r for r in res.runs if r.name == name)
                assert run.query("q")[m["rank"] - 1] == (h["video_id"], m["score"])
                assert m["text"] and m["segment_id"].startswith(h["video_id"])


def test_demo_equals_pipeline(index, pipeline_result, queries, tmp_path_factory):
    from mmfuse.app.demo import DemoOptions, run_demo

    res = run_demo(DemoOptions(cache=demo_cache(tmp_path_factory), out=tmp_path_factory.mktemp("demo") / "r"))
    for v in res.queries:
        want = pipeline_result.final.query(v.qid)
        assert [d for d, _ in v.lists["fused"]] == [d for d, _ in want], v.qid
        assert [s for _, s in v.lists["fused"]] == pytest.approx([s for _, s in want]), v.qid


def test_batch_runs_feed_eval_bench_and_rerank(batch, tmp_path):
    import shutil

    from mmfuse import Qrels, Run, evaluate

    runs = batch / "runs"
    shutil.copy(CORPUS / "qrels.txt", runs / "qrels.txt")
    p = _cli("eval", CORPUS / "qrels.txt", batch / "fused.trec", runs / "ocr.trec", "--metrics", "recall@1", "--json")
    got = json.loads(p.stdout)
    want = evaluate(Qrels.read(CORPUS / "qrels.txt"), Run.read(batch / "fused.trec"), ["recall@1"])["recall@1"]
    assert list(got.values())[0]["recall@1"] == pytest.approx(want)
    report = tmp_path / "bench.md"
    _cli("bench", runs, "--methods", "rrf,combsum", "--subsets", "all", "--report", report)
    assert "rrf" in report.read_text() and "ocr" in report.read_text()
    # rerank reads the fused run (it fails to connect to a server here, but only after reading the inputs)
    p = _cli("rerank", batch / "fused.trec", "--queries", CORPUS / "queries.tsv", "--videos", CORPUS, "--backend",
             "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0", "--timeout", "1",
             "-o", tmp_path / "rr.trec", check=False)
    assert p.returncode != 0 and "fused.trec" not in p.stderr  # the run was read; the server is what failed


def test_bad_search_input_one_line(index):
    cases = [
        (["search", "   ", "--index", index], "empty"),
        (["search", "x", "--index", index, "--fusion", "rrff"], "did you mean 'rrf'"),
        (["search", "x", "--index", index, "--modalities", "ocr,visual"], "it has"),
        (["search", "--queries", CORPUS / "queries.tsv", "--index", index], "--output"),
    ]
    for args, msg in cases:
        p = _cli(*args, check=False)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and msg in lines[0], (args, p.stderr)


def test_blank_query_in_a_batch_is_a_warning(index, tmp_path):
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"a": "lighthouse", "b": "  "}))
    p = _cli("search", "--queries", q, "--index", index, "-o", tmp_path / "o.trec")
    assert "'b'" in p.stderr and "empty" in p.stderr


def test_a_config_file_selects_modalities_the_index_has(index, tmp_path):
    """A config file's retrievers are defaults, not a demand: a file that names none searches every modality the
    index holds (the default visual and audio retrievers are not an error on a text-only index); one the file names
    but the index lacks is a warning line; a retriever it turns off is left out; --modalities stays strict."""
    plain = json.loads(_cli("search", "fireworks", "--index", index, "--json").stdout)
    only_k = tmp_path / "k.toml"
    only_k.write_text("[search]\nk = 3\n")
    p = _cli("search", "fireworks", "--index", index, "--json", "--config", only_k)
    doc = json.loads(p.stdout)
    assert p.stderr == "" and len(doc["hits"]) == 3
    assert [(h["video_id"], h["score"]) for h in doc["hits"]] == [(h["video_id"], h["score"]) for h in plain["hits"][:3]]

    named = tmp_path / "named.toml"
    named.write_text('[retrievers.visual]\nmodel = "ViT-B-32"\n\n[retrievers.ocr]\nenabled = false\n')
    p = _cli("search", "fireworks", "--index", index, "--json", "--config", named)
    assert p.stderr.strip() == (f"warning: [retrievers] visual: index {index} has no visual modality; "
                                "searching without it")
    mods = {m for h in json.loads(p.stdout)["hits"] for m in h["modalities"]}
    assert mods and "ocr" not in mods and mods <= {"asr", "asr_dense", "meta", "meta_dense"}

    p = _cli("search", "fireworks", "--index", index, "--modalities", "visual", "--config", only_k, check=False)
    assert p.returncode == 2 and "no modality 'visual'" in p.stderr and p.stderr.count("\n") == 1
