"""Fusion sweeps: methods x normalizations x parameter grids x retriever subsets, each fused once over all queries.

Per retriever subset the runs are aligned once (``mmfuse.fusion.align``); every configuration then normalizes,
calls the registered method on all queries at once, and is scored straight from the fused per-pair scores (the rank
of a relevant doc is one plus the number of candidates of its query scored strictly higher, the usual
video-retrieval convention), so no per-query Python loop and no sort runs per configuration. A test checks that the
figures equal ``fuse()`` followed by :func:`mmfuse.eval.metrics.run_video_metrics`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mmfuse.errors import ParameterError, unknown
from mmfuse.eval.metrics import DEFAULT_VIDEO_METRICS, RelevantRanks, video_metrics
from mmfuse.fusion import get_method
from mmfuse.fusion.align import Aligned, FusionInput, align
from mmfuse.fusion.norm import norm_name, normalize_entries

__all__ = ["Config", "Result", "DEFAULT_GRID", "SUBSET_MODES", "subsets", "build_configs", "sweep", "tune",
           "run_benchmark"]

Progress = Callable[[int, int, str], None]
SUBSET_MODES = ("all", "singles", "pairs", "every")

# The default grid: every non-transductive registered method (q2e_entropy is transductive: asked for by name only).
# Norm lists give the normalizations swept for score-based methods; other keys are method parameters.
DEFAULT_GRID: dict[str, dict[str, list]] = {
    "auto": {},
    "combsum": {"norm": ["none", "min-max", "zmuv", "sum", "rank", "borda"]},
    "combmnz": {"norm": ["min-max", "zmuv"]},
    "combmax": {"norm": ["min-max"]},
    "combmed": {"norm": ["min-max"]},
    "combanz": {"norm": ["min-max"]},
    "rrf": {"k": [10, 60]},
    "isr": {},
    "log_isr": {},
    "bordafuse": {},
    "entropy": {"norm": ["min-max"], "top_k": [10], "temperature": [0.1, 0.3]},
    "sef": {"miss": [0.25, 1.0, 2.0]},
}
# Extra points on the full retriever set only: the sensitivity curve of the default method (and of entropy).
SENSITIVITY_GRID: dict[str, dict[str, list]] = {
    "sef": {"miss": [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]},
}
# condorcet, rbc, logn_isr, combmin, combgmnz, wsum/wmnz/mixed (= their unweighted forms with equal weights) are
# left out of the default grid to keep the default sweep within its time budget; name them with --methods.
SENSITIVITY = {"sef": "miss"}  # the default method's parameter whose curve the report draws


@dataclass(frozen=True)
class Config:
    """One point of the sweep. ``method == "single"`` is a retriever on its own."""

    method: str
    norm: str | None
    params: tuple[tuple[str, Any], ...]
    retrievers: tuple[str, ...]

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def key(self) -> tuple:
        return (self.method, self.norm, self.params, self.retrievers)


@dataclass
class Result:
    """One measured configuration on one dataset (the JSON ``results`` entries)."""

    config: Config
    metrics: dict[str, float]
    ms_per_query: float
    tuned_on: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"method": self.config.method, "norm": self.config.norm, "retrievers": list(self.config.retrievers),
                "params": self.config.param_dict, "tuned_on": self.tuned_on,
                "metrics": {k: _round(v) for k, v in self.metrics.items()}, "ms_per_query": _round(self.ms_per_query, 6)}


def _round(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def subsets(retrievers: Sequence[str], mode: str = "every") -> list[tuple[str, ...]]:
    """Retriever subsets to fuse: 'all' (the full set), 'singles', 'pairs', 'every' (every subset of size >= 2)."""
    r = list(retrievers)
    if mode not in SUBSET_MODES:
        raise unknown("subset mode", mode, SUBSET_MODES)
    if mode == "all":
        return [tuple(r)] if len(r) >= 2 else []
    if mode == "singles":
        return []
    if mode == "pairs":
        return [tuple(c) for c in itertools.combinations(r, 2)]
    return [tuple(c) for k in range(len(r), 1, -1) for c in itertools.combinations(r, k)]


def _grid_points(method: str, spec: Mapping[str, list]) -> list[tuple[str | None, tuple]]:
    m = get_method(method)
    spec = dict(spec)
    norms = spec.pop("norm", None)
    if m.kind == "rank":
        norms = [None]
    elif not norms:
        norms = [m.default_norm]
    for p in spec:
        m.param(p)  # unknown parameter -> ParameterError with a suggestion
    keys = list(spec)
    pts = []
    for n in norms:
        for vals in itertools.product(*[spec[k] for k in keys]) if keys else [()]:
            params = tuple((k, m.param(k).coerce(v, m.name)) for k, v in zip(keys, vals))
            pts.append((n, params))
    return pts


def build_configs(retrievers: Sequence[str], methods: Iterable[str] | None = None, subset_mode: str = "every",
                  grid: Mapping[str, Mapping[str, list]] | None = None, singles: bool = True,
                  sensitivity: bool = True) -> list[Config]:
    """All configurations of a sweep (singles first, then every method x norm x params x subset, then the
    sensitivity points of :data:`SENSITIVITY_GRID` on the full retriever set)."""
    grid = dict(DEFAULT_GRID if grid is None else grid)
    if methods is None:
        chosen = list(grid)
    else:
        chosen = []
        for name in methods:
            chosen.append(get_method(name).name)
    cfgs: list[Config] = []
    if singles or subset_mode == "singles":
        cfgs += [Config("single", None, (), (r,)) for r in retrievers]
    subs = subsets(retrievers, subset_mode)
    for name in chosen:
        pts = _grid_points(name, grid.get(name, {}))
        for sub in subs:
            cfgs += [Config(name, n, p, sub) for n, p in pts]
    if sensitivity and len(retrievers) >= 2:
        have = {c.key() for c in cfgs}
        full = tuple(retrievers)
        for name, spec in SENSITIVITY_GRID.items():
            if name not in chosen:
                continue
            for n, p in _grid_points(name, spec):
                c = Config(name, n, p, full)
                if c.key() not in have:
                    cfgs.append(c)
                    have.add(c.key())
    return cfgs


def _sub_aligned(a, keep_runs: Sequence[int]):
    """The alignment of a subset of already-aligned runs, derived with O(entries) array ops (no re-encoding of ids).

    Query and doc tables stay those of the full set (a query none of the subset's runs holds just has no candidate,
    which scores exactly as an absent query); pairs are renumbered to the union of the subset's entries.
    """
    keep_runs = np.asarray(keep_runs, dtype=np.int64)
    remap = np.full(a.n_runs, -1, dtype=np.int64)
    remap[keep_runs] = np.arange(keep_runs.size)
    ent = remap[a.run] >= 0
    seg_keep = remap[a.seg_run] >= 0
    seg_counts = np.diff(a.seg_offsets)[seg_keep]
    seg_offsets = np.zeros(seg_counts.size + 1, dtype=np.int64)
    np.cumsum(seg_counts, out=seg_offsets[1:])
    old_pair = a.pair[ent]
    present = np.zeros(a.n_pairs, dtype=bool)
    present[old_pair] = True
    new_id = np.cumsum(present, dtype=np.int64) - 1
    pair_q = a.pair_q[present]
    q_pair_offsets = np.zeros(a.n_queries + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_q, minlength=a.n_queries), out=q_pair_offsets[1:])
    return Aligned(a.query_ids, a.doc_ids, [a.names[i] for i in keep_runs], remap[a.run[ent]], a.qidx[ent],
                   a.didx[ent], a.score[ent], a.rank[ent], seg_offsets, remap[a.seg_run[seg_keep]],
                   a.seg_q[seg_keep], a.n_ret[keep_runs], new_id[old_pair], pair_q, a.pair_d[present], q_pair_offsets)


# ---- evaluation straight from per-pair scores ---------------------------------------------------------------------
@dataclass
class _Judged:
    """Relevant (query, doc) pairs of the qrels located in an alignment's pair table."""

    n_queries: int
    qidx: np.ndarray      # [G] aligned query index of each relevant pair (or -1: query not in the runs)
    pair: np.ndarray      # [G] pair index, -1 when no run retrieved the doc
    rel: np.ndarray       # [G]
    out_q: np.ndarray     # [G] index into the qrels query table
    n_cand: np.ndarray    # [Qrels] candidates per qrels query (0 when the query is absent)


