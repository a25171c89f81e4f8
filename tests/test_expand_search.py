"""Query expansion the way users run it: the installed ``mmfuse search --expand`` against a loopback
OpenAI-compatible server (and a tiny local model) on the sample corpus index. A query that shares no word with any
clip's text finds the clip at rank 1 only when the model's expansion names what the clip holds."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from _fake_openai import FakeOpenAI
from _pipeline_helpers import corpus_index

pytestmark = pytest.mark.slow

MMFUSE = str(Path(sys.executable).parent / "mmfuse")
QUERY = "seaside beacon tower"
TARGET = "v01_ball"  # on-screen LIGHTHOUSE, speech "My grandmother grows tomatoes in her garden.", title "Evening walk"
ANSWERS = {
    "q2e": '["the lighthouse", "a quiet evening walk", "grandmother grows tomatoes in her garden"]',
    "hyde": "1. LIGHTHOUSE written on the screen during a quiet evening walk.\n"
            "2. My grandmother grows tomatoes in her garden.",
    "lamer": "1. LIGHTHOUSE\n2. Evening walk: notes from a quiet stroll.\n3. My grandmother grows tomatoes in her garden.",
}


def answer(prompt: str) -> str:
    """What the fake model answers: the method is told by its prompt; "refuse me" gets a refusal."""
    if "refuse me" in prompt:
        return "I'm sorry, but I cannot help with that request."
    if QUERY not in prompt:
        return "1. volcano\n2. lava flows down the mountain"
    method = ("q2e" if "JSON list" in prompt else "lamer" if "keyword search of the collection" in prompt else "hyde")
    return ANSWERS[method]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return corpus_index(tmp_path_factory)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI(text=answer, lifetime=1200) as srv:
        yield srv


@pytest.fixture()
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MMFUSE_LLM_", "OPENAI_"))}
    e["MMFUSE_CACHE_DIR"] = str(tmp_path / "cache-home")  # nothing lands in the real ~/.cache
    return e


def _cli(env, *args, code=0):
    p = subprocess.run([MMFUSE, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == code, p.stderr
    return p


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_the_query_shares_no_word_with_any_clip_but_the_expansions_do(index):
    from mmfuse.store.lance import IndexStore

    store = IndexStore.open(index)
    seg, meta = store.segments(), store.meta_rows()
    texts = [str(t) for c in ("ocr_text", "asr_text") for t in seg[c]] + [str(t) for t in meta["text"]]
    corpus = set().union(*(_words(t) for t in texts))
    target = set().union(*(_words(str(t)) for c in ("ocr_text", "asr_text") for s, t in zip(seg["segment_id"], seg[c])
                           if str(s).startswith(TARGET)))
    assert not _words(QUERY) & corpus
    for method, text in ANSWERS.items():
        assert _words(text) & target, method


@pytest.fixture(scope="module")
def unexpanded(index):
    """The query's hits without expansion (the search path ``mmfuse search`` runs; test_search_path shows they are
    the CLI's)."""
    from mmfuse.pipeline import searcher

    return searcher(index).run({"q": QUERY}, k=3).as_dict("q")


