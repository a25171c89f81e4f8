"""The vector retrievers past the ANN threshold: approximate search over the store's IVF-PQ index, exact re-scoring of
the candidates, and the same video rankings as the exact in-memory scan on data where the neighbours are clear."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse.errors import ParameterError
from mmfuse.retrievers import DenseTextRetriever, VectorRetriever, VisualRetriever

pytest.importorskip("lancedb")

DIM = 32
GROUPS, PER_GROUP, SEGS, FRAMES = 15, 10, 5, 3  # 150 videos: 2,250 frame rows, 750 segment rows
N_VIDEOS = GROUPS * PER_GROUP
THRESHOLD = 500


class Lookup:
    """A query encoder that maps query texts to fixed vectors."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode_text(self, texts):
        return np.stack([self.vectors[t] for t in texts])


def _videos(rng: np.random.Generator):
    """Easy data: videos come in groups around a group centre, segments around their video, frames around their
    segment; a query near a group centre has that group's 10 videos as its clear top 10."""
    from mmfuse.store.lance import VideoRecord

    groups = 3.0 * rng.standard_normal((GROUPS, DIM))
    recs = []
    for v in range(N_VIDEOS):
        vid = f"v{v:03d}"
        # The j-th video of a group lies further from the centre than the (j-1)-th: a clear order, no near-ties.
        away = rng.standard_normal(DIM)
        away *= (0.5 + 0.4 * (v % PER_GROUP)) / np.linalg.norm(away) * np.sqrt(DIM)
        seg_c = groups[v // PER_GROUP] + away + 0.1 * rng.standard_normal((SEGS, DIM))
        frames = np.repeat(seg_c, FRAMES, axis=0) + 0.1 * rng.standard_normal((SEGS * FRAMES, DIM))
        seg_ids = [f"{vid}#{s}" for s in range(SEGS)]
        times = np.tile(np.arange(FRAMES, dtype=float), SEGS) + np.repeat(10.0 * np.arange(SEGS), FRAMES)
        recs.append(VideoRecord(
            video_id=vid, path=f"/videos/{vid}.mp4", content_hash=vid, info={"duration": 10.0 * SEGS},
            segments=[{"video_id": vid, "segment_id": sid, "seg_index": s, "start": 10.0 * s, "end": 10.0 * s + 10,
                       "ocr_text": "", "asr_text": ""} for s, sid in enumerate(seg_ids)],
            vectors={"visual": {"segment_id": np.repeat(seg_ids, FRAMES), "vector": frames.astype(np.float32),
                                "frame_time": times},
                     "audio": {"segment_id": seg_ids, "vector": seg_c.astype(np.float32)}},
            modalities=["visual", "audio"]))
    return recs, groups


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from mmfuse.store.lance import IndexStore

    path = tmp_path_factory.mktemp("ann") / "idx"
    rng = np.random.default_rng(0)
    recs, groups = _videos(rng)
    with IndexStore.create(path) as store:
        store.write_videos(recs, {m: (m, {"model": "fake"}, "") for m in ("visual", "audio")})
        store.optimize(ann_min_rows=THRESHOLD)
    queries = {f"q{g}": groups[g] + 0.1 * rng.standard_normal(DIM) for g in range(GROUPS)}
    return {"path": path, "queries": queries, "texts": {q: q for q in queries}}


def _pair(index, make, **kw):
    from mmfuse.store.lance import IndexStore

    store = IndexStore.open(index["path"])
    enc = Lookup(index["queries"])
    return make(store, enc, ann_min_rows=THRESHOLD, **kw), make(store, enc, ann_min_rows=10**9, **kw)


def _same(a, b, k=None):
    assert a.query_ids.tolist() == b.query_ids.tolist()
    for q in a.query_ids.tolist():
        got, want = a.query(q), b.query(q)
        assert len(got) == len(want) == (k or len(want))
        assert [d for d, _ in got] == [d for d, _ in want], q
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)


def test_optimize_built_the_search_indexes(index):
    from mmfuse.store.lance import IndexStore

    store = IndexStore.open(index["path"])
    for name in ("vec_visual", "vec_audio"):
        kinds = {tuple(c.columns): str(c.index_type) for c in store.db.open_table(name).list_indices()}
        assert "Ivf" in kinds[("vector",)] and kinds[("segment_id",)] == kinds[("video_id",)] == "BTree"
    assert {tuple(c.columns) for c in store.db.open_table("segments").list_indices()} >= {("segment_id",)}