def _judge(a, qrels) -> _Judged:
    qq = qrels.query_ids.astype(str)
    aq = a.query_ids.astype(str)
    sorter = np.argsort(aq)
    pos = np.searchsorted(aq, qq, sorter=sorter)
    pos = np.minimum(pos, max(aq.size - 1, 0))
    found = aq[sorter[pos]] == qq if aq.size else np.zeros(qq.size, bool)
    a_of_qrels = np.where(found, sorter[pos], -1)
    relv = qrels.relevance
    keep = relv >= 1
    out_q = qrels.qidx()[keep]
    docs = qrels.doc_ids.astype(str)[qrels.doc_idx[keep]]
    ad = a.doc_ids.astype(str)
    dpos = np.minimum(np.searchsorted(ad, docs), max(ad.size - 1, 0))
    dfound = ad[dpos] == docs if ad.size else np.zeros(docs.size, bool)
    aq_idx = a_of_qrels[out_q]
    ok = dfound & (aq_idx >= 0)
    D = max(int(ad.size), 1)
    pair_keys = a.pair_q * D + a.pair_d
    want = aq_idx * D + dpos
    ppos = np.minimum(np.searchsorted(pair_keys, want), max(pair_keys.size - 1, 0))
    hit = ok & (pair_keys[ppos] == want) if pair_keys.size else np.zeros(want.size, bool)
    pair = np.where(hit, ppos, -1)
    n_cand_a = a.n_cand
    n_cand = np.where(a_of_qrels >= 0, n_cand_a[np.maximum(a_of_qrels, 0)] if n_cand_a.size else 0, 0)
    return _Judged(qrels.n_queries, aq_idx, pair, relv[keep].astype(np.int64), out_q, n_cand.astype(np.int64))