def test_expansion_finds_the_clip_at_rank_one(index, server, env, unexpanded, tmp_path):
    assert unexpanded["hits"][0]["video_id"] != TARGET and "expansion" not in unexpanded
    before = len(server.requests)
    p = _cli(env, "search", QUERY, "--index", index, "--json", "--per-modality", "--k", "3", "--expand", "q2e",
             "--llm-base-url", server.url, "--llm-model", "fake-llm", "--llm-cache", tmp_path / "llm")
    doc = json.loads(p.stdout)
    assert doc["hits"][0]["video_id"] == TARGET
    assert len(server.requests) == before + 1 and server.requests[-1]["model"] == "fake-llm"
    ex = doc["expansion"]
    text = resources.files("mmfuse.expand").joinpath("templates", "q2e.txt").read_text("utf-8")
    assert ex["template"] == {"source": "builtin:q2e", "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert ex["method"] == "q2e" and ex["texts"][0] == "the lighthouse" and not ex["fallback"]
    assert ex["prompt_tokens"] > 0 and ex["completion_tokens"] == len(ANSWERS["q2e"].split())  # the fake's count
    assert "ocr@q2e" in doc["per_modality"] and "meta_dense@q2e" in doc["per_modality"]
    assert doc["hits"][0]["modalities"]["ocr@q2e"]["segment_id"].startswith(TARGET)
    assert doc["hits"][0]["modalities"]["ocr@q2e"]["text"] == "LIGHTHOUSE"


@pytest.mark.parametrize("method", ["hyde", "lamer"])
def test_passage_expansions_find_the_clip_through_the_search_path(index, server, unexpanded, tmp_path, method):
    # the pipeline `mmfuse search` builds (searcher), in process: the models stay loaded between methods
    from mmfuse.expand import build_expander
    from mmfuse.pipeline import searcher

    before = len(server.requests)
    ex = build_expander(method, model="fake-llm", base_url=server.url, cache=None)
    res = searcher(index, expand=ex).run({"q": QUERY}, k=3)
    assert res.hits("q")[0]["video_id"] == TARGET and not res.warnings
    assert [r.name for r in res.runs][-5:] == [f"{m}@{method}" for m in ("ocr", "asr", "asr_dense", "meta",
                                                                          "meta_dense")]
    assert len(server.requests) == before + 1
    if method == "lamer":  # the prompt carried the first lexical retrieval's hits: none (no shared word)
        prompt = server.requests[-1]["messages"][0]["content"][0]["text"]
        assert "(the keyword search found nothing)" in prompt
    else:
        assert res.expansion.queries["q"].texts == ["LIGHTHOUSE written on the screen during a quiet evening walk.",
                                                    "My grandmother grows tomatoes in her garden."]


def test_batch_search_writes_expanded_runs_falls_back_and_caches(index, server, env, tmp_path):
    from mmfuse import Pipeline, Run
    from mmfuse.expand import build_expander

    queries = tmp_path / "q.tsv"
    queries.write_text(f"q1\t{QUERY}\nq2\trefuse me please\nq3\terupting mountain\n")
    args = ["search", "--queries", queries, "--index", index, "-o", tmp_path / "fused.trec", "--per-modality-dir",
            tmp_path / "runs", "--expand", "q2e", "--llm-base-url", server.url,
            "--llm-model", "fake-llm", "--llm-cache", tmp_path / "llm"]
    before = len(server.requests)
    p = _cli(env, *args)
    assert len(server.requests) == before + 3
    assert "warning: query 'q2': q2e expansion skipped (the model refused); searched without it" in p.stderr
    assert "expanded with q2e (builtin:q2e" in p.stderr and "2/3 queries expanded" in p.stderr
    written = {f.name for f in (tmp_path / "runs").iterdir()}
    assert {"ocr@q2e.trec", "asr@q2e.trec", "asr_dense@q2e.trec", "meta_dense@q2e.trec", "expansion.json"} <= written
    rec = json.loads((tmp_path / "runs" / "expansion.json").read_text())
    assert rec["fallbacks"] == ["q2"] and rec["fusion"] == "default" and rec["stats"]["calls"] == 3
    assert rec["queries"]["q1"]["texts"][0] == "the lighthouse" and rec["queries"]["q2"]["fallback"]

    fused = Run.read(tmp_path / "fused.trec")
    assert fused.query("q1")[0][0] == TARGET
    # one path: the library with the same expander gives the same run; q2 is exactly the unexpanded search
    ex = build_expander("q2e", model="fake-llm", base_url=server.url, cache=tmp_path / "llm")
    texts = {"q1": QUERY, "q2": "refuse me please", "q3": "erupting mountain"}
    lib = Pipeline(index=index, expand=ex).run(texts)
    plain = Pipeline(index=index).run(texts)  # the same batch: dense query vectors equal to the last bit
    for q in ("q1", "q2", "q3"):
        assert [d for d, _ in fused.query(q)] == [d for d, _ in lib.final.query(q)], q
        assert [s for _, s in fused.query(q)] == pytest.approx([s for _, s in lib.final.query(q)], rel=1e-6), q
    assert lib.final.query("q2") == plain.final.query("q2")

    # a re-run is answered from the cache: no request, the same output
    first = (tmp_path / "fused.trec").read_bytes()
    n = len(server.requests)
    p = _cli(env, *args)
    assert len(server.requests) == n and "3 cache hit(s)" in p.stderr
    assert (tmp_path / "fused.trec").read_bytes() == first


def test_expansion_with_a_local_tiny_model(index, tiny_llm_dir):
    # random weights: the answer is noise, but the prompt, the generation, the token counts and the search are real
    # (what `mmfuse search --expand hyde --llm-model DIR` builds: a folder is a local model)
    from mmfuse.expand import build_expander
    from mmfuse.pipeline import searcher

    res = searcher(index, expand=build_expander("hyde", model=str(tiny_llm_dir), cache=None, device="cpu")).run(
        {"q": QUERY}, k=3)
    ex = res.as_dict("q")["expansion"]
    assert res.hits("q") and ex["model"]["backend"] == "transformers" and ex["model"]["model"] == str(tiny_llm_dir)
    assert ex["prompt_tokens"] > 50 and ex["completion_tokens"] >= 1 and not ex["cached"]
    assert [r.name for r in res.runs][-1] == "meta_dense@hyde"


def test_expansion_mistakes_are_one_line(index, env, tmp_path):
    p = _cli(env, "search", QUERY, "--index", index, "--expand", "q2e", code=2)
    assert "no language model: pass --llm-base-url URL --llm-model NAME" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = _cli(env, "search", QUERY, "--index", index, "--expand-n", "3", code=2)
    assert "--expand-n go(es) with --expand q2e|hyde|lamer" in p.stderr
    p = _cli(env, "search", QUERY, "--index", index, "--expand", "hype", code=2)
    assert "hype" in p.stderr and "hyde" in p.stderr
    config = tmp_path / "m.toml"  # --expand none turns off the config's expansion (no server needed then)
    config.write_text(f'[index]\npath = "{index}"\n[retrievers.visual]\nenabled = false\n'
                      '[retrievers.audio]\nenabled = false\n[expand]\nmethod = "q2e"\n')
    p = _cli(env, "search", QUERY, "--config", config, "--json", "--expand", "none")
    assert "expansion" not in json.loads(p.stdout)


def test_serve_expands_with_the_config(index, server, env, tmp_path):
    """``mmfuse serve --config`` with an ``[expand]`` table expands every query as ``mmfuse search`` does, over
    real loopback HTTP: the clip is found at rank 1 and the answer carries the expansion."""
    import httpx
    from test_serve import start, stop

    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'[expand]\nmethod = "q2e"\nmodel = "fake-llm"\nbase_url = "{server.url}"\n'
                   f'cache = "{tmp_path / "llm"}"\n')
    before = len(server.requests)
    srv = start(index, tmp_path, "--config", str(cfg), env={k: v for k, v in env.items() if k != "MMFUSE_CACHE_DIR"})
    try:
        doc = srv.get("/api/search", params={"q": QUERY, "k": 3}).json()
        assert "hits" in doc, doc
        assert doc["hits"][0]["video_id"] == TARGET
        assert doc["expansion"]["method"] == "q2e" and doc["expansion"]["texts"][0] == "the lighthouse"
        assert any(QUERY in json.dumps(r) for r in server.requests[before:])  # asked by the server, not by the test
        # the batch endpoint expands each query of the batch
        got = httpx.post(srv.url + "/api/search", json={"queries": {"a": QUERY}, "k": 3}, timeout=120).json()
        a = got["a"] if "a" in got else got["results"]["a"]
        assert a["hits"][0]["video_id"] == TARGET
    finally:
        stop(srv)
