"""Pipeline: retrievers -> fusion -> reranker in Python and from a config; hand-computed fusion oracles."""

from __future__ import annotations

import textwrap

import pytest
from _pipeline_helpers import corpus_index

from mmfuse import Pipeline, Run
from mmfuse.errors import ConfigError, InputError, ParameterError
from mmfuse.fusion import fuse


class Fixed:
    """A retriever that returns a fixed run (whatever the query texts), cut to k."""

    modality = "test"

    def __init__(self, name, data):
        self.name = name
        self.data = data
        self.calls = []

    def search(self, queries, k=100):
        self.calls.append((dict(queries), k))
        return Run.from_dict({q: d for q, d in self.data.items() if q in queries}, name="ignored").cut(k)


A = Fixed("a", {"q1": {"x": 3.0, "y": 2.0, "z": 1.0}, "q2": {"x": 1.0, "y": 5.0}})
B = Fixed("b", {"q1": {"y": 10.0, "z": 0.0}, "q2": {"x": 4.0, "y": 2.0}})
QUERIES = {"q1": "first", "q2": "second"}


def test_combsum_minmax_matches_hand_computation():
    pipe = Pipeline(retrievers=[A, B], fusion="combsum", fusion_params={}, norm="min-max")
    res = pipe.run(QUERIES, k=3)
    # q1: a -> x 1, y .5, z 0 ; b -> y 1, z 0  => y 1.5, x 1, z 0
    # q2: a -> x 0, y 1 ; b -> x 1, y 0        => tie 1 and 1, trec tie-break: doc id desc => y, x
    assert res.final.query("q1") == [("y", 1.5), ("x", 1.0), ("z", 0.0)]
    assert [d for d, _ in res.final.query("q2")] == ["y", "x"]
    assert [r.name for r in res.runs] == ["a", "b"] and res.reranked is None
    assert pipe.last is res and A.calls[-1] == (QUERIES, 100)  # each retriever asked for `depth` candidates


def test_default_fusion_is_the_library_default_and_search_returns_final():
    pipe = Pipeline(retrievers=[A, B])
    run = pipe.search(QUERIES, k=2)
    ref = fuse([A.search(QUERIES).with_name("a"), B.search(QUERIES).with_name("b")], depth=100).cut(2)
    assert run.to_dict() == ref.to_dict()
    assert pipe.last.final is run and set(pipe.last.by_name()) == {"a", "b", "fused"}


def test_rrf_params_pass_through():
    res = Pipeline(retrievers=[A, B], fusion="rrf", fusion_params={"k": 1}).run(QUERIES, k=5)
    # q1 ranks: a x1 y2 z3 ; b y1 z2 => y 1/3+1/2, x 1/2, z 1/4+1/3
    got = dict(res.final.query("q1"))
    assert got == pytest.approx({"y": 1 / 3 + 1 / 2, "x": 1 / 2, "z": 1 / 4 + 1 / 3})


def test_queries_answered_by_different_retrievers_follow_the_coverage_rule():
    # the one rule, inside fuse(): each query is fused over the runs that answered it, on the method's scale
    only_a = Fixed("a", {"q1": {"x": 2.0, "y": 1.0}})
    only_b = Fixed("b", {"q2": {"u": 1.0, "v": 3.0}})
    direct = fuse([only_a.search(QUERIES), only_b.search(QUERIES)], method="rrf", queries=["q1", "q2"])
    res = Pipeline(retrievers=[only_a, only_b], fusion="rrf").run(QUERIES, k=5)
    assert res.final.query("q1") == [("x", 1 / 61), ("y", 1 / 62)]  # RRF scores, not a's raw 2.0 and 1.0
    assert res.final.query("q2") == [("v", 1 / 61), ("u", 1 / 62)]
    assert res.final.to_dict() == direct.to_dict()
    assert list(res.final.query_ids) == ["q1", "q2"]
    assert [list(r.query_ids) for r in res.runs] == [["q1", "q2"], ["q1", "q2"]]  # every run has every query


def test_empty_queries_error_alone_and_warn_in_a_batch():
    with pytest.raises(InputError, match="query '0' is empty"):
        Pipeline(retrievers=[A]).run("   ")
    res = Pipeline(retrievers=[A, B]).run({"q1": "x", "blank": " \t"}, k=3)
    assert any("'blank'" in w for w in res.warnings)
    assert list(res.final.query_ids) == ["q1", "blank"] and res.final.query("blank") == []


def test_callable_fusion_and_weights_count_checked():
    res = Pipeline(retrievers=[A, B], fusion=lambda runs: runs[1]).run(QUERIES, k=1)
    assert res.final.query("q1") == [("y", 10.0)]
    with pytest.raises(ParameterError, match="2 retrievers"):
        Pipeline(retrievers=[A, B], fusion="wsum", weights=[1.0]).run(QUERIES)


def test_bad_arguments_fail_early_with_one_line():
    with pytest.raises(ParameterError, match="did you mean"):
        Pipeline(retrievers=[A], fusion="combsun")
    with pytest.raises(ParameterError, match="index"):
        Pipeline(retrievers=["ocr"])
    with pytest.raises(ParameterError, match="no search"):
        Pipeline(retrievers=[object()])
    with pytest.raises(ParameterError, match="k must be >= 1"):
        Pipeline(retrievers=[A]).run(QUERIES, k=0)


