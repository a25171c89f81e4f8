"""Index-backed retrievers per modality (visual, audio, OCR, ASR, metadata, plug-in vectors) and the
precomputed retriever that wraps a score matrix, TREC run or Parquet run."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmfuse.encoders import encoder_from_spec, load_encoder
from mmfuse.encoders.clip import POOLINGS
from mmfuse.errors import InputError, ModelError

from .base import IndexedRetriever, normalize_queries, top_k_dense

if TYPE_CHECKING:  # pragma: no cover
    from mmfuse.runs import Run
    from mmfuse.store.lance import IndexStore

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _segment_table(cols: Mapping[str, np.ndarray], store: "IndexStore") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Unique segments of per-row vector columns -> (segment columns incl. start/end, owner per row)."""
    seg_ids, first, owner = np.unique(cols["segment_id"], return_index=True, return_inverse=True)
    seg = store.segments()
    pos = {s: i for i, s in enumerate(seg["segment_id"].tolist())}
    idx = np.asarray([pos.get(s, -1) for s in seg_ids.tolist()], dtype=np.int64)
    start = np.where(idx >= 0, seg["start"][np.maximum(idx, 0)] if len(seg["start"]) else 0.0, 0.0)
    end = np.where(idx >= 0, seg["end"][np.maximum(idx, 0)] if len(seg["end"]) else 0.0, 0.0)
    return {
        "segment_id": seg_ids,
        "video_id": np.asarray(cols["video_id"])[first],
        "start": np.asarray(start, dtype=np.float64),
        "end": np.asarray(end, dtype=np.float64),
    }, owner.astype(np.int64)


