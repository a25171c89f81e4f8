"""Tests for mmfuse.store.ann: automatic ANN index build past a row count, and search with its knobs."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse.errors import IndexError_, ParameterError
from mmfuse.store.ann import ensure_vector_index, index_params, search, vector_index_info

lancedb = pytest.importorskip("lancedb")
pa = pytest.importorskip("pyarrow")

DIM = 32


def _clustered(n: int, seed: int, n_clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(123).standard_normal((n_clusters, DIM))
    x = centers[rng.integers(0, n_clusters, n)] + 0.3 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    db = lancedb.connect(str(tmp_path_factory.mktemp("vi") / "db"))
    x = _clustered(4000, 0)
    t = db.create_table("vec_visual", pa.table({
        "segment_id": [f"s{i}" for i in range(len(x))],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
    }))
    return t, x


def test_index_params_scale_with_rows_and_dim():
    p = index_params(1_000_000, 512)
    assert p == {"num_partitions": 1000, "num_sub_vectors": 64}
    assert index_params(10_000, 384)["num_sub_vectors"] == 48
    assert 768 % index_params(50_000, 768)["num_sub_vectors"] == 0
    assert index_params(10, 30)["num_sub_vectors"] in (1, 2, 3)  # a divisor of 30 no larger than 30 / 8
    assert index_params(3_000_000, 512, "hnsw") == {"num_partitions": 3}
    with pytest.raises(ParameterError, match="unknown vector index kind 'ivf-pq'.*ivf_pq"):
        index_params(10, 8, "ivf-pq")


def test_exact_search_matches_numpy_before_index(table):
    t, x = table
    assert ensure_vector_index(t, "vector", min_rows=10_000) is None  # below the threshold: no index
    assert vector_index_info(t, "vector") is None
    q = _clustered(5, 7)
    res = search(t, "vector", q, k=10, columns=["segment_id"])
    assert res.column_names == ["query_index", "segment_id", "_distance", "score"]
    got = np.asarray(res["segment_id"].to_pylist()).reshape(5, 10)
    sims = q @ x.T
    want = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    assert (got == np.vectorize(lambda i: f"s{i}")(want)).mean() >= 0.98  # float32 near-ties only
    np.testing.assert_allclose(res["score"].to_numpy().reshape(5, 10), np.take_along_axis(sims, want, 1), atol=1e-5)


def test_index_is_built_past_threshold_then_kept_and_recall_is_high(table):
    t, x = table
    info = ensure_vector_index(t, "vector", min_rows=1000, max_iterations=10)
    assert info["action"] == "built" and info["rows"] == 4000
    assert info["num_partitions"] == 63 and info["num_sub_vectors"] == 4
    assert vector_index_info(t, "vector")["num_indexed_rows"] == 4000
    again = ensure_vector_index(t, "vector", min_rows=1000)
    assert again["action"] == "kept"

    q = _clustered(50, 11)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    exact = search(t, "vector", q, k=10, columns=["segment_id"], exact=True)
    assert exact.num_rows == 500
    res = search(t, "vector", q, k=10, columns=["segment_id"], nprobes=63, refine_factor=20)
    got = np.asarray([int(s[1:]) for s in res["segment_id"].to_pylist()]).reshape(50, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, truth)])
    assert recall >= 0.9
    # Fewer probes and no refinement trade recall for speed, never returning more than k per query.
    fast = search(t, "vector", q, k=10, nprobes=1, refine_factor=None)
    assert np.bincount(fast["query_index"].to_numpy()).max() <= 10
    qi = res["query_index"].to_numpy()
    s = res["score"].to_numpy()
    assert (np.diff(qi) >= 0).all() and (np.diff(s)[np.diff(qi) == 0] <= 1e-7).all()


def test_bad_inputs_name_the_problem(table):
    t, _ = table
    with pytest.raises(ParameterError, match=r"shape \(2, 5\), expected \(n, 32\)"):
        search(t, "vector", np.zeros((2, 5)))
    with pytest.raises(ParameterError, match="NaN"):
        search(t, "vector", np.full(DIM, np.nan))
    with pytest.raises(IndexError_, match="no vector column 'vec'"):
        ensure_vector_index(t, "vec")
    with pytest.raises(IndexError_, match="not a fixed-size vector column"):
        ensure_vector_index(t, "segment_id")
    with pytest.raises(ParameterError, match="unknown vector metric"):
        search(t, "vector", np.zeros(DIM), metric="cos")
    with pytest.raises(ParameterError, match="must divide"):
        ensure_vector_index(t, "vector", min_rows=0, num_sub_vectors=5, replace=True)


def test_index_store_optimize_builds_ann_past_threshold(tmp_path):
    """IndexStore.optimize() gives a vector table an approximate index once it passes the row threshold."""
    lancedb = pytest.importorskip("lancedb")
    from mmfuse.store.lance import IndexStore

    with IndexStore(tmp_path / "idx", write=True) as store:
        db = lancedb.connect(str(tmp_path / "idx"))
        rng = np.random.default_rng(0)
        vec = rng.normal(size=(600, 16)).astype(np.float32)
        db.create_table("vec_test", data=[{"vector": v.tolist(), "segment_id": str(i)} for i, v in enumerate(vec)])
        store.optimize(ann_min_rows=10_000)
        assert not db.open_table("vec_test").list_indices()
        store.optimize(ann_min_rows=500)
        assert db.open_table("vec_test").list_indices()
