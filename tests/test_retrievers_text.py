"""Tests for text matching: normalization (mmfuse.utils.text), the BM25 analyzer and index (mmfuse.store.bm25), the
dense encoder (mmfuse.encoders.text)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmfuse.encoders.text import DenseTextEncoder
from mmfuse.errors import IndexError_, InputError, ParameterError
from mmfuse.store.bm25 import OCR_ANALYZER, WORD_ANALYZER, Analyzer, Bm25Index
from mmfuse.utils.text import normalize_text, squash


def test_normalize_and_squash():
    assert normalize_text("Hello,  WORLD!") == "hello world"
    assert normalize_text("Straße ﬁne") == "strasse fine"  # casefold + NFKC ligature
    assert normalize_text("  ") == ""
    assert normalize_text("rock&roll (live)") == "rock roll live"
    assert squash("Red  Bicycle!") == "redbicycle"
    assert squash("RED-BI CYCLE") == squash("redbicycle")
    assert normalize_text("ไทย हिन्दी") == "ไทย हिन्दी"  # combining marks are letters' parts, not punctuation
    assert normalize_text("snake_case\u200bword") == "snake case word"  # connector and format characters


def test_analyzer_terms():
    a = Analyzer(words=True, ngrams=(3, 4))
    assert a("Red-Car") == ["red", "car", "#red", "#edc", "#dca", "#car", "#redc", "#edca", "#dcar"]
    # Stopwords leave the word terms but not the n-grams: squashed OCR text has no boundaries to find them.
    assert a("The car")[:2] == ["car", "#the"]
    assert WORD_ANALYZER("The red car") == ["red", "car"]
    assert Analyzer(words=False, ngrams=(3, 3))("ab") == ["#ab"]  # shorter than n: kept whole
    assert Analyzer.from_spec(OCR_ANALYZER.spec) == OCR_ANALYZER
    with pytest.raises(ParameterError):
        Analyzer(words=False, ngrams=None)
    with pytest.raises(ParameterError):
        Analyzer(ngrams=(4, 2))


TOY = ["red bike red", "blue car", "red car fast", "green bus"]


def _lucene_bm25(docs: list[list[str]], query: list[str], k1=1.5, b=0.75) -> np.ndarray:
    """Reference BM25 (Lucene variant, as in bm25s): idf = ln(1 + (N-df+.5)/(df+.5)), tf/(tf + k1(1-b+b dl/avgdl))."""
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    out = np.zeros(n)
    for t in set(query):
        df = sum(t in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(t)
            out[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
    return out


def test_bm25_matches_hand_computed_scores_and_ranking():
    ix = Bm25Index.build(TOY, WORD_ANALYZER)
    tokenized = [d.split() for d in TOY]
    for q in ["red car", "bike", "green", "fast red"]:
        np.testing.assert_allclose(ix.scores(q), _lucene_bm25(tokenized, q.split()), rtol=1e-5)
    idx, sc = ix.search(["red car", "bike", "nothing here"], k=3)
    # red car: doc 2 has both terms; doc 0 has 'red' twice (short doc); doc 1 has 'car' once.
    ref = _lucene_bm25(tokenized, ["red", "car"])
    assert list(idx[0]) == list(np.argsort(-ref)[:3])
    assert idx[0, 0] == 2
    assert list(idx[1]) == [0, -1, -1] and sc[1, 1] == 0.0
    assert (idx[2] == -1).all()
    assert sc.dtype == np.float32 and idx.dtype == np.int64


def test_bm25_ngrams_match_squashed_ocr_text():
    docs = ["REDBICYCLE FOR SALE", "red car parked", "BLUEBICYCLE", "green bus stop"]
    ix = Bm25Index.build(docs, OCR_ANALYZER)
    idx, _ = ix.search(["red bicycle", "blue bicycle", "bus"], k=4)
    assert idx[0, 0] == 0
    assert idx[1, 0] == 2
    assert idx[2, 0] == 3
    # Word-only analysis cannot see inside the squashed text: the n-grams are what make it match.
    words_only = Bm25Index.build(docs, WORD_ANALYZER)
    assert words_only.search(["bicycle"], k=4)[0][0, 0] == -1


def test_bm25_save_load_roundtrip(tmp_path):
    ix = Bm25Index.build(TOY, OCR_ANALYZER, k1=1.2, b=0.6)
    target = tmp_path / "bm25"
    ix.save(target)
    ix.save(target)  # replacing an existing index works
    back = Bm25Index.load(target)
    assert back.spec == ix.spec and len(back) == 4
    for a, b in zip(ix.search(["red car", "green"], k=4), back.search(["red car", "green"], k=4)):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["bm25"]  # no temp dirs left behind
    with pytest.raises(IndexError_, match="missing"):
        Bm25Index.load(tmp_path / "nope")


def test_bm25_empty_corpus_and_bad_input(tmp_path):
    ix = Bm25Index.build([])
    idx, sc = ix.search(["anything"], k=5)
    assert idx.shape == (1, 0) and sc.shape == (1, 0)
    ix.save(tmp_path / "empty")
    assert len(Bm25Index.load(tmp_path / "empty")) == 0
    ix = Bm25Index.build(["", "only doc"])
    assert ix.search("doc", k=10)[0].tolist() == [[1, -1]]
    with pytest.raises(InputError):
        Bm25Index.build("not a list")
    with pytest.raises(ParameterError):
        ix.search(["x"], k=0)




@pytest.mark.slow
def test_dense_encoder_ranks_paraphrase_first():
    enc = DenseTextEncoder()
    docs = [
        "the stock market fell sharply on monday",
        "a man is riding a bicycle down the street",
        "instructions for baking sourdough bread",
        "the weather will be cold and rainy",
    ]
    d = enc.encode(docs)
    q = enc.encode(["someone cycling along a road", "how to make bread at home"])
    assert d.shape == (4, 384) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    ranks = np.argsort(-(q @ d.T), axis=1)
    assert ranks[0, 0] == 1 and ranks[1, 0] == 2
    assert enc.encode([]).shape == (0, 384)
    assert enc.spec == {"kind": "sentence-transformers", "model": "bundled:all-MiniLM-L6-v2"}
    # a second encoder of the same model (asr_dense next to meta_dense) shares the loaded weights
    assert DenseTextEncoder().load() is enc.load()


@pytest.mark.slow
def test_dense_query_vectors_are_kept_and_equal_encode():
    a, b = DenseTextEncoder(), DenseTextEncoder()
    q = a.encode_queries(["someone cycling along a road"])
    np.testing.assert_array_equal(q, a.encode(["someone cycling along a road"]))  # bit for bit: encoded alone
    assert b.encode_queries("someone cycling along a road") is q  # the dense twin of the same search reuses it
    assert not q.flags.writeable
    batch = ["someone cycling along a road", "how to make bread at home"]
    np.testing.assert_array_equal(a.encode_queries(batch), a.encode(batch))  # a batch runs through the model