def _ranks_from_scores(a, j: _Judged, scores: np.ndarray, n_docs: int) -> RelevantRanks:
    """Optimistic rank of every relevant pair: 1 + candidates of its query scored strictly higher."""
    rank = np.full(j.pair.size, np.inf)
    has = np.flatnonzero(j.pair >= 0)
    if has.size:
        # process relevant pairs in "slots" so each pass compares every candidate with one relevant per query
        q_of = a.pair_q[j.pair[has]]
        order = np.lexsort((has, q_of))
        qs = q_of[order]
        first = np.searchsorted(qs, qs)
        slot = np.arange(qs.size) - first
        for s in range(int(slot.max()) + 1):
            sel = has[order[slot == s]]
            g = np.full(a.n_queries, np.inf)
            g[a.pair_q[j.pair[sel]]] = scores[j.pair[sel]]
            above = np.bincount(a.pair_q, weights=(scores > g[a.pair_q]).astype(np.float64), minlength=a.n_queries)
            rank[sel] = 1.0 + above[a.pair_q[j.pair[sel]]]
    return RelevantRanks(j.n_queries, j.out_q, rank, j.rel, j.n_cand, int(n_docs))


# ---- the sweep ------------------------------------------------------------------------------------------------------
_SHARED: dict[str, Any] = {}


def _measure(a, judged, c: Config, n_docs: int, Q: int, t_align: float, metrics: Sequence[str]) -> Result:
    t1 = time.perf_counter()
    transductive = False
    if c.method == "single":
        scores = np.bincount(a.pair, weights=a.score, minlength=a.n_pairs)
    else:
        m = get_method(c.method)
        transductive = bool(m.transductive)
        nname = norm_name(c.norm if c.norm is not None else (m.default_norm or "none"))
        norm_kw = {k[5:]: v for k, v in c.params if k.startswith("norm_")}
        params = {k: v for k, v in c.params if not k.startswith("norm_")}
        resolved = m.resolve(params)
        run, pair, qidx, value, rank = normalize_entries(a, nname, **norm_kw)
        ctx = FusionInput(a, run, pair, qidx, value, rank, np.ones(a.n_runs))
        scores = np.asarray(m.fn(ctx, **resolved), dtype=np.float64)
    elapsed = time.perf_counter() - t1 + t_align
    rr = _ranks_from_scores(a, judged, scores, n_docs)
    return Result(c, video_metrics(rr, metrics), 1000.0 * elapsed / Q, extra={"transductive": transductive})


def _work(job: tuple[tuple[str, ...], list[tuple[int, Config]]]) -> list[tuple[int, Result]]:
    sub, items = job
    full, used, dataset, metrics = _SHARED["full"], _SHARED["used"], _SHARED["dataset"], _SHARED["metrics"]
    t0 = time.perf_counter()
    a = full if tuple(used) == sub else _sub_aligned(full, [used.index(r) for r in sub])
    t_align = time.perf_counter() - t0  # deriving the subset's alignment is part of each of its fusions
    judged = _judge(a, dataset.qrels)
    n_docs = max(int(dataset.n_docs), int(a.doc_ids.size))
    Q = max(dataset.n_queries, 1)
    return [(i, _measure(a, judged, c, n_docs, Q, t_align, metrics)) for i, c in items]


