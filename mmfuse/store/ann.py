"""Approximate vector search at scale: build LanceDB's IVF-PQ / HNSW index past a row count, and search with its knobs.

Two functions make the whole API:

* :func:`ensure_vector_index` builds the index on a vector column once the table holds ``min_rows`` rows (below
  that, LanceDB's exact flat scan is both exact and fast enough), choosing ``num_partitions`` and
  ``num_sub_vectors`` from the row count and the dimension. Calling it again is cheap: an existing index is kept
  (LanceDB still searches rows added after the build with a flat scan, so results stay complete) and rebuilt only
  when more than ``rebuild_fraction`` of the rows are not covered by it.
* :func:`search` runs a batch of query vectors with the recall/latency knobs (``nprobes``, ``refine_factor``,
  ``ef``) and returns one Arrow table with ``query_index``, the requested columns, ``_distance`` and a
  higher-is-better ``score``.

Why these defaults (measured by ``benchmarks/ann_speed.py`` on 1M clustered 512-d vectors, see
README, "Approximate vector search"): ``num_partitions ~ sqrt(rows)`` keeps each IVF list near sqrt(rows) rows, so a probe costs
the same as the centroid scan; PQ with ``dim / 8`` sub-vectors (8 dims, 1 byte each: SIMD-aligned) ranks
candidates well enough that a ``refine_factor`` re-rank on the full vectors restores exact order at the top.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfuse.errors import IndexError_, ParameterError, unknown
from mmfuse.utils.lazy import require

os.environ.setdefault("LANCE_LOG", "error")

__all__ = ["DEFAULT_MIN_ROWS", "KINDS", "METRICS", "index_params", "ensure_vector_index", "ensure_scalar_index",
           "vector_index_info", "search", "DEFAULT_NPROBES", "DEFAULT_REFINE_FACTOR"]

# Below this many rows an exact scan answers in a few ms on 2 cores and an index is pure build cost.
DEFAULT_MIN_ROWS = 100_000
# Query-time defaults that meet recall@10 >= 0.95 on the 1M x 512 benchmark (see module docstring).
DEFAULT_NPROBES = 32
DEFAULT_REFINE_FACTOR = 10
KINDS = ("ivf_pq", "hnsw")
METRICS = ("cosine", "l2", "dot")


def _num_sub_vectors(dim: int) -> int:
    """The largest divisor of ``dim`` that is <= dim / 8 (8 dims per 1-byte code: PQ's SIMD-friendly shape)."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def index_params(n_rows: int, dim: int, kind: str = "ivf_pq") -> dict[str, int]:
    """Default build parameters for ``n_rows`` vectors of ``dim`` dimensions.

    IVF-PQ: ``num_partitions = sqrt(n_rows)`` (clamped to [1, 4096]) and ``num_sub_vectors = dim / 8``.
    HNSW (LanceDB's IVF_HNSW_SQ): one IVF partition per ~1M rows; each partition holds its own graph.
    """
    if kind not in KINDS:
        raise unknown("vector index kind", kind, KINDS)
    if n_rows < 1 or dim < 1:
        raise ParameterError(f"cannot size a vector index for {n_rows} rows of dimension {dim}")
    if kind == "hnsw":
        return {"num_partitions": max(1, math.ceil(n_rows / 1_000_000))}
    return {"num_partitions": int(min(4096, max(1, round(math.sqrt(n_rows))))), "num_sub_vectors": _num_sub_vectors(dim)}


def _dim(table: Any, column: str) -> int:
    import pyarrow as pa

    schema = table.schema
    if column not in schema.names:
        raise IndexError_(f"table {table.name!r} has no vector column {column!r} (columns: {', '.join(schema.names)})")
    t = schema.field(column).type
    if not pa.types.is_fixed_size_list(t):
        raise IndexError_(f"column {column!r} of table {table.name!r} is {t}, not a fixed-size vector column")
    return int(t.list_size)


def vector_index_info(table: Any, column: str = "vector") -> dict[str, Any] | None:
    """The existing vector index on ``column``: name, type, indexed/unindexed rows, metric; None when there is none."""
    for cfg in table.list_indices():
        if list(cfg.columns) == [column] and ("Ivf" in str(cfg.index_type) or "Hnsw" in str(cfg.index_type)):
            stats = table.index_stats(cfg.name)
            return {
                "name": cfg.name,
                "index_type": str(cfg.index_type),
                "num_indexed_rows": int(getattr(stats, "num_indexed_rows", 0) or 0),
                "num_unindexed_rows": int(getattr(stats, "num_unindexed_rows", 0) or 0),
                "metric": str(getattr(stats, "distance_type", "") or ""),
            }
    return None


def ensure_vector_index(table: Any, column: str = "vector", *, min_rows: int = DEFAULT_MIN_ROWS,
                        metric: str = "cosine", kind: str = "ivf_pq", num_partitions: int | None = None,
                        num_sub_vectors: int | None = None, rebuild_fraction: float = 0.5, replace: bool = False,
                        **lance_params: Any) -> dict[str, Any] | None:
    """Build an approximate index on ``table[column]`` when the table has at least ``min_rows`` rows.

    Returns a dict describing what was done (``action``: "built" / "kept", ``kind``, ``rows``, the parameters,
    ``seconds``) or None when the table is below ``min_rows``. An existing index is kept unless ``replace`` is set,
    its metric differs, or more than ``rebuild_fraction`` of the rows were added after it was built.
    ``lance_params`` pass through to LanceDB (e.g. ``max_iterations``, ``sample_rate``, ``m``, ``ef_construction``).
    """
    if kind not in KINDS:
        raise unknown("vector index kind", kind, KINDS)
    if metric not in METRICS:
        raise unknown("vector metric", metric, METRICS)
    if min_rows < 0:
        raise ParameterError(f"min_rows must be >= 0, got {min_rows}")
    dim = _dim(table, column)
    n = int(table.count_rows())
    if n < max(min_rows, 1):
        return None
    info = vector_index_info(table, column)
    if info is not None and not replace:
        stale = info["num_unindexed_rows"] > rebuild_fraction * max(n, 1)
        same_metric = not info["metric"] or info["metric"].lower() == metric
        if not stale and same_metric:
            return {"action": "kept", "kind": kind, "rows": n, **info, "seconds": 0.0}
    params = index_params(n, dim, kind)
    if num_partitions is not None:
        params["num_partitions"] = int(num_partitions)
    if num_sub_vectors is not None and kind == "ivf_pq":
        if dim % int(num_sub_vectors):
            raise ParameterError(f"num_sub_vectors={num_sub_vectors} must divide the vector dimension {dim}")
        params["num_sub_vectors"] = int(num_sub_vectors)
    # LanceDB needs at least as many training rows as partitions (k-means) and 256 for PQ's 8-bit codebooks.
    params["num_partitions"] = max(1, min(params["num_partitions"], n // 2 or 1))
    lance_index = require("lancedb.index")
    HnswSq, IvfPq = lance_index.HnswSq, lance_index.IvfPq

    t0 = time.perf_counter()
    try:
        config = (IvfPq if kind == "ivf_pq" else HnswSq)(distance_type=metric, **params, **lance_params)
        table.create_index(column, vector_column_name=column, replace=True, config=config)
    except TypeError as e:
        raise ParameterError(f"vector index parameter: {e}") from None
    except (ValueError, RuntimeError, OSError) as e:
        raise IndexError_(f"building the {kind} index on {table.name}.{column} failed: {str(e).splitlines()[0]}") from None
    return {"action": "built", "kind": kind, "metric": metric, "rows": n, "dim": dim, **params,
            "seconds": time.perf_counter() - t0}


def ensure_scalar_index(table: Any, column: str, *, min_rows: int = DEFAULT_MIN_ROWS) -> bool:
    """Give ``table[column]`` a B-tree index once the table holds ``min_rows`` rows, so ``column IN (...)`` look-ups
    read a few pages instead of scanning the column. Returns whether an index exists afterwards. Rows added later
    are still found (LanceDB scans what the index does not cover; ``table.optimize()`` folds them in)."""
    if int(table.count_rows()) < max(min_rows, 1):
        return False
    if any(list(cfg.columns) == [column] for cfg in table.list_indices()):
        return True
    try:
        table.create_index(column, config=require("lancedb.index").BTree())
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).splitlines()[0]
        raise IndexError_(f"building the B-tree index on {table.name}.{column} failed: {first}") from None
    return True


def _score(distance: np.ndarray, metric: str) -> np.ndarray:
    """Higher-is-better score from LanceDB's distance: cosine similarity, dot product, or -L2^2."""
    d = distance.astype(np.float64)
    return 1.0 - d if metric == "cosine" else -d


def search(table: Any, column: str, query_vecs: np.ndarray | Sequence[Sequence[float]], k: int = 10, *,
           nprobes: int | None = DEFAULT_NPROBES, refine_factor: int | None = DEFAULT_REFINE_FACTOR,
           metric: str = "cosine", ef: int | None = None, columns: Sequence[str] = (), where: str | None = None,
           exact: bool = False) -> Any:
    """Top-``k`` rows for each query vector, as one Arrow table sorted by (query_index, score desc).

    Columns: ``query_index`` (row of ``query_vecs``), the requested ``columns``, ``_distance`` (LanceDB's) and
    ``score`` (higher is better: cosine similarity, dot product, or minus squared L2). ``nprobes`` is how many IVF
    partitions to scan, ``refine_factor`` re-ranks ``k * refine_factor`` candidates on the full vectors, ``ef`` is
    HNSW's search breadth; all are ignored when the column has no index (LanceDB then scans exactly), as they are
    with ``exact=True``. ``where`` is a SQL filter applied before the vector search.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if metric not in METRICS:
        raise unknown("vector metric", metric, METRICS)
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}")
    q = np.asarray(query_vecs, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    dim = _dim(table, column)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ParameterError(f"query vectors have shape {q.shape}, expected (n, {dim}) for column {column!r}")
    if not np.isfinite(q).all():
        raise ParameterError("query vectors contain NaN or infinite values")
    if q.shape[0] == 0:
        return pa.table({"query_index": pa.array([], pa.int32()), **{c: pa.array([]) for c in columns},
                         "_distance": pa.array([], pa.float32()), "score": pa.array([], pa.float64())})
    builder = table.search(q if q.shape[0] > 1 else q[0], vector_column_name=column).distance_type(metric).limit(k)
    builder = builder.select([*columns, "_distance"])
    if where:
        builder = builder.where(where, prefilter=True)
    if exact:
        builder = builder.bypass_vector_index()
    else:
        if nprobes is not None:
            builder = builder.nprobes(int(nprobes))
        if refine_factor:
            builder = builder.refine_factor(int(refine_factor))
        if ef is not None:
            builder = builder.ef(int(ef))
    out = builder.to_arrow()
    if "query_index" not in out.column_names:
        out = out.add_column(0, "query_index", pa.array(np.zeros(out.num_rows, np.int32)))
    score = _score(out.column("_distance").to_numpy(zero_copy_only=False), metric)
    out = out.append_column("score", pa.array(score))
    order = pc.sort_indices(out, sort_keys=[("query_index", "ascending"), ("score", "descending")])
    return out.take(order)
