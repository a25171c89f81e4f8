"""OpenAI-compatible backend against a loopback server: real rankings, malformed answers, errors, limits."""

import time

import pytest
from _fake_openai import FakeOpenAI

from mmfuse import Run
from mmfuse.errors import BackendError, ParameterError
from mmfuse.rerankers import VLMReranker, get_backend

pytest.importorskip("httpx")
pytestmark = pytest.mark.slow  # grids from real clips

COLOURS = ["red", "green", "blue", "yellow", "white", "purple"]
RUN = Run.from_dict({"q1": {c: 10.0 - i for i, c in enumerate(COLOURS)},
                     "q2": {c: 10.0 - i for i, c in enumerate(reversed(COLOURS))}})
TEXTS = {"q1": "something purple", "q2": "a blue sky"}


def _rerank(srv, clips, **kw):
    opts = dict(timeout=5.0, retries=2, backoff=0.01, concurrency=1)
    opts.update(kw)
    be = get_backend("openai", "fake-vlm", base_url=srv.url, **opts)
    rr = VLMReranker(be, top=6, cell=32)
    return rr.rerank(TEXTS, RUN, clips), rr, be


def _docs(run, q):
    return [d for d, _ in run.query(q)]


def test_good_rankings_put_the_right_video_first(rerank_clips):
    with FakeOpenAI() as srv:
        out, rr, _ = _rerank(srv, rerank_clips)
    assert _docs(out, "q1")[0] == "purple" and _docs(out, "q2")[0] == "blue"
    assert rr.stats.parse.clean == 2
    body = srv.requests[0]
    assert body["model"] == "fake-vlm" and body["temperature"] == 0.0
    parts = body["messages"][0]["content"]
    assert sum(p["type"] == "image_url" for p in parts) == 6
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts if p["type"] == "image_url")


@pytest.mark.parametrize("mode,repaired,failed", [("prose", 1, 0), ("truncated", 1, 0), ("garbage", 0, 1),
                                                  ("empty", 0, 1)])
def test_malformed_answers_survive(rerank_clips, mode, repaired, failed):
    with FakeOpenAI(script=[mode]) as srv:
        out, rr, _ = _rerank(srv, rerank_clips)
    assert (rr.stats.parse.repaired, rr.stats.parse.failed, rr.stats.failed) == (repaired, failed, 0)
    first = _docs(out, "q1")
    assert sorted(first) == sorted(COLOURS)
    if mode == "garbage" or mode == "empty":
        assert first == COLOURS  # incoming order
    else:
        assert first[0] == "purple"
    assert _docs(out, "q2")[0] == "blue"  # the next answer is good again


def test_http_500_is_retried(rerank_clips):
    with FakeOpenAI(script=["http500", "badjson"]) as srv:
        out, rr, be = _rerank(srv, rerank_clips)
    assert _docs(out, "q1")[0] == "purple" and be.retried == 2 and rr.stats.failed == 0


def test_persistent_errors_keep_incoming_order(rerank_clips):
    with FakeOpenAI(script=["http500"] * 3) as srv:
        out, rr, be = _rerank(srv, rerank_clips)
    assert _docs(out, "q1") == COLOURS and _docs(out, "q2")[0] == "blue"
    assert rr.stats.failed == 1 and "HTTP 500 after 3 attempt(s)" in rr.stats.failures[0][1]
    with FakeOpenAI(script=["http400"]) as srv:  # a client error is not retried
        out, rr, be = _rerank(srv, rerank_clips)
    assert be.requests == 2 and rr.stats.failed == 1 and "HTTP 400" in rr.stats.failures[0][1]


def test_slow_server_times_out(rerank_clips):
    with FakeOpenAI(default="slow", slow_seconds=1.5) as srv:
        t0 = time.perf_counter()
        out, rr, be = _rerank(srv, rerank_clips, timeout=0.3, retries=1)
        took = time.perf_counter() - t0
    assert rr.stats.failed == 2 and _docs(out, "q1") == COLOURS and "timed out" in rr.stats.failures[0][1]
    assert took < 4.0  # bounded: 2 queries x 2 attempts x 0.3 s, not the server's 1.5 s each


def test_concurrency_limit(rerank_clips):
    run = Run.from_dict({f"q{i}": {c: 10.0 - j for j, c in enumerate(COLOURS[:2])} for i in range(6)})
    with FakeOpenAI(delay=0.2) as srv:
        be = get_backend("openai", "m", base_url=srv.url, concurrency=2)
        VLMReranker(be, top=2, cell=32).rerank({f"q{i}": "red" for i in range(6)}, run, rerank_clips)
    assert len(srv.requests) == 6 and srv.max_in_flight == 2


def test_env_and_key(rerank_clips, monkeypatch):
    with FakeOpenAI() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        be = get_backend("openai", "m")
        VLMReranker(be, top=2, cell=32).rerank({"q1": "red"}, RUN.subset(["q1"]), rerank_clips)
    assert srv.headers[0].get("Authorization") == "Bearer sk-test"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ParameterError, match="OPENAI_BASE_URL"):
        get_backend("openai", "m")
    with pytest.raises(ParameterError, match="--model"):
        get_backend("openai", None, base_url="http://127.0.0.1:9/v1")


def test_pointwise_logprobs(rerank_clips):
    with FakeOpenAI() as srv:
        be = get_backend("openai", "m", base_url=srv.url, mode="pointwise")
        out = VLMReranker(be, top=6, cell=32).rerank(TEXTS, RUN, rerank_clips)
    assert _docs(out, "q1")[0] == "purple" and _docs(out, "q2")[0] == "blue"
    assert all(r["max_tokens"] == 1 and r["logprobs"] for r in srv.requests) and len(srv.requests) == 12


def test_unreachable_server_is_a_backend_error():
    be = get_backend("openai", "m", base_url="http://127.0.0.1:9/v1", retries=0, timeout=1.0)
    with pytest.raises(BackendError, match="attempt"):
        be.complete([("text", "hi")], 5)
