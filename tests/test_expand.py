"""Query expansion (mmfuse.expand) on small in-memory retrievers and a scripted language model: what each method
searches with (hand-computed), how q2e's lists are fused, what lamer shows the model, fallbacks, the Pipeline and
config wiring."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pytest
from _fake_openai import FakeOpenAI

from mmfuse import Pipeline, Run
from mmfuse.config import DEFAULT_CONFIG_TOML, parse_config
from mmfuse.errors import ConfigError, ParameterError
from mmfuse.expand import QueryExpander, build_expander
from mmfuse.fusion import fuse
from mmfuse.llm import Completion, TextGenerator
from mmfuse.retrievers.base import normalize_queries

DOCS = {"d1": "red ball game", "d2": "blue ball sky", "d3": "green grass field", "d4": "old stone lighthouse"}
VOCAB = sorted({w for t in DOCS.values() for w in t.split()})


class Keyword:
    """Lexical: the fraction of the query's words a doc holds (a similarity in [0, 1]), one segment per doc."""

    modality = "asr"

    def __init__(self, name="kw"):
        self.name = name
        self.asked: list[dict[str, str]] = []

    def search(self, queries, k=100):
        qids, texts = normalize_queries(queries)
        self.asked.append(dict(zip(qids.tolist(), texts)))
        rows = []
        for q, t in zip(qids.tolist(), texts):
            words = t.lower().split()
            for d, text in DOCS.items():
                s = sum(w in text.split() for w in words) / max(len(words), 1)
                if s > 0:
                    rows.append((q, d, s))
        q, d, s = zip(*rows) if rows else ((), (), ())
        return Run.from_arrays(np.asarray(q, dtype=str), np.asarray(d, dtype=str), np.asarray(s, dtype=float),
                               name=self.name, queries=qids.tolist(),
                               evidence={"segment_id": np.asarray([f"{x}#0" for x in d], dtype=str)})


