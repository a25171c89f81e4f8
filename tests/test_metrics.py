"""Metrics: ranx as the oracle (hypothesis), hand-computed cases, dense path == Run path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmfuse import Qrels, Run
from mmfuse.errors import ParameterError
from mmfuse.eval.metrics import (
    dense_metrics,
    dense_relevant_ranks,
    evaluate,
    parse_metric,
    run_relevant_ranks,
    run_video_metrics,
    video_metrics,
)

RANX_METRICS = ["hits@5", "hit_rate@3", "precision@5", "precision", "recall@10", "recall@100", "f1@5", "r-precision",
                "mrr@10", "mrr", "map", "map@5", "ndcg@10", "ndcg", "ndcg_burges@5", "map-l2", "recall@5-l2"]
# trec_eval's names (as -m takes them and as it prints them) and common shorthands -> the ranx metric they compute
ALIASES = {"P_5": "precision@5", "P.5": "precision@5", "P@5": "precision@5", "recall_10": "recall@10",
           "recall.100": "recall@100", "ndcg_cut_10": "ndcg@10", "nDCG@10": "ndcg@10", "ndcg_cut.3": "ndcg@3",
           "map_cut_5": "map@5", "AP": "map", "recip_rank": "mrr", "RR@10": "mrr@10", "MRR@10": "mrr@10",
           "success_3": "hit_rate@3", "Success@1": "hit_rate@1", "Rprec": "r-precision", "P_5-l2": "precision@5-l2"}


@st.composite
def qrels_and_run(draw):
    n_q = draw(st.integers(1, 6))
    n_d = draw(st.integers(1, 15))
    qd, rd = {}, {}
    for q in range(n_q):
        judged = draw(st.lists(st.integers(0, n_d - 1), min_size=1, max_size=n_d, unique=True))
        qd[f"q{q}"] = {f"d{d}": draw(st.integers(0, 3)) for d in judged}
        if draw(st.booleans()) or q == 0:
            ret = draw(st.lists(st.integers(0, n_d - 1), min_size=1, max_size=n_d, unique=True))
            # distinct scores: ranx's tie order is not trec_eval's, ties are tested separately
            scores = draw(st.permutations(list(range(len(ret)))))
            rd[f"q{q}"] = {f"d{d}": float(s) + 0.5 for d, s in zip(ret, scores)}
    return qd, rd


@settings(max_examples=30, deadline=None)
@given(qrels_and_run())
def test_evaluate_matches_ranx(data):
    import ranx

    qd, rd = data
    ours = evaluate(Qrels.from_dict(qd), Run.from_dict(rd), RANX_METRICS + list(ALIASES))
    wanted = list(dict.fromkeys(RANX_METRICS + list(ALIASES.values())))
    theirs = ranx.evaluate(ranx.Qrels(qd), ranx.Run(rd), wanted, make_comparable=True)
    for m in RANX_METRICS:
        assert ours[m] == pytest.approx(float(theirs[m]), rel=1e-9, abs=1e-12), m
    for alias, m in ALIASES.items():
        assert ours[alias] == pytest.approx(float(theirs[m]), rel=1e-9, abs=1e-12), alias


def test_hand_computed_case():
    # one query, relevant d1 (rel 2) at rank 2 and d3 (rel 1) at rank 4 of a 4-doc list; d9 (rel 1) never retrieved
    qrels = Qrels.from_dict({"q": {"d1": 2, "d3": 1, "d9": 1}})
    run = Run.from_dict({"q": {"d0": 4.0, "d1": 3.0, "d2": 2.0, "d3": 1.0}})
    m = evaluate(qrels, run, ["mrr@10", "recall@2", "precision@4", "map", "ndcg@10", "hits@4"])
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["precision@4"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["hits@4"] == 2.0
    v = run_video_metrics(qrels, run, ["R@1", "R@5", "MdR", "MnR"])
    assert v == {"R@1": 0.0, "R@5": 1.0, "MdR": 2.0, "MnR": 2.0}  # R@k: a fraction of the queries


def test_ties_trec_and_optimistic():
    # d_b and d_a tie at the top: trec_eval order puts the higher doc id first
    qrels = Qrels.from_dict({"q": {"d_a": 1}})
    run = Run.from_dict({"q": {"d_a": 1.0, "d_b": 1.0, "d_c": 0.5}})
    assert run_video_metrics(qrels, run, ["R@1"])["R@1"] == 0.0
    assert run_video_metrics(qrels, run, ["R@1"], ties="optimistic")["R@1"] == 1.0
    m = np.array([[1.0, 1.0, 0.5]])
    assert dense_metrics(m, np.array([0]), doc_order=np.array([0, 1, 2]), metrics=["R@1"])["R@1"] == 0.0
    assert dense_metrics(m, np.array([0]), metrics=["R@1"], ties="optimistic")["R@1"] == 1.0


def test_dense_path_equals_run_path():
    rng = np.random.default_rng(3)
    S = np.round(rng.normal(size=(40, 25)), 1)  # rounding makes ties
    gt = rng.integers(0, 25, size=40)
    qids = [f"q{i}" for i in range(40)]
    dids = [f"v{j:02d}" for j in range(25)]
    run = Run.from_matrix(S, qids, dids)
    qrels = Qrels.from_dict({qids[i]: {dids[gt[i]]: 1} for i in range(40)})
    order = np.argsort(np.argsort(np.asarray(dids)))
    names = ["R@1", "R@5", "R@10", "MdR", "MnR", "MRR@10", "nDCG@10", "MAP", "P@5"]
    for ties in ("trec", "optimistic"):
        d = video_metrics(dense_relevant_ranks(S, gt, order, ties=ties), names)
        r = video_metrics(run_relevant_ranks(qrels, run, ties=ties), names)
        assert d == pytest.approx(r)
    # a boolean ground-truth mask with several relevant columns per row gives the best rank per query
    mask = np.zeros_like(S, dtype=bool)
    mask[np.arange(40), gt] = True
    mask[:, 0] = True
    best = dense_relevant_ranks(S, mask, order)
    assert best.qidx.size == mask.sum()


def test_unretrieved_relevant_gets_expected_random_rank():
    qrels = Qrels.from_dict({"q": {"x": 1}})
    run = Run.from_dict({"q": {"a": 3.0, "b": 2.0}})
    rr = run_relevant_ranks(qrels, run, n_docs=10)
    assert np.isinf(rr.rank).all()
    # 2 listed, x among the 8 others at random: expected rank 2 + (8 + 1) / 2
    assert video_metrics(rr, ["MnR", "R@10"]) == {"MnR": 6.5, "R@10": 0.0}


def test_unknown_metric_suggests():
    with pytest.raises(ParameterError, match="ndcg"):
        evaluate(Qrels.from_dict({"q": {"a": 1}}), Run.from_dict({"q": {"a": 1.0}}), ["ndgc@10"])


def test_trec_eval_names_hand_computed():
    # q1 ranks a (rel 1) b c d (rel 2); q2 ranks c (rel 1) first; q10 is judged but not in the run (counts as an empty
    # list, trec_eval -c). Per query: P_2 .5/.5/0, recall_2 .5/1/0, map (1 + 2/4)/2 = .75 / 1 / 0, recip_rank 1/1/0,
    # Rprec 1/2 / 1 / 0, ndcg_cut_2 of q1: DCG 1 / ideal (2 + 1/log2 3)
    qrels = Qrels.from_dict({"q1": {"a": 1, "d": 2}, "q2": {"c": 1}, "q10": {"x": 1}})
    run = Run.from_dict({"q1": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}, "q2": {"c": 1.5, "a": 0.5}})
    m = evaluate(qrels, run, ["P_2", "recall_2", "map", "recip_rank", "success_1", "Rprec", "ndcg_cut_2"])
    assert m["P_2"] == pytest.approx(1 / 3)
    assert m["recall_2"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(1.75 / 3)
    assert m["recip_rank"] == pytest.approx(2 / 3) and m["success_1"] == pytest.approx(2 / 3)
    assert m["Rprec"] == pytest.approx(0.5)
    assert m["ndcg_cut_2"] == pytest.approx((1 / (2 + 1 / math.log2(3)) + 1) / 3)


@pytest.mark.parametrize("name, match", [
    ("R@10", "ambiguous: write recall@10"), ("P", "needs a cutoff, such as P_10"), ("ndcg_cut", "needs a cutoff"),
    ("success", "needs a cutoff"), ("P_x", "unknown metric"), ("ndcg@", "did you mean 'ndcg@10'"),
])
def test_bad_metric_names(name, match):
    with pytest.raises(ParameterError, match=match):
        parse_metric(name)