@pytest.mark.parametrize("pooling", ["mean", "max", "softmax", "maxsim"])
@pytest.mark.parametrize("aggregation", ["max", "mean", "topn"])
def test_visual_ann_mechanics_equal_exact_when_everything_is_a_candidate(index, pooling, aggregation):
    """Fetch by id, pooling, per-query candidates, aggregation and evidence: with every segment a candidate the
    approximate path must give the exact path's ranking and scores, on any data."""
    def make(s, e, **kw):
        return VisualRetriever(s, encoder=e, pooling=pooling, aggregation=aggregation, **kw)

    ann, exact = _pair(index, make, candidates=N_VIDEOS * SEGS)
    assert ann.uses_ann and not exact.uses_ann
    _same(ann.search(list(index["queries"]), k=10), exact.search(list(index["queries"]), k=10), 10)


@pytest.mark.parametrize("pooling", ["mean", "maxsim"])
def test_visual_ann_equals_exact_on_easy_data(index, pooling):
    ann, exact = _pair(index, lambda s, e, **kw: VisualRetriever(s, encoder=e, pooling=pooling, **kw))
    a, b = ann.search(index["texts"], k=10), exact.search(index["texts"], k=10)
    _same(a, b, 10)
    assert {d for d, _ in a.query("q3")} == {f"v{v:03d}" for v in range(30, 40)}  # the data is as easy as meant


def test_vector_ann_equals_exact_with_evidence(index):
    ann, exact = _pair(index, lambda s, e, **kw: VectorRetriever(s, "audio", e, **kw))
    a, b = ann.search(index["texts"], k=10), exact.search(index["texts"], k=10)
    _same(a, b, 10)
    for col in ("segment_id", "start", "end", "modality"):
        assert a.evidence[col].tolist() == b.evidence[col].tolist(), col


def test_min_score_cuts_both_paths_alike(index):
    ann, exact = _pair(index, lambda s, e, **kw: DenseTextRetriever(s, "audio", e, min_score=0.8, **kw))
    a, b = ann.search(index["texts"], k=10), exact.search(index["texts"], k=10)
    assert 0 < len(b) < 10 * len(index["queries"])  # the cut is active on this data
    _same(a, b)


def test_ann_path_never_loads_the_table(index, monkeypatch):
    """Past the threshold the retriever never reads every vector or segment: those readers fail here."""
    from mmfuse.store.lance import IndexStore

    def boom(*a, **k):
        raise AssertionError("the exact scan's whole-table read was used")

    ann, _ = _pair(index, lambda s, e, **kw: VisualRetriever(s, encoder=e, **kw))
    monkeypatch.setattr(IndexStore, "vectors", boom)
    monkeypatch.setattr(IndexStore, "segments", boom)
    run = ann.search(index["texts"], k=5)
    assert all(len(run.query(q)) == 5 for q in index["queries"])


def test_one_query_at_a_time_equals_the_batch(index):
    ann, _ = _pair(index, lambda s, e, **kw: VisualRetriever(s, encoder=e, **kw))
    batch = ann.search(index["texts"], k=10)
    for q in index["queries"]:
        one = ann.search({q: q}, k=10).query(q)
        assert [d for d, _ in one] == [d for d, _ in batch.query(q)]
        assert [s for _, s in one] == pytest.approx([s for _, s in batch.query(q)], rel=1e-6)


@pytest.mark.parametrize("knob, value, message", [("candidates", 0, "candidates must be >= 1, got 0"),
                                                   ("nprobes", 0, "nprobes must be >= 1, got 0"),
                                                   ("refine_factor", -1, "refine_factor must be >= 0, got -1")])
def test_knobs_are_checked(index, knob, value, message):
    from mmfuse.store.lance import IndexStore

    with pytest.raises(ParameterError, match=message):
        VisualRetriever(IndexStore.open(index["path"]), encoder=Lookup({}), **{knob: value})


def test_search_by_vectors_takes_the_approximate_path_too(index, monkeypatch):
    """Query expansion searches with vectors (``search_embedded``): past the threshold that is approximate as well."""
    from mmfuse.store.lance import IndexStore

    ann, exact = _pair(index, lambda s, e, **kw: VisualRetriever(s, encoder=e, **kw))
    qids, vectors = list(index["queries"]), np.stack(list(index["queries"].values()))
    want = exact.search_embedded(qids, vectors, 10)
    monkeypatch.setattr(IndexStore, "vectors", lambda *a, **k: pytest.fail("the exact scan's whole-table read"))
    _same(ann.search_embedded(qids, vectors, 10), want, 10)
