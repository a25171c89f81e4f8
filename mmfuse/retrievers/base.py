"""The retriever protocol, query normalisation and vectorized segment -> video score aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmfuse.errors import ParameterError, unknown
from mmfuse.runs import Run

AGGREGATIONS = ("max", "mean", "sum", "topn")


@runtime_checkable
class Retriever(Protocol):
    """Anything with a name, a modality and ``search(queries, k) -> Run`` over video ids.

    ``queries`` is ``{query_id: text}`` or a list of texts (ids become "0", "1", ...).
    Index-backed retrievers may also implement ``index(...)``; plug-ins that want to take part in the
    single decode pass of ``mmfuse index`` implement :class:`SegmentEncoder` instead (see there).
    """

    name: str
    modality: str

    def search(self, queries: Mapping[str, str] | Sequence[str], k: int = 100) -> "Run": ...


@runtime_checkable
class EmbeddingRetriever(Retriever, Protocol):
    """A retriever that compares query vectors with indexed vectors (CLIP, CLAP, dense text, plug-in vectors), so it
    can also search with vectors computed elsewhere, e.g. the mean embedding of several texts (HyDE):
    ``embed_queries(texts) -> [Q, d]`` and ``search_embedded(query_ids, vectors, k) -> Run``."""

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def search_embedded(self, query_ids: Sequence[str], vectors: np.ndarray, k: int = 100) -> "Run": ...


@runtime_checkable
class SegmentEncoder(Protocol):
    """A plug-in that embeds segments during indexing and queries during search.

    ``mmfuse index --retriever X`` feeds every decoded segment (``mmfuse.ingest.segments.Segment``: frames,
    audio at the rates in ``audio_rates``) to ``encode_segments`` and stores the vectors in the index,
    tagged with ``spec``; ``mmfuse search`` loads the same class again and calls ``encode_queries``.
    """

    name: str
    modality: str
    spec: dict

    def encode_segments(self, segments: list) -> np.ndarray: ...

    def encode_queries(self, queries: list[str]) -> np.ndarray: ...


def normalize_queries(queries: Mapping[str, str] | Sequence[str] | str) -> tuple[np.ndarray, list[str]]:
    """Return (query ids as a str array, texts) from a dict, a list of texts or one text."""
    if isinstance(queries, str):
        queries = [queries]
    if isinstance(queries, Mapping):
        qids = [str(q) for q in queries.keys()]
        texts = [str(t) for t in queries.values()]
    else:
        texts = [str(t) for t in queries]
        qids = [str(i) for i in range(len(texts))]
    return np.asarray(qids, dtype=object).astype(str), texts


def check_aggregation(aggregation: str, top_n: int = 3) -> None:
    if aggregation not in AGGREGATIONS:
        raise unknown("aggregation", aggregation, AGGREGATIONS)
    if aggregation == "topn" and int(top_n) < 1:
        raise ParameterError(f"top_n must be >= 1, got {top_n}")


def aggregate_segments(
    qidx: np.ndarray,
    seg_idx: np.ndarray,
    scores: np.ndarray,
    seg_video: np.ndarray,
    aggregation: str = "max",
    top_n: int = 3,
) -> dict[str, np.ndarray]:
    """Collapse (query, segment, score) entries into (query, video, score) entries, all vectorized.

    ``seg_video[s]`` is the video index of segment ``s``. Aggregations: ``max`` (default), ``mean``,
    ``sum`` over the segments given, ``topn`` = mean of the best ``top_n`` segments of each video.
    Returns arrays ``qidx``, ``video``, ``score`` and ``best_seg`` (the highest-scoring segment of each
    (query, video) pair, kept as evidence).
    """
    check_aggregation(aggregation, top_n)
    qidx = np.asarray(qidx, dtype=np.int64)
    seg_idx = np.asarray(seg_idx, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if qidx.size == 0:
        e = np.empty(0, dtype=np.int64)
        return {"qidx": e, "video": e.copy(), "score": np.empty(0), "best_seg": e.copy()}
    video = np.asarray(seg_video, dtype=np.int64)[seg_idx]
    # Sort by query, video, then score descending (ties: lower segment index first, deterministic).
    order = np.lexsort((seg_idx, -scores, video, qidx))
    q, v, s, g = qidx[order], video[order], scores[order], seg_idx[order]
    new_group = np.ones(q.size, dtype=bool)
    new_group[1:] = (q[1:] != q[:-1]) | (v[1:] != v[:-1])
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, q.size))
    if aggregation == "max":
        agg = s[starts]
    elif aggregation == "sum":
        agg = np.add.reduceat(s, starts)
    elif aggregation == "mean":
        agg = np.add.reduceat(s, starts) / counts
    else:  # topn
        pos = np.arange(q.size) - np.repeat(starts, counts)
        kept = np.where(pos < top_n, s, 0.0)
        agg = np.add.reduceat(kept, starts) / np.minimum(counts, top_n)
    return {"qidx": q[starts], "video": v[starts], "score": agg, "best_seg": g[starts]}


def top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` column indices per row of a [Q, S] matrix (unordered within the k): (qidx, col)."""
    scores = np.asarray(scores)
    n_q, n_s = scores.shape
    k = min(int(k), n_s)
    if k <= 0 or n_q == 0:
        e = np.empty(0, dtype=np.int64)
        return e, e.copy()
    if k < n_s:
        cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        cols = np.broadcast_to(np.arange(n_s), (n_q, n_s))
    qidx = np.repeat(np.arange(n_q), k)
    return qidx, np.ascontiguousarray(cols).reshape(-1).astype(np.int64)