class Reverse:
    """A reranker backend (the RerankBackend protocol) that puts the incoming order upside down."""

    name = "reverse"

    def __init__(self):
        self.seen = []

    def rank(self, query, candidates, metadata):
        self.seen.append((query, [c.doc_id for c in candidates], [c.image.size for c in candidates]))
        return list(range(len(candidates)))[::-1]


def test_vlm_reranker_reorders_the_fused_top(rerank_clips):
    from mmfuse.rerankers import VLMReranker

    ret = Fixed("colours", {"q1": {"red": 3.0, "green": 2.0, "blue": 1.0, "white": 0.5}})
    backend = Reverse()
    rr = VLMReranker(backend, top=3, window=3, step=1, grid=(1, 2), cell=32)
    res = Pipeline(retrievers=[ret], reranker=rr, videos=rerank_clips).run({"q1": "a red video"}, k=4)
    assert [d for d, _ in res.fused.query("q1")] == ["red", "green", "blue", "white"]
    assert [d for d, _ in res.final.query("q1")] == ["blue", "green", "red", "white"]  # top 3 reversed, tail kept
    query, docs, sizes = backend.seen[0]
    assert query == "a red video" and docs == ["red", "green", "blue"] and sizes == [(64, 32)] * 3
    assert res.rerank_stats.reranked == 1 and "rerank" in res.timings


# ---- over a real index (the sample corpus, indexed once per session) -----------------------------------------
@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return corpus_index(tmp_path_factory)


@pytest.mark.slow
def test_named_modalities_and_custom_retriever_over_the_index(index):
    extra = Fixed("extra", {"q": {"v03_triangle": 1.0}})
    pipe = Pipeline(retrievers=["ocr", "asr", "nope", extra], index=index)
    res = pipe.run({"q": "lighthouse"}, k=3)
    assert [r.name for r in res.runs] == ["ocr", "asr", "extra"]
    assert res.runs[0].query("q")[0][0] == "v01_ball"
    assert {d for d, _ in res.final.query("q")} >= {"v01_ball", "v03_triangle"}
    assert any("'nope' skipped: not in index" in w for w in res.warnings)


@pytest.mark.slow
def test_from_config_builds_retrievers_fusion_and_plugin(index, tmp_path, monkeypatch):
    plug = tmp_path / "plugdir"
    plug.mkdir()
    (plug / "my_plugin.py").write_text(textwrap.dedent("""
        from mmfuse import Run

        class Always:
            modality = "custom"

            def __init__(self, video="v07_court", name="always"):
                self.video, self.name = video, name

            def search(self, queries, k=100):
                return Run.from_dict({q: {self.video: 1.0} for q in queries}, name=self.name)
    """))
    monkeypatch.syspath_prepend(str(plug))
    cfg = tmp_path / "mmfuse.toml"
    cfg.write_text(textwrap.dedent(f"""
        [index]
        path = "{index}"
        [retrievers.visual]
        enabled = false
        [retrievers.audio]
        enabled = false
        [retrievers.meta]
        enabled = false
        [retrievers.asr]
        dense = true
        [retrievers.mine]
        kind = "plugin"
        ref = "my_plugin:Always"
        params = {{ video = "v05_silent" }}
        [fusion]
        method = "rrf"
        params = {{ k = 10 }}
        depth = 20
    """))
    pipe = Pipeline.from_config(cfg)
    res = pipe.run({"q": "grandmother grows tomatoes"}, k=3)
    assert [r.name for r in res.runs] == ["ocr", "asr", "asr_dense", "mine"]
    assert res.fused.name == "fused" and pipe.fusion == "rrf" and pipe.fusion_params == {"k": 10} and pipe.depth == 20
    assert res.final.query("q")[0][0] == "v01_ball"  # spoken in v01_ball: ASR and its dense twin agree
    expect = fuse([r for r in res.runs if len(r)], method="rrf", k=10, depth=20).cut(3)  # OCR sees no such text
    assert res.final.to_dict() == expect.to_dict()
    bad = tmp_path / "bad.toml"
    bad.write_text('[retrievers.mine]\nkind = "plugin"\nref = "my_plugin:Always"\nparams = { colour = "red" }\n')
    with pytest.raises(ConfigError, match=r"\[retrievers.mine\] params"):
        Pipeline.from_config(bad)


@pytest.mark.slow
def test_from_config_with_reranker_over_a_loopback_server(index, tmp_path):
    from _fake_openai import FakeOpenAI

    with FakeOpenAI() as srv:
        cfg = tmp_path / "r.toml"
        cfg.write_text(f'[index]\npath = "{index}"\n[retrievers.asr]\ndense = false\n[retrievers.meta]\nenabled = false\n'
                       f'[rerank]\nenabled = true\nmodel = "fake-vlm"\nbase_url = "{srv.url}"\ntop = 3\nwindow = 3\n'
                       f'step = 1\ngrid = "1x2"\ncell = 64\ncache = "grids"\n')
        pipe = Pipeline.from_config(cfg)
        res = pipe.run({"q": "train to Chicago at nine"}, k=3)
    assert res.reranked is not None and res.rerank_stats.reranked == 1 and srv.requests
    assert sorted(res.reranked.query("q")) != [] and (tmp_path / "grids").is_dir()
    # the transcript of each candidate went along with its grid
    body = str(srv.requests[0])
    assert "Chicago" in body
