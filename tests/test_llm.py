"""The text-generation interface (mmfuse.llm): list parsing, prompt templates, the answer cache, the OpenAI-compatible
backend over a loopback server (good answers, errors, retries, timeouts, concurrency, cache) and the local
transformers backend on a tiny random Qwen2 (and the tiny Qwen2-VL)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from importlib import resources

import pytest
from _fake_openai import FakeOpenAI

from mmfuse.errors import BackendError, ParameterError
from mmfuse.llm import AnswerCache, TextTemplate, load_llm, parse_list
from mmfuse.llm.http import OpenAIChat

# ------------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text, items, form", [
    ('["a lighthouse", "a beacon on the coast"]', ["a lighthouse", "a beacon on the coast"], "json"),
    ('Sure, here they are:\n```json\n["one event", "two events"]\n```\nHope this helps', ["one event", "two events"],
     "json"),
    ('{"queries": ["first query", "second query"]}', ["first query", "second query"], "json"),
    ('[{"query": "first query"}, {"query": "second query"}]', ["first query", "second query"], "json"),
    ("Here are three sub-queries:\n1. red ball\n2) blue sky\n(3) green grass", ["red ball", "blue sky", "green grass"],
     "list"),
    ("- **red ball**\n* \"blue sky\"\n• green grass", ["red ball", "blue sky", "green grass"], "list"),
    ("Query 1: red ball\nQuery 2: blue sky", ["red ball", "blue sky"], "list"),
    ("A red ball rolls across the floor.\n\nA child laughs.", ["A red ball rolls across the floor.", "A child laughs."],
     "lines"),
])
def test_parse_list_forms(text, items, form):
    got, info = parse_list(text)
    assert got == items and info.form == form and not info.failed


def test_parse_list_repairs_and_failures():
    got, info = parse_list("1. red ball\n2. Red Ball\n3. 42\n4. blue sky\n5. green grass", limit=2)
    assert got == ["red ball", "blue sky"] and info.dropped == 3 and not info.clean  # repeat, wordless, past limit
    for text in ("", "   ", None, "1. 2. 3.", "I'm sorry, but I can't help with that.", "As an AI, I cannot browse."):
        got, info = parse_list(text)
        assert got == [] and info.failed, text
    assert parse_list("I am unable to help with that, sorry.")[1].refused


# ---------------------------------------------------------------------------------------------------- templates


def test_builtin_templates_record_their_hash():
    t = TextTemplate.load("q2e", "mmfuse.expand", builtins=("q2e", "hyde", "lamer"), allowed=("query", "n"),
                          required=("query",))
    text = resources.files("mmfuse.expand").joinpath("templates", "q2e.txt").read_text("utf-8")
    assert t.record() == {"source": "builtin:q2e", "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert '"volcano erupting"' in t.render(query="volcano erupting", n=3) and "3 short" in t.render(query="x", n=3)


def test_template_files_are_checked(tmp_path):
    kw = dict(builtins=("q2e",), allowed=("query", "n"), required=("query",))
    p = tmp_path / "mine.txt"
    p.write_text("Expand {query} into {n} queries, as {{\"json\": true}}")
    t = TextTemplate.load(str(p), "mmfuse.expand", **kw)
    assert t.source == str(p) and t.render(query="q", n=2) == 'Expand q into 2 queries, as {"json": true}'
    p.write_text("Expand {query} with {colour}")
    with pytest.raises(ParameterError, match=r"mine.txt: unknown placeholder \{colour\}; allowed: \{n\}, \{query\}"):
        TextTemplate.load(str(p), "mmfuse.expand", **kw)
    p.write_text("Expand into {n} queries")
    with pytest.raises(ParameterError, match=r"mine.txt: the template needs the placeholder \{query\}"):
        TextTemplate.load(str(p), "mmfuse.expand", **kw)
    p.write_text("Expand {query")
    with pytest.raises(ParameterError, match="mine.txt: not a valid template"):
        TextTemplate.load(str(p), "mmfuse.expand", **kw)
    with pytest.raises(ParameterError, match="does not exist"):
        TextTemplate.load(str(tmp_path / "nope.txt"), "mmfuse.expand", **kw)
    with pytest.raises(ParameterError, match="did you mean 'q2e'"):
        TextTemplate.load("q2f", "mmfuse.expand", **kw)


# -------------------------------------------------------------------------------------------------------- cache


def test_cache_keys_and_entries(tmp_path):
    from PIL import Image

    cache = AnswerCache(tmp_path / "c")
    key = cache.key({"model": "m"}, [("text", "hello")], {"max_tokens": 5, "temperature": 0.0})
    others = [cache.key({"model": "m2"}, [("text", "hello")], {"max_tokens": 5, "temperature": 0.0}),
              cache.key({"model": "m"}, [("text", "hello!")], {"max_tokens": 5, "temperature": 0.0}),
              cache.key({"model": "m"}, [("text", "hello")], {"max_tokens": 6, "temperature": 0.0}),
              cache.key({"model": "m"}, [("text", "hello")], {"max_tokens": 5, "temperature": 0.5})]
    assert len({key, *others}) == 5
    red, blue = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))
    assert cache.key({}, [("image", red)], {}) == cache.key({}, [("image", red.copy())], {})
    assert cache.key({}, [("image", red)], {}) != cache.key({}, [("image", blue)], {})
    assert cache.get(key) is None
    cache.put(key, {"text": "hi", "prompt_tokens": 3})
    assert cache.get(key)["text"] == "hi" and len(cache) == 1
    cache.path(key).write_text("{truncated")  # a damaged entry is a miss, not an error
    assert cache.get(key) is None


def test_cache_writes_from_many_threads_leave_whole_entries(tmp_path):
    cache = AnswerCache(tmp_path / "c")
    key = cache.key({"model": "m"}, [("text", "x")], {})
    text = "answer " * 5000

    def write():
        for _ in range(20):
            cache.put(key, {"text": text})
            got = cache.get(key)
            assert got is not None and got["text"] == text

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.json"]  # no temp file left behind


# ------------------------------------------------------------------------------------------- OpenAI-compatible


def _chat(srv, tmp_path=None, **kw):
    opts = dict(timeout=5.0, retries=2, backoff=0.01, concurrency=2)
    opts.update(kw)
    return OpenAIChat("fake-llm", srv.url, cache=AnswerCache(tmp_path / "cache") if tmp_path else None, **opts)


def test_answers_with_usage_and_cache(tmp_path):
    with FakeOpenAI(text={"beacon": '["a lighthouse"]'}) as srv:
        llm = _chat(srv, tmp_path)
        c = llm.generate(["seaside beacon", "nothing scripted"], max_tokens=20)
        assert [x.text for x in c] == ['["a lighthouse"]', ""] and all(x.ok and not x.cached for x in c)
        assert (c[0].prompt_tokens, c[0].completion_tokens) == (2, 2)  # the server's usage (whitespace words)
        body = next(b for b in srv.requests if "beacon" in json.dumps(b))  # the two went out in parallel
        assert body["model"] == "fake-llm" and body["max_tokens"] == 20 and body["temperature"] == 0.0
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "seaside beacon"}]}]
        again = llm.generate(["seaside beacon"], max_tokens=20)[0]
        assert again.cached and again.text == c[0].text and again.prompt_tokens == 2 and len(srv.requests) == 2
        other = llm.generate(["seaside beacon"], max_tokens=21)[0]  # other settings: another answer
        assert not other.cached and len(srv.requests) == 3
    s = llm.stats
    assert (s.calls, s.cache_hits, s.failures, s.prompt_tokens, s.completion_tokens) == (3, 1, 0, 6, 4)


def test_errors_retries_and_what_is_cached(tmp_path):
    with FakeOpenAI(script=["http500", "badjson"], text={"q": "1. fine"}) as srv:
        llm = _chat(srv, tmp_path)
        c = llm.generate(["q"])[0]
        assert c.ok and c.text == "1. fine" and llm.retried == 2 and llm.requests == 3
    with FakeOpenAI(script=["http400"], text={"q": "1. fine"}) as srv:
        llm = _chat(srv, tmp_path / "other")
        c = llm.generate(["q"])[0]
        assert not c.ok and "HTTP 400" in c.error and llm.requests == 1  # a client error is not retried
        assert llm.generate(["q"])[0].ok and len(srv.requests) == 2  # the failure was not cached
        with pytest.raises(BackendError, match="HTTP 400"):
            srv.script = ["http400"]
            llm.complete("other prompt")


def test_slow_server_times_out_and_concurrency_is_bounded():
    with FakeOpenAI(default="slow", slow_seconds=1.5, text={"q": "x"}) as srv:
        llm = _chat(srv, timeout=0.3, retries=1)
        t0 = time.perf_counter()
        c = llm.generate(["q1", "q2"])
        took = time.perf_counter() - t0
    assert all("timed out after 2 attempt(s)" in x.error for x in c)
    assert took < 3.0  # 2 prompts in parallel x 2 attempts x 0.3 s, not the server's 1.5 s each
    with FakeOpenAI(delay=0.2, text={"q": "x"}) as srv:
        llm = _chat(srv, concurrency=3)
        assert all(x.ok for x in llm.generate([f"q{i}" for i in range(9)]))
    assert len(srv.requests) == 9 and srv.max_in_flight == 3


def test_load_llm_picks_the_backend_from_flags_and_environment(monkeypatch, tmp_path):
    for v in ("MMFUSE_LLM_BASE_URL", "MMFUSE_LLM_MODEL", "MMFUSE_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(ParameterError, match="no language model: pass --llm-base-url URL --llm-model NAME"):
        load_llm("some-model")
    with pytest.raises(ParameterError, match="--llm-model is required with a server"):
        load_llm(base_url="http://127.0.0.1:9/v1")
    with FakeOpenAI(text={"hi": "hello"}) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the generic variable loses to ours
        monkeypatch.setenv("MMFUSE_LLM_BASE_URL", srv.url + "/")
        monkeypatch.setenv("MMFUSE_LLM_MODEL", "served-name")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        llm = load_llm(cache=tmp_path / "c")
        assert isinstance(llm, OpenAIChat) and llm.complete("hi") == "hello"
    assert srv.requests[0]["model"] == "served-name" and srv.headers[0]["Authorization"] == "Bearer sk-test"
    assert llm.spec == {"backend": "openai", "model": "served-name"} and llm.cache.root == tmp_path / "c"
    assert load_llm("m", base_url="http://x/v1", cache=None).cache is None


# ------------------------------------------------------------------------------------------------ transformers


@pytest.fixture(scope="module")
def tiny_llm(tiny_llm_dir, tmp_path_factory):
    from mmfuse.llm.local import TransformersChat

    return TransformersChat(str(tiny_llm_dir), device="cpu", batch_size=4,
                            cache=AnswerCache(tmp_path_factory.mktemp("llm-cache")))


@pytest.mark.slow
def test_local_model_loads_by_folder_and_counts_tokens(tiny_llm, tiny_llm_dir):
    assert type(tiny_llm.model).__name__ == "Qwen2ForCausalLM" and not tiny_llm.reads_images
    assert tiny_llm.identity["model"] == str(tiny_llm_dir) and len(tiny_llm.identity["weights"]) == 16
    prompt = "Break the query down into short search queries: lighthouse"
    c = tiny_llm.generate([prompt], max_tokens=7)[0]
    chat = tiny_llm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                  tokenize=False)
    assert c.ok and c.prompt_tokens == len(tiny_llm.tokenizer(chat)["input_ids"])
    assert 1 <= c.completion_tokens <= 7 and isinstance(c.text, str)
    assert load_llm(str(tiny_llm_dir), cache=None, device="cpu").name == "transformers"  # a folder: local


@pytest.mark.slow
def test_local_batches_equal_one_by_one_and_cache(tiny_llm):
    prompts = ["a", "Write short passages about a video: a caption describing what it shows", "lighthouse keeper"]
    one = [tiny_llm.generate([p], max_tokens=6)[0] for p in prompts]  # cached from here on
    fresh = tiny_llm.generate_batch([[("text", p)] for p in prompts], 6)  # left-padded together, no cache
    assert [c.text for c in fresh] == [c.text for c in one]
    assert [c.prompt_tokens for c in fresh] == [c.prompt_tokens for c in one]
    hits = tiny_llm.generate(prompts, max_tokens=6)
    assert all(c.cached for c in hits) and [c.text for c in hits] == [c.text for c in one]


@pytest.mark.slow
def test_text_model_reads_no_images_and_vlm_folder_loads_as_vlm(tiny_llm, tiny_vlm_dir):
    from PIL import Image

    c = tiny_llm.generate([[("text", "what is this?"), ("image", Image.new("RGB", (28, 28)))]])[0]
    assert not c.ok and "reads no images" in c.error
    vlm = load_llm(str(tiny_vlm_dir), cache=None, device="cpu")
    assert vlm.reads_images and type(vlm.model).__name__ == "Qwen2VLForConditionalGeneration"
    c = vlm.generate(["a text-only prompt", [("text", "and one with a picture"), ("image", Image.new("RGB", (56, 56)))]],
                     max_tokens=4)
    assert all(x.ok and x.prompt_tokens > 0 for x in c) and c[1].prompt_tokens > c[0].prompt_tokens


def test_unloadable_local_model_is_one_error(tmp_path):
    from mmfuse.errors import ModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    llm = load_llm(str(tmp_path), cache=None, lazy=True)  # settings checked, weights not loaded yet
    with pytest.raises(ModelError, match="cannot load language model"):
        llm.generate(["hi"])
