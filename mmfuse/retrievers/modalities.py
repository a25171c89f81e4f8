"""Index-backed retrievers per modality (visual, audio, OCR, ASR and its English translation, VLM captions,
metadata, dense text, plug-in vectors) and the precomputed retriever that wraps a score matrix, TREC run or Parquet
run."""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmfuse.encoders import encoder_from_spec, load_encoder
from mmfuse.encoders import clip as visual
from mmfuse.encoders.clip import POOLINGS
from mmfuse.errors import InputError, ModelError, ParameterError, unknown
from mmfuse.runs import Run
from mmfuse.store import ann
from mmfuse.store.bm25 import OCR_ANALYZER, WORD_ANALYZER

from .base import IndexedRetriever, normalize_queries, segment_run, top_k_dense

if TYPE_CHECKING:  # pragma: no cover
    from mmfuse.store.lance import IndexStore

# Approximate search (see _VectorSearch) re-scores the segments of this many candidate videos per requested video
# (and per row of a segment: frames), re-ranks this many times its row limit of PQ candidates on their full
# vectors, asks the index for about this many rows per candidate video, and asks again (at most this many times)
# for the queries whose rows held fewer than k videos. The first three were chosen on benchmarks/ann_speed.py's
# development data (1M rows of other seeds than the reported ones, other queries).
ANN_CANDIDATES_PER_VIDEO = 2
ANN_REFINE_FACTOR = 2
ANN_ROWS_PER_VIDEO = 3
ANN_WIDEN_STEPS = 3


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


