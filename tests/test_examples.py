"""Each README example in examples/python runs as written (a fresh interpreter, the repo as working dir)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _pipeline_helpers import REPO, corpus_index

EXAMPLES = REPO / "examples" / "python"


def _run(args, cwd, env_extra=None, timeout=240):
    env = dict(os.environ, **(env_extra or {}))
    env.pop("MMFUSE_VLM_MODEL", None) if not (env_extra or {}).get("MMFUSE_VLM_MODEL") else None
    p = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return corpus_index(tmp_path_factory)


@pytest.mark.slow
def test_search_index_example(index):
    out = _run([EXAMPLES / "search_index.py", index], REPO)
    lines = out.splitlines()
    assert lines[0] == "q1 'lighthouse'"
    assert lines[1].split()[:2] == ["1.", "v01_ball"] and "found by: ocr" in lines[1]  # on-screen text
    q2 = lines.index("q2 'the train to Chicago'")
    assert lines[q2 + 1].split()[:2] == ["1.", "v02_squares"] and "asr" in lines[q2 + 1]  # spoken


@pytest.mark.slow
def test_custom_retriever_example(index):
    out = _run([EXAMPLES / "custom_retriever.py", index], REPO)
    q20 = next(line for line in out.splitlines() if line.startswith("q20 "))
    assert "'v01_ball'" in q20  # only the file-name retriever can find the visual query
    assert "'filename': 1" in out and "'ocr':" in out


def test_fuse_and_rerank_example_fuses_trec_files(tmp_path):
    from mmfuse import Run, fuse

    out = _run([EXAMPLES / "fuse_and_rerank.py", "-o", tmp_path / "fused.trec"], REPO)
    runs = [Run.read(p) for p in sorted((EXAMPLES / "runs").glob("*.trec"))]
    written = Run.read(tmp_path / "fused.trec")
    expect = fuse(runs)
    assert list(written.query_ids) == list(expect.in_natural_order().query_ids)  # writers: natural query order
    for q in expect.query_ids:
        assert [d for d, _ in written.query(q)] == [d for d, _ in expect.query(q)]
        assert [s for _, s in written.query(q)] == pytest.approx([s for _, s in expect.query(q)])
    rows = {line.split()[0]: line for line in out.splitlines() if "R@1" in line}
    assert set(rows) == {"asr_dense", "ocr", "fused"}
    r1 = {k: float(v.split()[2]) for k, v in rows.items()}
    assert r1["fused"] > max(r1["ocr"], r1["asr_dense"])  # 0.75 vs 0.45 / 0.50 on the sample queries


def test_fuse_and_rerank_example_reranks_through_an_openai_server(tmp_path):
    pytest.importorskip("httpx")
    from _fake_openai import FakeOpenAI

    from mmfuse import Run, fuse

    with FakeOpenAI() as srv:
        out = _run([EXAMPLES / "fuse_and_rerank.py", "-o", tmp_path / "reranked.trec"], tmp_path,
                   {"OPENAI_BASE_URL": srv.url, "MMFUSE_VLM_MODEL": "fake-vlm", "OPENAI_API_KEY": "k"})
    assert "reranked:" in out and " 0 kept in incoming order" in out
    assert srv.requests and all(r["model"] == "fake-vlm" for r in srv.requests)
    run = Run.read(tmp_path / "reranked.trec")
    fused = fuse([Run.read(p) for p in sorted((EXAMPLES / "runs").glob("*.trec"))])
    assert run.n_queries == fused.n_queries and len(srv.requests) == sum(fused.counts() > 1) and "reranked" in (tmp_path / "reranked.trec").read_text()
