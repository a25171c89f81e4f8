"""Retrieval metrics, vectorized over all queries: IR metrics under ranx's and trec_eval's names, and the
video-retrieval summary R@k/MdR/MnR.

Names. Every IR metric has a ranx name (``ndcg@10``, ``precision@10``, ``recall@100``, ``mrr``, ``map@100``,
``hit_rate@1``, ``r-precision``) and is also accepted under trec_eval's name (``ndcg_cut_10``, ``P_10``,
``recall_100``, ``recip_rank``, ``map_cut_100``, ``success_1``, ``Rprec``; ``_`` or ``.`` before the cutoff, as in
trec_eval's output and its ``-m`` option) and the usual shorthands (``P@10``, ``nDCG@10``, ``AP``, ``RR@10``,
``MRR@10``, ``Success@1``). Each trec_eval name maps to the ranx metric with the same definition (both divide P@k
by k, AP by the number of relevant docs, and take nDCG's gain from the relevance level, discounted by
log2(rank + 1)), so one computation serves both. ``-lN`` after a name sets the minimum relevance level as in ranx,
nDCG included (trec_eval's ``-l`` leaves nDCG's gains alone). ``R@k`` is refused as ambiguous: recall@k to
ir_measures, hit_rate@k in video retrieval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mmfuse.errors import InputError, ParameterError, unknown

# ranx metric names this module implements; "@k" optional on each (k=0 / absent means the whole list)
RANX_METRICS = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "ndcg", "ndcg_burges")
# video-retrieval summary metrics (R@k, MRR, nDCG, MAP as fractions of 1; ranks 1-based), the benchmark JSON's keys
VIDEO_METRICS = ("R@1", "R@5", "R@10", "R@50", "R@100", "MdR", "MnR", "MRR@10", "nDCG@10", "MAP")
DEFAULT_VIDEO_METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR", "MRR@10", "nDCG@10")


@dataclass
class RelevantRanks:
    """The ranks of every judged-relevant item, the whole input any metric needs.

    ``qidx``/``rank``/``rel`` describe one row per (query, relevant doc) pair with ``rel >= 1``; ``rank`` is
    1-based and ``inf`` when the doc was not retrieved. ``n_queries`` counts the evaluated queries (also those with
    no relevant doc), ``list_len`` is each query's result-list length (precision@0 divides by it) and
    ``n_docs`` the collection size, used to place unretrieved relevant docs for mean/median rank.
    """

    n_queries: int
    qidx: np.ndarray
    rank: np.ndarray
    rel: np.ndarray
    list_len: np.ndarray
    n_docs: int


# trec_eval measures -> the ranx metric with the same definition; the first group needs a cutoff (P_10, P.10)
TREC_EVAL_CUT = {"p": "precision", "recall": "recall", "ndcg_cut": "ndcg", "map_cut": "map", "success": "hit_rate"}
TREC_EVAL_WHOLE = {"map": "map", "ndcg": "ndcg", "recip_rank": "mrr", "rprec": "r-precision", "recall": "recall"}
# shorthands of papers and ir_measures (lower-cased) -> ranx names; P and Success need a cutoff (P@10)
SHORTHANDS = {"p": "precision", "ap": "map", "rr": "mrr", "success": "hit_rate", "rprec": "r-precision"}
_WHOLE_LIST = {**{m: m for m in RANX_METRICS}, **TREC_EVAL_WHOLE, "ap": "map", "rr": "mrr"}
_TREC_RE = re.compile(r"^([a-z][a-z_]*?)(?:[_.](\d+))?$")
_LEVEL_RE = re.compile(r"^(.*?)-l(\d+)$")


def parse_metric(name: str) -> tuple[str, int, int]:
    """A metric name (ranx, trec_eval or shorthand; see the module docstring) -> (ranx metric, k, rel_lvl), k=0
    meaning the whole list; raises ParameterError naming the metric."""
    text = str(name).strip()
    level = _LEVEL_RE.match(text)
    base, lvl = (level.group(1), int(level.group(2))) if level else (text, 1)
    low = base.lower()
    if "@" in low:
        metric, _, cut = low.partition("@")
        metric = SHORTHANDS.get(metric, metric)
        if metric == "r":
            raise ParameterError(f"metric {text!r} is ambiguous: write recall@{cut} (relevant docs found) or hit_rate@"
                                 f"{cut} (video retrieval's R@k: queries with a relevant doc in the top {cut})")
        if metric in RANX_METRICS and cut.isdigit():
            return metric, int(cut), lvl
    elif low in _WHOLE_LIST:
        return _WHOLE_LIST[low], 0, lvl
    else:
        m = _TREC_RE.match(low)
        if m and m.group(1) in TREC_EVAL_CUT:
            if not m.group(2):
                raise ParameterError(f"metric {text!r} needs a cutoff, such as {base}_10")
            return TREC_EVAL_CUT[m.group(1)], int(m.group(2)), lvl
    raise unknown("metric", text, [f"{x}@10" for x in RANX_METRICS if x != "r-precision"]
                  + ["r-precision", "P_10", "ndcg_cut_10", "recall_100", "recip_rank", "success_1", "Rprec", "P@10"])


# ---- ranks -> metrics ------------------------------------------------------------------------------------------
def _per_query(rr: RelevantRanks, metric: str, k: int, rel_lvl: int) -> np.ndarray:
    Q = rr.n_queries
    keep = rr.rel >= rel_lvl
    q, rank, rel = rr.qidx[keep], rr.rank[keep], rr.rel[keep].astype(np.float64)
    nrel = np.bincount(q, minlength=Q).astype(np.float64)
    has = nrel > 0
    kk = np.where(k > 0, k, rr.list_len).astype(np.float64)  # k=0: whole list (ranx fix_k)
    within = rank <= kk[q]

    def hits() -> np.ndarray:
        return np.bincount(q, weights=within.astype(np.float64), minlength=Q)

    if metric == "hits":
        return hits()
    if metric == "hit_rate":
        return (hits() > 0).astype(np.float64)
    if metric == "precision":
        return np.divide(hits(), kk, out=np.zeros(Q), where=kk > 0) * has
    if metric == "recall":
        return np.divide(hits(), nrel, out=np.zeros(Q), where=has) * (kk > 0)
    if metric == "f1":
        p = np.divide(hits(), kk, out=np.zeros(Q), where=kk > 0) * has
        r = np.divide(hits(), nrel, out=np.zeros(Q), where=has)
        return np.divide(2 * p * r, p + r, out=np.zeros(Q), where=(p + r) > 0)
    if metric == "r-precision":
        w = (rank <= nrel[q]).astype(np.float64)
        return np.divide(np.bincount(q, weights=w, minlength=Q), nrel, out=np.zeros(Q), where=has)
    if metric == "mrr":
        best = np.full(Q, np.inf)
        np.minimum.at(best, q[within], rank[within])
        return np.where(np.isfinite(best), 1.0 / np.where(np.isfinite(best), best, 1.0), 0.0)
    if metric == "map":
        # precision at each relevant hit = (number of relevant ranked at or above it) / its rank
        order = np.lexsort((rank, q))
        qs, rs, ws = q[order], rank[order], within[order]
        start = np.searchsorted(qs, np.arange(Q))
        pos = np.arange(qs.size) - start[qs] + 1  # 1-based position among the query's relevant, by rank
        contrib = np.where(ws, pos / np.where(np.isfinite(rs), rs, 1.0), 0.0)
        return np.divide(np.bincount(qs, weights=contrib, minlength=Q), nrel, out=np.zeros(Q), where=has)
    if metric in ("ndcg", "ndcg_burges"):
        gain = rel if metric == "ndcg" else 2.0 ** rel - 1.0
        disc = np.where(within, 1.0 / np.log2(np.where(within, rank, 1.0) + 1.0), 0.0)
        dcg = np.bincount(q, weights=gain * disc, minlength=Q)
        # ideal: relevant docs sorted by relevance desc, cut at k (ranx: min(k, n_relevant))
        order = np.lexsort((-rel, q))
        qs, gs = q[order], gain[order]
        start = np.searchsorted(qs, np.arange(Q))
        pos = np.arange(qs.size) - start[qs] + 1
        ik = np.where(k > 0, k, np.inf)
        idcg = np.bincount(qs, weights=np.where(pos <= ik, gs / np.log2(pos + 1.0), 0.0), minlength=Q)
        idcg = np.where(idcg == 0.0, 1.0, idcg)
        return dcg / idcg
    raise ParameterError(f"metric {metric!r} is not implemented")


def metrics_from_ranks(rr: RelevantRanks, metrics: Sequence[str], per_query: bool = False) -> dict:
    """Compute ranx-named metrics (``ndcg@10``, ``recall@100``, ``mrr@10``, ``map``, ...) from relevant ranks."""
    out = {}
    for name in metrics:
        m, k, lvl = parse_metric(name)
        vals = _per_query(rr, m, k, lvl)
        out[name] = vals if per_query else (float(vals.mean()) if vals.size else 0.0)
    return out


def best_ranks(rr: RelevantRanks) -> np.ndarray:
    """Per query, the rank of its best-ranked relevant doc; unretrieved ones sit at the expected rank of a random
    placement among the docs the list did not return (so mean/median rank stay finite and comparable)."""
    Q = rr.n_queries
    keep = rr.rel >= 1
    fill = rr.list_len[rr.qidx[keep]] + (rr.n_docs - rr.list_len[rr.qidx[keep]] + 1) / 2.0
    r = np.where(np.isfinite(rr.rank[keep]), rr.rank[keep], fill)
    best = np.full(Q, np.inf)
    np.minimum.at(best, rr.qidx[keep], r)
    return best


def video_metrics(rr: RelevantRanks, metrics: Iterable[str] = DEFAULT_VIDEO_METRICS) -> dict[str, float]:
    """The video-retrieval summary: R@k (the fraction of queries with a relevant item in the top k), MdR, MnR, and
    MRR@10 / nDCG@10 / MAP (ranx definitions); every value but the ranks is a fraction of 1, as trec_eval and ranx
    print them. Queries without any relevant item are excluded."""
    best = best_ranks(rr)
    valid = np.isfinite(best)
    # R@k counts only retrieved items: an unretrieved relevant doc is a miss at every k
    keep = (rr.rel >= 1) & np.isfinite(rr.rank)
    got = np.full(rr.n_queries, np.inf)
    np.minimum.at(got, rr.qidx[keep], rr.rank[keep])
    out: dict[str, float] = {}
    for name in metrics:
        if name.startswith("R@"):
            k = int(name[2:])
            out[name] = float((got[valid] <= k).mean()) if valid.any() else 0.0
        elif name == "MdR":
            out[name] = float(np.median(best[valid])) if valid.any() else float("nan")
        elif name == "MnR":
            out[name] = float(best[valid].mean()) if valid.any() else float("nan")
        elif name in ("MRR@10", "nDCG@10", "MAP"):
            ranx_name = {"MRR@10": "mrr@10", "nDCG@10": "ndcg@10", "MAP": "map"}[name]
            m, k, lvl = parse_metric(ranx_name)
            vals = _per_query(rr, m, k, lvl)
            out[name] = float(vals[valid].mean()) if valid.any() else 0.0
        elif name.startswith("P@"):
            vals = _per_query(rr, "precision", int(name[2:]), 1)
            out[name] = float(vals[valid].mean()) if valid.any() else 0.0
        else:
            raise ParameterError(f"unknown video metric {name!r}; choose from {', '.join(VIDEO_METRICS)}, P@k")
    return out


# ---- dense matrices ----------------------------------------------------------------------------------------------
def dense_relevant_ranks(scores: np.ndarray, gt: np.ndarray | Sequence[np.ndarray], doc_order: np.ndarray | None = None,
                         ties: str = "trec", chunk: int = 2048) -> RelevantRanks:
    """Ranks of the relevant columns of a dense [Q x D] score matrix, by comparisons over the row.

    ``gt`` is either an int array [Q] (one relevant column per query) or a boolean mask [Q x D]. Ties are broken
    like trec_eval (higher doc id first): ``doc_order`` gives each column's position in the sorted doc-id table;
    without it ties count against the relevant doc (pessimistic). ``ties="optimistic"`` ranks a relevant doc
    first among equal scores (rank = 1 + number of strictly higher scores), the convention of the usual
    video-retrieval evaluation code (CLIP4Clip's ``compute_metrics``). Every column counts as retrieved.
    """
    _check_ties(ties)
    S = np.asarray(scores)
    Q, D = S.shape
    gt = np.asarray(gt)
    if gt.ndim == 1:
        qidx = np.arange(Q, dtype=np.int64)
        col = gt.astype(np.int64)
    else:
        qidx, col = np.nonzero(gt)
    rank = np.empty(qidx.size, dtype=np.float64)
    for a in range(0, qidx.size, chunk):
        q, c = qidx[a:a + chunk], col[a:a + chunk]
        rows = S[q]
        g = S[q, c][:, None]
        above = (rows > g).sum(1)
        if ties == "optimistic":
            ties_n = 0
        elif doc_order is None:
            ties_n = (rows == g).sum(1) - 1
        else:
            ties_n = ((rows == g) & (doc_order[None, :] > doc_order[c][:, None])).sum(1)
        rank[a:a + chunk] = 1 + above + ties_n
    return RelevantRanks(Q, qidx, rank, np.ones(qidx.size, dtype=np.int64), np.full(Q, D, dtype=np.int64), D)


def dense_metrics(scores: np.ndarray, gt, doc_order: np.ndarray | None = None,
                  metrics: Iterable[str] = DEFAULT_VIDEO_METRICS, ties: str = "trec") -> dict[str, float]:
    """Video-retrieval metrics of a dense score matrix (see :func:`dense_relevant_ranks`)."""
    return video_metrics(dense_relevant_ranks(scores, gt, doc_order, ties=ties), metrics)


def _check_ties(ties: str) -> None:
    if ties not in ("trec", "optimistic"):
        raise unknown("tie convention", ties, ["trec", "optimistic"])


def optimistic_ranks(run) -> np.ndarray:
    """Per entry, the rank of the first entry of its query with the same score (ties resolved in its favour)."""
    n = len(run)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    start_of_q = np.repeat(run.offsets[:-1], run.counts())
    s = run.scores
    new = np.ones(n, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    new |= idx == start_of_q
    first = np.maximum.accumulate(np.where(new, idx, 0))
    return first - start_of_q + 1


# ---- Runs --------------------------------------------------------------------------------------------------------
def run_relevant_ranks(qrels, run, n_docs: int | None = None, ties: str = "trec") -> RelevantRanks:
    """Ranks of every relevant doc of ``qrels`` in ``run`` (inf when absent), over the queries of ``qrels``.

    Like ranx with ``make_comparable=True``: queries of the qrels missing from the run count as empty lists,
    run queries without qrels are ignored. ``ties="optimistic"``: see :func:`dense_relevant_ranks`.
    """
    _check_ties(ties)
    Q = qrels.n_queries
    if Q == 0:
        raise InputError(f"{getattr(qrels, 'name', 'qrels')}: no queries to evaluate")
    # run query -> qrels query
    rq_sorter = np.argsort(run.query_ids.astype(str)) if run.n_queries else np.zeros(0, dtype=np.int64)
    rq_sorted = run.query_ids.astype(str)[rq_sorter] if run.n_queries else np.zeros(0, dtype=str)
    qq = qrels.query_ids.astype(str)
    pos = np.searchsorted(rq_sorted, qq)
    found = (pos < rq_sorted.size) & (rq_sorted[np.minimum(pos, max(rq_sorted.size - 1, 0))] == qq) if rq_sorted.size else np.zeros(Q, bool)
    run_q_of = np.where(found, rq_sorter[np.minimum(pos, max(rq_sorter.size - 1, 0))] if rq_sorter.size else 0, -1)
    counts = run.counts()
    list_len = np.where(found, counts[np.maximum(run_q_of, 0)] if counts.size else 0, 0).astype(np.int64)

    # relevant pairs of qrels (rel >= 1 kept for all levels; lower levels filtered by the metric)
    qrel_q = qrels.qidx()
    rel = qrels.relevance.astype(np.int64)
    pos_mask = rel >= 1
    qrel_q, rel = qrel_q[pos_mask], rel[pos_mask]
    qrel_doc = qrels.doc_ids.astype(str)[qrels.doc_idx[pos_mask]]

    # look up (run query, doc) in the run through a common key space
    rank = np.full(qrel_q.size, np.inf)
    if len(run):
        rdocs = run.doc_ids.astype(str)
        dpos = np.searchsorted(rdocs, qrel_doc)
        dfound = (dpos < rdocs.size) & (rdocs[np.minimum(dpos, rdocs.size - 1)] == qrel_doc)
        rq = run_q_of[qrel_q]
        ok = dfound & (rq >= 0)
        nd = np.int64(rdocs.size)
        run_keys = run.qidx() * nd + run.doc_idx
        want = rq[ok].astype(np.int64) * nd + dpos[ok]
        sorter = np.argsort(run_keys, kind="stable")
        hit = np.searchsorted(run_keys, want, sorter=sorter)
        hit = np.minimum(hit, run_keys.size - 1)
        match = run_keys[sorter[hit]] == want
        entry = sorter[hit]
        r = np.full(want.size, np.inf)
        r[match] = (optimistic_ranks(run) if ties == "optimistic" else run.ranks())[entry[match]]
        rank[np.flatnonzero(ok)] = r
    if n_docs is None:
        n_docs = int(max(run.doc_ids.size if len(run) else 0, list_len.max(initial=0)))
    return RelevantRanks(Q, qrel_q.astype(np.int64), rank, rel, list_len, int(n_docs))


class Evaluation(dict):
    """Metric name -> mean (or per-query values), plus how many qrels queries were evaluated (``queries``), their ids
    in the order of the per-query values (``query_ids``) and how many of them the run answers with at least one
    entry (``matched``). Unanswered queries count as empty lists (as in ranx with ``make_comparable`` and
    ``trec_eval -c``), so a run whose query ids do not match the qrels scores 0 on every metric: ``matched`` tells
    that apart from a run that is merely bad."""

    def __init__(self, values: dict, queries: int, matched: int, query_ids: Sequence[str] = ()) -> None:
        super().__init__(values)
        self.queries = int(queries)
        self.matched = int(matched)
        self.query_ids = list(query_ids)


def evaluate(qrels, run, metrics: Sequence[str] | str = ("ndcg@10", "recall@100", "mrr@10", "map"),
             per_query: bool = False) -> Evaluation:
    """Mean (or per-query) metrics of ``run`` against ``qrels`` with ranx's definitions, under ranx's or trec_eval's
    names (see :func:`parse_metric`); every qrels query counts (``trec_eval -c``).

    ``ndcg`` is ranx's Jarvelin form (gain = relevance), ``ndcg_burges`` uses 2^rel - 1; ``-lN`` sets the minimum
    relevance level (``map-l2``). Ties inside the run follow the run's order (score desc, doc id desc). The result
    is a dict with the query counts as attributes (see :class:`Evaluation`).
    """
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m]
    rr = run_relevant_ranks(qrels, run)
    return Evaluation(metrics_from_ranks(rr, list(metrics), per_query=per_query), rr.n_queries,
                      int((rr.list_len > 0).sum()), qrels.query_ids.tolist())


def run_video_metrics(qrels, run, metrics: Iterable[str] = DEFAULT_VIDEO_METRICS, n_docs: int | None = None,
                      ties: str = "trec") -> dict:
    """Video-retrieval summary metrics (R@k as a fraction, MdR, MnR, ...) of a Run."""
    return video_metrics(run_relevant_ranks(qrels, run, n_docs=n_docs, ties=ties), metrics)