def embed(texts):
    """Unit bag-of-words vectors over VOCAB."""
    m = np.zeros((len(texts), len(VOCAB)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            if w in VOCAB:
                m[i, VOCAB.index(w)] += 1
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(n > 0, n, 1)


class Dense:
    """Embedding retriever: cosine of bag-of-words vectors; records the vectors it searched with."""

    name, modality = "dense", "asr_dense"

    def __init__(self):
        self.vectors: list[np.ndarray] = []
        self.docs = embed(list(DOCS.values()))

    def embed_queries(self, texts):
        return embed(texts)

    def search_embedded(self, query_ids, vectors, k=100):
        v = np.asarray(vectors, dtype=np.float32)
        self.vectors.append(v)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        sims = v @ self.docs.T
        q = np.repeat(np.asarray(query_ids, dtype=object), len(DOCS))
        return Run.from_arrays(q, np.tile(list(DOCS), len(query_ids)), sims.reshape(-1), name=self.name,
                               queries=list(query_ids))

    def search(self, queries, k=100):
        qids, texts = normalize_queries(queries)
        return self.search_embedded(qids.tolist(), embed(texts), k)


class Scripted(TextGenerator):
    """Answers by the first key the prompt contains; None = a failed call. Records the prompts."""

    name = model_name = "scripted"

    def __init__(self, answers):
        super().__init__(None)
        self.answers = answers
        self.prompts: list[str] = []

    def _generate(self, prompts, max_tokens, temperature):
        out = []
        for parts in prompts:
            text = "".join(v for _, v in parts)
            self.prompts.append(text)
            a = next((a for k, a in self.answers.items() if k in text), "")
            out.append(Completion(error="HTTP 500 after 3 attempt(s)") if a is None else
                       Completion(a, len(text.split()), len(a.split())))
        return out


def test_q2e_searches_each_sub_query_and_fuses_per_query():
    kw = Keyword()
    ex = QueryExpander("q2e", Scripted({'"game night"': '["red ball", "blue sky"]'}))
    runs, report = ex.expand({"q": "game night"}, [(kw, kw.search({"q": "game night"}))], 10)
    assert kw.asked[-1] == {"0": "red ball", "1": "blue sky"}
    (run,) = runs
    # sub-query lists: "red ball" -> d1 1.0, d2 0.5; "blue sky" -> d2 1.0. The default fusion sums similarities
    # (d1 1.0, d2 1.5), divided by the 2 sub-queries.
    assert run.name == "kw@q2e" and run.query("q") == [("d2", 0.75), ("d1", 0.5)]
    assert run.evidence["segment_id"].tolist() == ["d2#0", "d1#0"]
    assert report.queries["q"].texts == ["red ball", "blue sky"] and report.parse.clean == 1
    combmax = QueryExpander("q2e", Scripted({'"game night"': '["red ball", "blue sky"]'}), fusion="combmax",
                            fusion_params={"norm": "none"})
    runs, _ = combmax.expand({"q": "game night"}, [(kw, kw.search({"q": "game night"}))], 10)
    assert runs[0].query("q") == [("d2", 0.5), ("d1", 0.5)]  # max 1.0 each, halved; tie: doc id desc


def test_hyde_searches_with_the_mean_embedding_and_the_augmented_text():
    kw, dense = Keyword(), Dense()
    llm = Scripted({'"red"': "1. ball\n2. blue sky"})
    searched = [(kw, kw.search({"q": "red"})), (dense, dense.search({"q": "red"}))]
    runs, report = QueryExpander("hyde", llm).expand({"q": "red"}, searched, 10)
    assert [r.name for r in runs] == ["kw@hyde", "dense@hyde"]
    assert kw.asked[-1] == {"q": "red ball blue sky"}
    e = {w: np.eye(len(VOCAB))[VOCAB.index(w)] for w in VOCAB}
    want = (e["red"] + e["ball"] + (e["blue"] + e["sky"]) / np.sqrt(2)) / 3  # the query's own embedding included
    np.testing.assert_allclose(dense.vectors[-1][0], want, atol=1e-6)
    assert "Write 4 short, different passages" in llm.prompts[0] and report.n == 4


def test_lamer_shows_the_first_lexical_hits_with_their_text():
    kw, other = Keyword("kw"), Keyword("kw2")
    other.modality = "visual"  # not lexical: its list does not ground the prompt

    class Texts:
        def get(self, name, segment):
            return {"d1#0": "red ball game " * 40, "d2#0": "blue ball sky"}[segment] if name == "kw" else "WRONG"

    llm = Scripted({"ball": "1. a red ball bounces"})
    q = {"q": "red ball"}  # d1 matches whole (1.0), d2 half
    searched = [(kw, kw.search(q)), (other, other.search(q))]
    runs, report = QueryExpander("lamer", llm, candidates=1, candidate_words=5).expand(q, searched, 10, texts=Texts())
    prompt = llm.prompts[0]
    assert '"red ball"' in prompt and "\n[1] red ball game red ball ...\n" in prompt and "[2]" not in prompt
    assert "WRONG" not in prompt and report.queries["q"].candidates == ["d1"]
    assert kw.asked[-1] == {"q": "red ball a red ball bounces"}
    nothing = Scripted({"zebra": "1. a zebra"})
    QueryExpander("lamer", nothing).expand({"q": "zebra"}, [(kw, kw.search({"q": "zebra"}))], 10, texts=Texts())
    assert "(the keyword search found nothing)" in nothing.prompts[0]


def test_failed_or_garbage_answers_fall_back_to_the_unexpanded_search():
    llm = Scripted({'"red ball"': '["blue sky"]', '"green grass"': "I'm sorry, I can't help with that.",
                    '"old stone"': None, '"game"': "1. 2. 3."})
    queries = {"q1": "red ball", "q2": "green grass", "q3": "old stone", "q4": "game"}
    expanded = Pipeline([Keyword(), Dense()], expand=QueryExpander("q2e", llm)).run(queries, k=4)
    plain = Pipeline([Keyword(), Dense()]).run(queries, k=4)
    assert [r.name for r in expanded.runs] == ["kw", "dense", "kw@q2e", "dense@q2e"]
    for w, (q, why) in zip(expanded.warnings, [("q2", "the model refused"),
                                               ("q3", "the model failed: HTTP 500 after 3 attempt(s)"),
                                               ("q4", "no usable list in the answer '1. 2. 3.'")]):
        assert w == f"query {q!r}: q2e expansion skipped ({why}); searched without it"
    assert expanded.expansion.fallbacks == ["q2", "q3", "q4"]
    for q in ("q2", "q3", "q4"):
        assert all(r.query(q) == [] for r in expanded.runs[2:])
        assert expanded.final.query(q) == plain.final.query(q)  # exactly the unexpanded ranking and scores
    assert expanded.final.query("q1")[0][0] == "d2" and plain.final.query("q1")[0][0] == "d1"


def test_pipeline_reports_the_expansion_and_batches_agree():
    llm = Scripted({'"red ball"': '["blue sky"]', '"lighthouse"': '["old stone lighthouse", "stone"]'})
    pipe = Pipeline([Keyword(), Dense()], expand=QueryExpander("q2e", llm))
    queries = {"a": "red ball", "b": "lighthouse"}
    one = pipe.run(queries, k=3)
    doc = one.as_dict("b", per_modality=True)
    ex = doc["expansion"]
    assert ex["method"] == "q2e" and ex["texts"] == ["old stone lighthouse", "stone"] and not ex["fallback"]
    assert ex["template"]["source"] == "builtin:q2e" and len(ex["template"]["sha256"]) == 64
    assert ex["model"] == {"backend": "scripted", "model": "scripted"} and ex["prompt_tokens"] > 0
    assert set(doc["per_modality"]) == {"kw", "dense", "kw@q2e", "dense@q2e"}
    assert "expand" in one.timings and "expand=q2e" in repr(pipe)
    batched = pipe.run(queries, k=3, batch_size=1)
    assert batched.final.equals(one.final) and list(batched.expansion.queries) == ["a", "b"]
    assert batched.expansion.stats.calls == 2


def test_weights_per_retriever_carry_to_its_expanded_run():
    llm = Scripted({'"red ball"': '["blue sky"]'})
    res = Pipeline([Keyword(), Dense()], fusion="wsum", weights=[3.0, 1.0],
                   expand=QueryExpander("q2e", llm)).run({"q": "red ball"}, k=4)
    want = fuse(res.runs, method="wsum", weights=[3.0, 1.0, 3.0, 1.0], queries=["q"]).cut(4)
    assert res.fused.query("q") == want.query("q")
    with pytest.raises(ParameterError, match=r"3 given for 4 retrievers \(kw, dense, kw@q2e, dense@q2e\)"):
        Pipeline([Keyword(), Dense()], fusion="wsum", weights=[3.0, 1.0, 1.0],
                 expand=QueryExpander("q2e", llm)).run({"q": "red ball"}, k=4)


def test_mistakes_are_one_line(monkeypatch, tmp_path):
    llm = Scripted({})
    with pytest.raises(ParameterError, match="unknown expansion method 'q2f' \\(did you mean 'q2e'\\?\\)"):
        QueryExpander("q2f", llm)
    with pytest.raises(ParameterError, match="expand n must be an integer from 1 to 20, got 0"):
        QueryExpander("q2e", llm, n=0)
    with pytest.raises(ParameterError, match="unknown fusion method 'rrff'"):
        QueryExpander("q2e", llm, fusion="rrff")
    bad = tmp_path / "t.txt"
    bad.write_text("{query} and {candidates}")
    with pytest.raises(ParameterError, match=r"t.txt: unknown placeholder \{candidates\}"):  # only lamer has it
        QueryExpander("hyde", llm, template=str(bad))
    with pytest.raises(ParameterError, match="neither a method name nor a QueryExpander"):
        Pipeline([Keyword()], expand=42)
    for v in ("MMFUSE_LLM_BASE_URL", "MMFUSE_LLM_MODEL", "MMFUSE_LLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(ParameterError, match="no language model"):
        Pipeline([Keyword()], expand="hyde")
    with pytest.raises(ParameterError, match="unknown expansion method"):  # before looking for a model
        build_expander("nope")


# ------------------------------------------------------------------------------------------------------- config


def _expand_lines() -> list[str]:
    text = DEFAULT_CONFIG_TOML
    block = text[text.index("[expand]"):text.index("[search]")]
    return [ln for ln in block.splitlines() if re.match(r"# [a-z_]+ = ", ln)]


@pytest.mark.parametrize("line", _expand_lines())
def test_every_commented_expand_value_is_valid(line):
    text = DEFAULT_CONFIG_TOML.replace(line, line[2:])
    cfg = parse_config(tomllib.loads(text), "default")
    key = line[2:].split("=")[0].strip()
    assert getattr(cfg.expand, key) is not None


def test_expand_config_section(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"\[expand\] method: Input should be 'q2e', 'hyde' or 'lamer'"):
        parse_config({"expand": {"method": "hype"}}, "c.toml")
    with pytest.raises(ConfigError, match="unknown key 'modle' in \\[expand\\]"):
        parse_config({"expand": {"modle": "x"}}, "c.toml")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "mine.txt").write_text("Decompose {query} into {n} parts")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    cfg = tmp_path / "m.toml"
    with FakeOpenAI(text={"hi": "hello"}) as srv:
        cfg.write_text('[retrievers.visual]\nenabled = false\n[retrievers.audio]\nenabled = false\n'
                       '[expand]\nmethod = "q2e"\nn = 3\nfusion = "entropy"\ntemplate = "prompts/mine.txt"\n'
                       f'model = "served"\nbase_url = "{srv.url}"\napi_key_env = "MY_KEY"\ncache = ""\n'
                       'max_tokens = 50\n')
        pipe = Pipeline.from_config(cfg, index=tmp_path / "no-index-needed-to-build")
        ex = pipe.expander
        assert ex.llm.complete("hi") == "hello"
    assert (ex.method, ex.n, ex.fusion, ex.max_tokens) == ("q2e", 3, "entropy", 50)
    assert ex.template.source == str(tmp_path / "prompts" / "mine.txt") and ex.llm.cache is None
    assert srv.requests[0]["model"] == "served" and srv.headers[0]["Authorization"] == "Bearer sk-mine"


def test_cli_takes_expand_settings_from_the_config(tmp_path, monkeypatch):
    from mmfuse.app.cli.common import load_config_defaults

    (tmp_path / "llm-dir").mkdir()
    monkeypatch.setenv("MY_KEY", "sk-mine")
    p = tmp_path / "m.toml"
    p.write_text('[expand]\nmethod = "lamer"\nn = 2\ntemplate = "t.txt"\nmodel = "llm-dir"\ncache = "c"\n'
                 'candidates = 3\ntemperature = 0.5\napi_key_env = "MY_KEY"\ntimeout = 9.0\n')
    d = load_config_defaults(p, "search")
    assert (d["expand"], d["expand_n"], d["llm_timeout"], d["llm_base_url"]) == ("lamer", 2, 9.0, None)
    assert d["expand_template"] == str(tmp_path / "t.txt") and d["llm_cache"] == str(tmp_path / "c")
    assert d["llm_model"] == str(tmp_path / "llm-dir")  # a folder beside the config: a local model
    assert d["expand_options"] == {"fusion_params": {}, "candidates": 3, "max_tokens": None, "temperature": 0.5,
                                   "api_key": "sk-mine"}