class _Embedded(IndexedRetriever):
    """Search by query vectors: ``embed_queries`` (the texts through the query encoder, unit length) and
    ``search_embedded`` (vectors from anywhere, e.g. the mean of several texts' embeddings); ``search`` is the two
    in a row. Subclasses implement ``_encode(texts)`` and ``_score_vectors(q, data, n_hits)``."""

    def _encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_vectors(self, q: np.ndarray, data: dict[str, Any], n_hits: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """[Q, d] unit query vectors of ``texts``, as ``search`` computes them."""
        return self._encode(list(texts))

    def search_embedded(self, query_ids: Sequence[str], vectors: np.ndarray, k: int = 100) -> "Run":
        """The run of query vectors (one row per id of ``query_ids``; rows are scaled to unit length)."""
        qids = np.asarray([str(q) for q in query_ids], dtype=str)
        q = _unit(vectors) if len(qids) else np.zeros((0, 1), dtype=np.float32)
        return self._search_with(qids, k, lambda data, n_hits: self._score_vectors(q, data, n_hits))

    def _score(self, texts: list[str], data: dict[str, Any], n_hits: int):
        return self._score_vectors(self._encode(texts), data, n_hits)


class VectorRetriever(_Embedded):
    """Cosine similarity between encoded queries and one vector per segment in ``vec_<modality>``.

    ``query_encoder`` is anything with ``encode_text(list[str])`` or ``encode_queries(list[str])``
    returning [Q, d]. Exact search (one [Q, d] x [d, S] product for all queries): on 2 cores this is
    ~1 ms per query at 10k segments; beyond ~10^6 rows an ANN index is the right tool.
    """

    def __init__(self, store: "IndexStore", modality: str, query_encoder: Any, *, min_score: float | None = None,
                 **kw: Any) -> None:
        self.modality = modality
        super().__init__(store, **kw)
        self.query_encoder = query_encoder
        self.min_score = min_score

    def _encode(self, texts: list[str]) -> np.ndarray:
        enc = self.query_encoder
        fn = getattr(enc, "encode_text", None) or getattr(enc, "encode_queries", None) or getattr(enc, "encode", None)
        if fn is None:
            raise ModelError(f"{self.name}: query encoder {type(enc).__name__} has no encode_text/encode_queries")
        return _unit(np.asarray(fn(texts)))

    def _load(self) -> dict[str, Any]:
        cols, mat = self.store.vectors(self.modality)
        seg, owner = _segment_table(cols, self.store)
        if len(owner) and np.bincount(owner).max() > 1:
            # Several rows per segment (e.g. frames): mean-pool them into one segment vector.
            sums = np.zeros((len(seg["segment_id"]), mat.shape[1]), dtype=np.float32)
            np.add.at(sums, owner, mat)
            mat = sums
        seg["vectors"] = _unit(mat) if len(mat) else mat
        return seg

    def _score_vectors(self, q: np.ndarray, data: dict[str, Any], n_hits: int):
        sims = (data["vectors"] @ q.T).T  # [S, d] @ [d, Q]: the row-major matrix streams once
        qidx, col = top_k_dense(sims, n_hits)
        sc = sims[qidx, col]
        if self.min_score is not None:
            keep = sc >= self.min_score
            qidx, col, sc = qidx[keep], col[keep], sc[keep]
        return qidx, col, sc


class VisualRetriever(_Embedded):
    """CLIP text -> frame embeddings, frames pooled per segment (``pooling``: mean, max, softmax
    (query-scored softmax-weighted mean), maxsim (late interaction)), segments aggregated to videos.

    The encoder defaults to the CLIP model recorded in the index; pass ``encoder`` to override.
    """

    modality = "visual"

    def __init__(self, store: "IndexStore", encoder: Any = None, pooling: str = "mean", **kw: Any) -> None:
        super().__init__(store, **kw)
        if pooling not in POOLINGS:
            from mmfuse.errors import unknown

            raise unknown("pooling", pooling, POOLINGS)
        self.pooling = pooling
        self._encoder = encoder

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = clip_from_spec(self.store.specs().get("visual", {}).get("spec", {}))
        return self._encoder

    def _load(self) -> dict[str, Any]:
        cols, mat = self.store.vectors("visual")
        seg, owner = _segment_table(cols, self.store)
        seg["frames"] = _unit(mat) if len(mat) else mat
        seg["owner"] = owner
        return seg

    def _encode(self, texts: list[str]) -> np.ndarray:
        return _unit(np.asarray(self.encoder.encode_text(texts)))

    def _score_vectors(self, q: np.ndarray, data: dict[str, Any], n_hits: int):
        from mmfuse.encoders import clip as visual

        if self.pooling in ("mean", "max"):
            # Query-independent pooling: pool the frames once, then one matrix product per search.
            key = f"_pooled_{self.pooling}"
            if key not in data:
                data[key] = np.asarray(visual.pool(data["frames"], data["owner"], self.pooling,
                                                   len(data["segment_id"])), dtype=np.float32)
            sims = (data[key] @ q.T).T  # [S, d] @ [d, Q]: the row-major matrix streams once
        else:
            sims = np.asarray(visual.score(q, data["frames"], data["owner"], self.pooling,
                                           n_owners=len(data["segment_id"])), dtype=np.float64)
        qidx, col = top_k_dense(sims, n_hits)
        return qidx, col, sims[qidx, col]


class AudioRetriever(VectorRetriever):
    """CLAP text -> segment audio embeddings (48 kHz), encoder from the spec recorded in the index."""

    def __init__(self, store: "IndexStore", encoder: Any = None, **kw: Any) -> None:
        super().__init__(store, "audio", encoder, **kw)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.query_encoder is None:
            self.query_encoder = clap_from_spec(self.store.specs().get("audio", {}).get("spec", {}))
        return super()._encode(texts)


class _Bm25Retriever(IndexedRetriever):
    """BM25 (bm25s) over one text column; ``squash=True`` uses character n-grams (OCR).

    Scores are relative to each query's self-match (``Bm25Index.search(relative=True)``): about 1 for a segment
    that holds the whole query, a small fraction for a partial match, comparable across queries and retrievers."""

    squash = False

    def _texts(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self) -> dict[str, Any]:
        data = self._texts()
        from mmfuse.store.bm25 import Bm25Index

        texts = [str(t) for t in data["text"]]
        data["bm25"] = None
        if any(t.strip() for t in texts):
            builder = _Bm25Builder(Bm25Index, self.squash)
            data["bm25"] = self.store.bm25(self.name, texts, builder)
        return data

    def _score(self, texts: list[str], data: dict[str, Any], n_hits: int):
        if data["bm25"] is None:
            e = np.empty(0, dtype=np.int64)
            return e, e.copy(), np.empty(0)
        idx, sc = data["bm25"].search(texts, n_hits, relative=True)
        idx = np.asarray(idx, dtype=np.int64).reshape(len(texts), -1)
        sc = np.asarray(sc, dtype=np.float64).reshape(len(texts), -1)
        qidx = np.repeat(np.arange(len(texts)), idx.shape[1])
        idx, sc = idx.reshape(-1), sc.reshape(-1)
        keep = (sc > 0) & (idx >= 0)
        return qidx[keep], idx[keep], sc[keep]


class _Bm25Builder:
    """Adapter so the store's cache can build (``builder(texts)``) and reload (``builder.load(dir)``)."""

    def __init__(self, cls: Any, squash: bool) -> None:
        self.cls, self.squash = cls, squash

    def __call__(self, texts: list[str]) -> Any:
        from mmfuse.store.bm25 import OCR_ANALYZER, WORD_ANALYZER

        return self.cls.build(texts, OCR_ANALYZER if self.squash else WORD_ANALYZER)

    def load(self, d: Path) -> Any:
        return self.cls.load(d)


class OcrRetriever(_Bm25Retriever):
    """On-screen text (rapidocr) per segment, BM25 over character n-grams of the squashed text."""

    modality = "ocr"
    squash = True

    def _texts(self) -> dict[str, Any]:
        seg = self.store.segments()
        return {k: seg[k] for k in ("video_id", "segment_id", "start", "end")} | {"text": seg["ocr_text"]}


class AsrRetriever(_Bm25Retriever):
    """Speech transcript (faster-whisper) per segment, BM25 over words. The full transcript with
    timestamps is also stored as subtitles: ``store.subtitles(video_id)``."""

    modality = "asr"

    def _texts(self) -> dict[str, Any]:
        seg = self.store.segments()
        return {k: seg[k] for k in ("video_id", "segment_id", "start", "end")} | {"text": seg["asr_text"]}


class MetadataRetriever(_Bm25Retriever):
    """Title, description and tags from the sidecar metadata file, BM25 over words (one row per video)."""

    modality = "meta"

    def _texts(self) -> dict[str, Any]:
        m = self.store.meta_rows()
        return {k: m[k] for k in ("video_id", "segment_id", "start", "end", "text")}


class DenseTextRetriever(VectorRetriever):
    """Dense sentence embeddings (bundled all-MiniLM-L6-v2) of ASR or metadata text: ``asr_dense``, ``meta_dense``.

    Scores are cosine similarities, and the list is the top ``k`` by cosine with no cut: a threshold would be a
    constant fitted to some corpus and model (unrelated MiniLM pairs score 0.05-0.35 on the sample corpus, other
    models sit elsewhere). Telling a real match from the best of the unrelated ones is the fusion's job, from the
    shape of this list next to the others. ``min_score`` still cuts when a caller wants it.
    """

    def __init__(self, store: "IndexStore", modality: str, encoder: Any = None, min_score: float | None = None,
                 **kw: Any) -> None:
        super().__init__(store, modality, encoder, min_score=min_score, **kw)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.query_encoder is None:
            self.query_encoder = load_encoder("text", lazy=True)
        return super()._encode(texts)


class PrecomputedRetriever:
    """A retriever over results computed elsewhere: a Run, a [Q, D] score matrix, or a TREC/Parquet/JSON run file.

    ``search`` answers the queries it knows: by query id for ``{qid: text}``, else by text (for runs
    whose query ids are the query strings). Unknown queries get no entries.
    """

    def __init__(self, run: "Run", name: str | None = None, modality: str = "precomputed") -> None:
        self.run = run
        self.name = name or getattr(run, "name", "precomputed")
        self.modality = modality

    @classmethod
    def from_file(cls, path: str | os.PathLike, name: str | None = None, modality: str = "precomputed",
                  format: str | None = None) -> "PrecomputedRetriever":
        from mmfuse.runs import Run

        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: run file does not exist")
        return cls(Run.read(p, format=format), name=name or p.stem, modality=modality)

    @classmethod
    def from_matrix(cls, scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], name: str = "precomputed",
                    modality: str = "precomputed", depth: int | None = None) -> "PrecomputedRetriever":
        from mmfuse.runs import Run

        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(query_ids), len(doc_ids)):
            raise InputError(f"{name}: score matrix shape {scores.shape} does not match {len(query_ids)} queries x {len(doc_ids)} docs")
        return cls(Run.from_matrix(scores, list(query_ids), list(doc_ids), depth=depth).with_name(name), name=name, modality=modality)

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 100) -> "Run":
        from mmfuse.runs import Run

        qids, texts = normalize_queries(queries)
        run = self.run
        known = {str(q): i for i, q in enumerate(run.query_ids.tolist())}
        if isinstance(queries, Mapping):
            src = [known.get(q, known.get(t, -1)) for q, t in zip(qids.tolist(), texts)]
        else:
            src = [known.get(t, known.get(q, -1)) for q, t in zip(qids.tolist(), texts)]
        src = np.asarray(src, dtype=np.int64)
        counts = np.diff(run.offsets)
        k = int(k) if k else int(counts.max(initial=0))
        take = np.where(src >= 0, np.minimum(counts[np.maximum(src, 0)], k), 0) if src.size else src
        starts = run.offsets[np.maximum(src, 0)]
        total = int(take.sum())
        rows = np.repeat(starts, take) + (np.arange(total) - np.repeat(np.cumsum(take) - take, take))
        ev = None
        if run.evidence:
            ev = {c: np.asarray(v)[rows] for c, v in run.evidence.items()}
        else:
            ev = {"modality": np.full(rows.size, self.modality, dtype=object).astype(str)}
        out = Run.from_arrays(
            np.repeat(qids, take), run.doc_ids[run.doc_idx[rows]], run.scores[rows], name=self.name, evidence=ev,
        )
        return out.ensure_queries(qids)


def clip_from_spec(spec: Mapping[str, Any]) -> Any:
    """Build the CLIP encoder recorded in an index spec (model, pretrained, checkpoint)."""
    if not spec:
        raise ModelError("no visual model recorded in the index; index with --clip-model/--clip-checkpoint")
    return encoder_from_spec(spec)


def clap_from_spec(spec: Mapping[str, Any]) -> Any:
    """Build the CLAP encoder recorded in an index spec."""
    if not spec:
        raise ModelError("no audio model recorded in the index; index with --clap-model")
    return encoder_from_spec(spec)