def segment_run(
    name: str,
    modality: str,
    query_ids: np.ndarray,
    qidx: np.ndarray,
    seg_idx: np.ndarray,
    scores: np.ndarray,
    segments: Mapping[str, np.ndarray],
    k: int,
    aggregation: str = "max",
    top_n: int = 3,
) -> "Run":
    """Build a video-level Run from segment hits, keeping segment_id/start/end/modality as evidence.

    ``segments`` holds per-segment columns ``video_id``, ``segment_id``, ``start``, ``end`` (aligned
    with ``seg_idx``). Queries without hits simply have no entries.
    """
    if "_video_codes" in segments:  # precomputed by IndexedRetriever: no per-query string sort
        vids, seg_video = segments["_videos"], segments["_video_codes"]
    else:
        vids, seg_video = np.unique(np.asarray(segments["video_id"]).astype(str), return_inverse=True)
    agg = aggregate_segments(qidx, seg_idx, scores, seg_video, aggregation, top_n)
    best = agg["best_seg"]
    evidence = {
        "segment_id": np.asarray(segments["segment_id"])[best].astype(str),
        "start": np.asarray(segments["start"], dtype=np.float64)[best],
        "end": np.asarray(segments["end"], dtype=np.float64)[best],
        "modality": np.full(best.size, modality, dtype=object).astype(str),
    }
    # Build the Run directly from integer codes (no per-query string sorting): order each query's
    # entries by score desc, then doc id desc (doc ids are sorted, so code desc), cut to k.
    q, v, sc = agg["qidx"], agg["video"], agg["score"]
    order = np.lexsort((-v, -sc, q))
    q, v, sc, best = q[order], v[order], sc[order], best[order]
    evidence = {c: a[order] for c, a in evidence.items()}
    qids = np.asarray(query_ids).astype(str)
    counts = np.bincount(q, minlength=qids.size) if q.size else np.zeros(qids.size, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    if k:
        keep = (np.arange(q.size) - np.repeat(starts, counts)) < int(k)
        q, v, sc = q[keep], v[keep], sc[keep]
        evidence = {c: a[keep] for c, a in evidence.items()}
        counts = np.minimum(counts, int(k))
    used, doc_idx = np.unique(v, return_inverse=True)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return Run(qids, np.asarray(vids)[used].astype(object), offsets, doc_idx.reshape(-1).astype(np.int64), sc,
               name=name, evidence=evidence)


def describe(obj: Any) -> str:
    """``name (modality)`` of a retriever, for messages."""
    return f"{getattr(obj, 'name', type(obj).__name__)} ({getattr(obj, 'modality', '?')})"


class IndexedRetriever:
    """Base class for retrievers backed by an :class:`mmfuse.store.lance.IndexStore` table of segments.

    Subclasses set ``modality`` and implement ``_load()`` (return the per-segment columns
    ``video_id``, ``segment_id``, ``start``, ``end`` plus whatever they need, e.g. vectors) and
    ``_score(texts, data, n_hits) -> (qidx, seg_idx, scores)``. ``search`` then aggregates segment
    hits to videos (``aggregation``: max, mean, sum, topn) and keeps the best segment as evidence.
    """

    modality: str = "?"

    def __init__(self, store: Any, *, name: str | None = None, aggregation: str = "max", top_n: int = 3,
                 segment_depth: int | None = None) -> None:
        check_aggregation(aggregation, top_n)
        self.store = store
        self.name = name or self.modality
        self.aggregation = aggregation
        self.top_n = int(top_n)
        self.segment_depth = segment_depth
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, texts: list[str], data: dict[str, Any], n_hits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            data = self._load()
            data["_videos"], data["_video_codes"] = np.unique(np.asarray(data["video_id"]).astype(str), return_inverse=True)
            data["_max_per_video"] = int(np.bincount(data["_video_codes"]).max(initial=1)) if len(data["_video_codes"]) else 1
            self._data = data
        return self._data

    def n_segments(self) -> int:
        return int(len(self.data["segment_id"]))

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 100) -> "Run":
        qids, texts = normalize_queries(queries)
        return self._search_with(qids, k, lambda data, n_hits: self._score(texts, data, n_hits))

    def _search_with(self, qids: np.ndarray, k: int, score: Any) -> "Run":
        """Segment hits from ``score(data, n_hits) -> (qidx, seg_idx, scores)``, aggregated to a video run."""
        data = self.data
        n_seg = len(data["segment_id"])
        if n_seg == 0 or not len(qids):
            return Run.empty(qids, name=self.name)
        # Max: the k-th best video's best segment ranks at most (k-1)*S+1, S = most segments of one
        # video, so k*S segment hits give the exact top k. mean/sum/topn need every segment.
        depth = self.segment_depth or (int(k) * data["_max_per_video"] if self.aggregation == "max" else n_seg)
        qidx, seg, sc = score(data, min(depth, n_seg))
        return segment_run(self.name, self.modality, qids, qidx, seg, sc, data, k, self.aggregation, self.top_n)