def _first_distinct(groups: np.ndarray, keys: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` distinct ``keys`` of each group, in order of appearance (rows come best first)."""
    if groups.size == 0:
        return np.empty(0, dtype=np.int64)
    code = np.unique(keys, return_inverse=True)[1].reshape(-1)
    _, first = np.unique(np.stack([groups.astype(np.int64), code], axis=1), axis=0, return_index=True)
    first = np.sort(first)
    g = groups[first]
    order = np.argsort(g, kind="stable")
    starts = np.flatnonzero(np.r_[True, g[order][1:] != g[order][:-1]])
    rank = np.empty(first.size, dtype=np.int64)
    rank[order] = np.arange(first.size) - np.repeat(starts, np.diff(np.r_[starts, first.size]))
    return first[rank < n]


class _VectorSearch(_Embedded):
    """Search mechanics of the retrievers over a ``vec_<modality>`` table, exact or approximate by its size.

    Below ``ann_min_rows`` rows (default :data:`mmfuse.store.ann.DEFAULT_MIN_ROWS`) every vector is loaded once and
    scanned exactly (``_load``/``_score``). From there on nothing is loaded whole:

    1. the store's approximate index (IVF-PQ, built by ``mmfuse index``; ``nprobes`` partitions per query, the best
       ``refine_factor`` x as many PQ candidates re-ranked on their full vectors) returns each query's best rows
       (frames, for the visual table), enough of them to hold ``candidates`` distinct videos (default 2 per
       requested video and frame per segment);
    2. those videos are the candidates: for ``max`` aggregation the segments the index returned for them, for
       mean/sum/topn (which need every segment of a video) all their segments, have all their rows fetched by id
       and re-scored exactly with the exact scan's pooling;
    3. the exact segment scores are aggregated to videos, as below the threshold.

    So scores are exact, and the ranking equals the exact one whenever step 1 finds the right videos
    (``benchmarks/ann_speed.py`` measures how often at 1M segments).
    """

    table: str  # the vector modality: rows live in ``vec_<table>``
    min_score: float | None = None  # segment scores below it are dropped (both paths)

    def __init__(self, store: "IndexStore", *, ann_min_rows: int | None = None, candidates: int | None = None,
                 nprobes: int | None = None, refine_factor: int | None = None, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.ann_min_rows = ann.DEFAULT_MIN_ROWS if ann_min_rows is None else int(ann_min_rows)
        self.candidates = candidates
        self.nprobes = ann.DEFAULT_NPROBES if nprobes is None else int(nprobes)
        self.refine_factor = ANN_REFINE_FACTOR if refine_factor is None else int(refine_factor)
        for name, value, least in (("candidates", candidates, 1), ("nprobes", self.nprobes, 1),
                                   ("refine_factor", self.refine_factor, 0)):
            if value is not None and int(value) < least:
                raise ParameterError(f"{name} must be >= {least}, got {value}")

    @property
    def uses_ann(self) -> bool:
        """Whether searches go through the approximate index (the table has at least ``ann_min_rows`` rows)."""
        return self._ann_rows() > 0

    def _ann_rows(self) -> int:
        """The table's row count when it is past the threshold, else 0."""
        n = self.store.vector_count(self.table)
        return n if n >= max(self.ann_min_rows, 1) else 0

    def _pooled_scores(self, q: np.ndarray, rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        """Exact [Q, n] scores of ``n`` segments from their rows (``owner[i]`` is row i's segment): the exact scan's
        scoring, applied to the fetched candidates."""
        raise NotImplementedError  # pragma: no cover - abstract

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 100) -> "Run":
        if not self._ann_rows():
            return super().search(queries, k)
        qids, texts = normalize_queries(queries)
        return self.search_embedded(qids, self._encode(texts) if texts else np.zeros((0, 1), np.float32), k)

    def search_embedded(self, query_ids: Sequence[str], vectors: np.ndarray, k: int = 100) -> "Run":
        n_rows = self._ann_rows()
        if not n_rows:
            return super().search_embedded(query_ids, vectors, k)
        qids = np.asarray([str(q) for q in query_ids], dtype=str)
        if not len(qids):
            return Run.empty(qids, name=self.name)
        return self._ann_search(qids, _unit(vectors), int(k), n_rows)

    def _hits(self, q: np.ndarray, n_videos: int, need: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, video_id, segment_id) of each query's approximate best rows, best first: about
        ``ANN_ROWS_PER_VIDEO`` rows per wanted video, and at least ``need`` distinct videos (queries whose rows came
        from fewer are asked again for more rows, in proportion to what they lacked)."""
        per_video = min(ANN_ROWS_PER_VIDEO, n_rows / max(self.store.video_count(), 1))
        limit = int(np.ceil(n_videos * max(1.0, per_video)))
        todo = np.arange(len(q))
        parts = []
        for widen in range(ANN_WIDEN_STEPS + 1):
            hits = self.store.search_vectors(self.table, q[todo], limit, nprobes=self.nprobes,
                                             refine_factor=self.refine_factor or None)
            local = hits["query_index"].to_numpy().astype(np.int64)
            vid = np.asarray(hits["video_id"].to_pylist(), dtype=str)
            seg = np.asarray(hits["segment_id"].to_pylist(), dtype=str)
            n_got = np.bincount(local, minlength=todo.size)
            n_vid = np.bincount(local[_first_distinct(local, vid, need)], minlength=todo.size)
            short = (n_vid < need) & (n_got >= limit) if widen < ANN_WIDEN_STEPS else np.zeros(todo.size, bool)
            done = ~short[local]
            parts.append((todo[local[done]], vid[done], seg[done]))
            if not short.any():
                break
            limit = int(np.ceil(limit * min(4.0, 1.25 * need / max(int(n_vid[short].min()), 1))))
            todo = todo[short]
        qi, vid, seg = (np.concatenate(c) for c in zip(*parts))
        order = np.argsort(qi, kind="stable")  # per query the rows stay best first
        return qi[order], vid[order], seg[order]

    def _ann_search(self, qids: np.ndarray, q: np.ndarray, k: int, n_rows: int) -> "Run":
        store = self.store
        # The index ranks rows (frames); a segment's pooled score can rank it above segments with a better single
        # frame, so the margin of candidates grows with the rows per segment.
        rows_per_segment = max(1.0, n_rows / max(store.segment_count(), 1))
        n_cand = int(self.candidates or np.ceil(ANN_CANDIDATES_PER_VIDEO * k * rows_per_segment))
        qi, vid, seg = self._hits(q, n_cand, min(k, n_cand), n_rows)
        first = _first_distinct(qi, vid, n_cand)
        cq, cvid = qi[first], vid[first]  # each query's candidate videos
        vids = np.unique(cvid)
        with cf.ThreadPoolExecutor(1) as pool:  # the two look-ups by id overlap
            spans = pool.submit(store.spans_of, vids)
            if self.aggregation == "max":
                # A video's score is its best segment's: re-score the segments the index found for each candidate.
                cand = np.zeros((len(q), vids.size), dtype=bool)
                cand[cq, np.searchsorted(vids, cvid)] = True
                pos = np.minimum(np.searchsorted(vids, vid), vids.size - 1)
                pick = np.flatnonzero(cand[qi, pos] & (vids[pos] == vid))
                cq, cid = qi[pick], seg[pick]
                ids = np.unique(cid)
                cols, rows = store.vectors_of(self.table, segment_ids=ids)
            else:  # mean/sum/topn need every segment of a candidate video
                cid, ids = cvid, vids
                cols, rows = store.vectors_of(self.table, video_ids=ids)
            spans = spans.result()
        seg_ids, first, owner = np.unique(cols["segment_id"], return_index=True, return_inverse=True)
        if seg_ids.size == 0:
            return Run.empty(qids, name=self.name)
        scores = self._pooled_scores(q, rows, owner, seg_ids.size)
        # Each query is scored on its own candidates only, so its result does not depend on the other queries.
        seg_video = np.asarray(cols["video_id"])[first]
        unit_of_seg = seg_ids if self.aggregation == "max" else seg_video
        member = np.zeros((len(q), ids.size), dtype=bool)
        member[cq, np.searchsorted(ids, cid)] = True
        pos = np.minimum(np.searchsorted(ids, unit_of_seg), ids.size - 1)
        qidx, sidx = np.nonzero(member[:, pos] & (ids[pos] == unit_of_seg))
        sc = scores[qidx, sidx].astype(np.float64)
        if self.min_score is not None:
            keep = sc >= self.min_score
            qidx, sidx, sc = qidx[keep], sidx[keep], sc[keep]
        segments = {"video_id": seg_video, "segment_id": seg_ids, **_aligned(spans, seg_ids, ("start", "end"))}
        return segment_run(self.name, self.modality, qids, qidx, sidx, sc, segments, k, self.aggregation, self.top_n)


def _aligned(cols: Mapping[str, np.ndarray], ids: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns ``names`` of ``cols`` (sorted by ``segment_id``) for each of ``ids`` (0 where an id is missing)."""
    at = np.searchsorted(cols["segment_id"], ids)
    known = at < len(cols["segment_id"])
    known[known] = cols["segment_id"][at[known]] == ids[known]
    out = {}
    for name in names:
        out[name] = np.zeros(len(ids))
        out[name][known] = cols[name][at[known]]
    return out


def _sum_pool(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """One unit vector per segment: the sum of its rows, normalized (the mean's direction)."""
    if len(owner) and np.bincount(owner, minlength=n).max() > 1:
        sums = np.zeros((n, rows.shape[1]), dtype=np.float32)
        np.add.at(sums, owner, rows)
        rows = sums
    return _unit(rows) if len(rows) else rows


class VectorRetriever(_VectorSearch):
    """Cosine similarity between encoded queries and one vector per segment in ``vec_<modality>``.

    ``query_encoder`` is anything with ``encode_text(list[str])`` or ``encode_queries(list[str])``
    returning [Q, d]. Below ``ann_min_rows`` rows: exact search (one [Q, d] x [d, S] product for all
    queries, ~1 ms per query at 10k segments on 2 cores); past it, the store's approximate index
    (see :class:`_VectorSearch`).
    """

    def __init__(self, store: "IndexStore", modality: str, query_encoder: Any, *, min_score: float | None = None,
                 **kw: Any) -> None:
        self.modality = self.table = modality
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
        seg["vectors"] = _sum_pool(mat, owner, len(seg["segment_id"]))
        return seg

    def _pooled_scores(self, q: np.ndarray, rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        return q @ _sum_pool(rows, owner, n).T

    def _score_vectors(self, q: np.ndarray, data: dict[str, Any], n_hits: int):
        sims = (data["vectors"] @ q.T).T  # [S, d] @ [d, Q]: the row-major matrix streams once
        qidx, col = top_k_dense(sims, n_hits)
        sc = sims[qidx, col]
        if self.min_score is not None:
            keep = sc >= self.min_score
            qidx, col, sc = qidx[keep], col[keep], sc[keep]
        return qidx, col, sc


class VisualRetriever(_VectorSearch):
    """CLIP text -> frame embeddings, frames pooled per segment (``pooling``: mean, max, softmax
    (query-scored softmax-weighted mean), maxsim (late interaction)), segments aggregated to videos.

    The encoder defaults to the CLIP model recorded in the index; pass ``encoder`` to override. Past
    ``ann_min_rows`` frames the search is approximate over frames, then exact over the candidate
    segments' frames (see :class:`_VectorSearch`).
    """

    modality = table = "visual"

    def __init__(self, store: "IndexStore", encoder: Any = None, pooling: str = "mean", **kw: Any) -> None:
        super().__init__(store, **kw)
        if pooling not in POOLINGS:
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

    def _pooled_scores(self, q: np.ndarray, rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        frames = _unit(rows) if len(rows) else rows
        if len(owner) == n:  # one frame per segment: every pooling is that frame (and segmented sums are slow)
            return (frames[np.argsort(owner)] @ q.T).T
        return self._frame_scores(q, frames, owner, n)

    def _frame_scores(self, q: np.ndarray, frames: np.ndarray, owner: np.ndarray, n: int,
                      cache: dict | None = None) -> np.ndarray:
        if self.pooling in ("mean", "max"):
            # Query-independent pooling: pool the frames once (cached by the exact scan), then one matrix product.
            pooled = None if cache is None else cache.get(f"_pooled_{self.pooling}")
            if pooled is None:
                pooled = np.asarray(visual.pool(frames, owner, self.pooling, n), dtype=np.float32)
                if cache is not None:
                    cache[f"_pooled_{self.pooling}"] = pooled
            return (pooled @ q.T).T  # [S, d] @ [d, Q]: the row-major matrix streams once
        return np.asarray(visual.score(q, frames, owner, self.pooling, n_owners=n), dtype=np.float64)

    def _score_vectors(self, q: np.ndarray, data: dict[str, Any], n_hits: int):
        sims = self._frame_scores(q, data["frames"], data["owner"], len(data["segment_id"]), cache=data)
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
        texts = [str(t) for t in data["text"]]
        data["bm25"] = None
        if any(t.strip() for t in texts):
            data["bm25"] = self.store.bm25(self.name, texts, OCR_ANALYZER if self.squash else WORD_ANALYZER)
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


class OcrRetriever(_Bm25Retriever):
    """On-screen text (rapidocr) per segment, BM25 over character n-grams of the squashed text."""

    modality = "ocr"
    squash = True

    def _texts(self) -> dict[str, Any]:
        seg = self.store.segments()
        return {k: seg[k] for k in ("video_id", "segment_id", "start", "end")} | {"text": seg["ocr_text"]}


class _SegmentTextRetriever(_Bm25Retriever):
    """BM25 over words of one text column of the segments table (``column``)."""

    column = ""

    def _texts(self) -> dict[str, Any]:
        seg = self.store.segments()
        return {k: seg[k] for k in ("video_id", "segment_id", "start", "end")} | {"text": seg[self.column]}


class AsrRetriever(_SegmentTextRetriever):
    """Speech transcript (faster-whisper) per segment, BM25 over words. The full transcript with
    timestamps is also stored as subtitles: ``store.subtitles(video_id)``."""

    modality = "asr"
    column = "asr_text"


class TranslationRetriever(_SegmentTextRetriever):
    """Whisper's English translation of the speech per segment (``mmfuse index --asr-task translate``), BM25 over
    words: English queries find speech in any language Whisper translates."""

    modality = "asr_en"
    column = "asr_en_text"


class CaptionRetriever(_SegmentTextRetriever):
    """What a vision-language model said each segment shows (``mmfuse index --modalities caption``), BM25 over
    words."""

    modality = "caption"
    column = "caption_text"


class MetadataRetriever(_Bm25Retriever):
    """Title, description and tags from the sidecar metadata file, BM25 over words (one row per video)."""

    modality = "meta"

    def _texts(self) -> dict[str, Any]:
        m = self.store.meta_rows()
        return {k: m[k] for k in ("video_id", "segment_id", "start", "end", "text")}


class DenseTextRetriever(VectorRetriever):
    """Dense sentence embeddings of ASR, translated ASR, caption or metadata text (``asr_dense``, ``asr_en_dense``,
    ``caption_dense``, ``meta_dense``), queries embedded by the model the index recorded for the column (the bundled
    all-MiniLM-L6-v2 unless ``mmfuse index --text-model`` named another).

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
            spec = self.store.specs().get(self.modality, {}).get("spec")
            self.query_encoder = encoder_from_spec(spec) if spec else load_encoder("text", lazy=True)
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
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: run file does not exist")
        return cls(Run.read(p, format=format), name=name or p.stem, modality=modality)

    @classmethod
    def from_matrix(cls, scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], name: str = "precomputed",
                    modality: str = "precomputed", depth: int | None = None) -> "PrecomputedRetriever":
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(query_ids), len(doc_ids)):
            raise InputError(f"{name}: score matrix shape {scores.shape} does not match {len(query_ids)} queries x {len(doc_ids)} docs")
        return cls(Run.from_matrix(scores, list(query_ids), list(doc_ids), depth=depth).with_name(name), name=name, modality=modality)

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 100) -> "Run":
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