def sweep(dataset, configs: Sequence[Config], metrics: Sequence[str] = DEFAULT_VIDEO_METRICS,
          progress: Progress | None = None, _offset: int = 0, _total: int | None = None,
          workers: int | None = None) -> list[Result]:
    """Measure every configuration on ``dataset`` (a :class:`~mmfuse.benchmarks.datasets.Dataset`).

    The dataset's runs are aligned once; each retriever subset's alignment is derived from it and each
    configuration is fused once over all queries. ``workers`` (default: up to 2 CPU cores) spreads the
    configurations over forked processes; results come back in ``configs`` order.
    """
    import multiprocessing as mp
    import os

    total = _total if _total is not None else len(configs)
    by_subset: dict[tuple[str, ...], list[tuple[int, Config]]] = {}
    for i, c in enumerate(configs):
        for r in c.retrievers:
            if r not in dataset.runs:
                raise ParameterError(str(unknown(f"retriever of dataset {dataset.name}", r, dataset.runs)))
        by_subset.setdefault(c.retrievers, []).append((i, c))
    if not configs:
        return []
    used = list(dict.fromkeys(r for sub in by_subset for r in sub))
    _SHARED.update(full=align([dataset.runs[r] for r in used]), used=used, dataset=dataset, metrics=tuple(metrics))
    # jobs of a few configurations each, so progress moves and both workers stay busy to the end
    jobs = []
    for sub, items in by_subset.items():
        for a in range(0, len(items), 6):
            jobs.append((sub, items[a:a + 6]))
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    out: list[Result | None] = [None] * len(configs)
    done = _offset
    try:
        use_pool = workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods()
        pool = mp.get_context("fork").Pool(workers) if use_pool else None
        try:
            parts = pool.imap_unordered(_work, jobs) if pool is not None else map(_work, jobs)
            for part in parts:
                for i, r in part:
                    out[i] = r
                done += len(part)
                if progress is not None:
                    c = part[-1][1].config
                    progress(done, total, f"{dataset.name}: {c.method} {'+'.join(c.retrievers)}")
        finally:
            if pool is not None:
                pool.terminate()
    finally:
        _SHARED.clear()
    return [r for r in out if r is not None]


def tune(results: Sequence[Result], metric: str = "R@1") -> dict[tuple, Config]:
    """Best configuration per (method, norm, retriever subset) by ``metric`` (ties: first in grid order)."""
    best: dict[tuple, Result] = {}
    for r in results:
        k = (r.config.method, r.config.norm, r.config.retrievers)
        if k not in best or r.metrics.get(metric, -np.inf) > best[k].metrics.get(metric, -np.inf):
            best[k] = r
    return {k: v.config for k, v in best.items()}


def run_benchmark(datasets: Sequence, methods: Iterable[str] | None = None, subset_mode: str = "every",
                  tune_on: str | None = None, grid: Mapping | None = None,
                  metrics: Sequence[str] = DEFAULT_VIDEO_METRICS, progress: Progress | None = None,
                  workers: int | None = None) -> dict[str, list[Result]]:
    """Sweep several datasets. With ``tune_on`` (a dataset name), each (method, norm, subset)'s parameters are the
    best on that dataset and are applied unchanged to the others (reported with ``tuned_on``)."""
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ParameterError(f"datasets share a name: {names}; give distinct directories")
    if tune_on is not None and tune_on not in names:
        raise unknown("dataset for --tune-on", tune_on, names)
    plans = {d.name: build_configs(d.retrievers, methods, subset_mode, grid) for d in datasets}
    out: dict[str, list[Result]] = {}
    if tune_on is None:
        total = sum(len(p) for p in plans.values())
        done = 0
        for d in datasets:
            out[d.name] = sweep(d, plans[d.name], metrics, progress, done, total, workers=workers)
            done += len(plans[d.name])
        return out
    tune_ds = next(d for d in datasets if d.name == tune_on)
    others = [d for d in datasets if d.name != tune_on]
    # the other datasets run one configuration per (method, norm, subset) once tuning is known
    n_other = sum(len({(c.method, c.norm, c.retrievers) for c in plans[d.name]}) for d in others)
    total = len(plans[tune_on]) + n_other
    out[tune_on] = sweep(tune_ds, plans[tune_on], metrics, progress, 0, total, workers=workers)
    chosen = tune(out[tune_on])
    done = len(plans[tune_on])
    for d in others:
        cfgs, seen = [], set()
        for c in plans[d.name]:
            k = (c.method, c.norm, c.retrievers)
            if k in seen:
                continue
            seen.add(k)
            t = chosen.get(k)
            cfgs.append(Config(c.method, c.norm, t.params if t is not None else c.params, c.retrievers))
        res = sweep(d, cfgs, metrics, progress, done, total, workers=workers)
        for r in res:
            if r.config.method != "single" and (r.config.method, r.config.norm, r.config.retrievers) in chosen:
                r.tuned_on = tune_on
        out[d.name] = res
        done += len(cfgs)
    return out
