"""Paired significance tests of runs against a baseline: Student's t and Fisher's randomization (as ranx.compare)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmfuse.errors import ParameterError, unknown

from .metrics import evaluate

__all__ = ["paired_t_test", "fisher_randomization_test", "compare"]

TESTS = ("student", "fisher")


def paired_t_test(control: np.ndarray, treatment: np.ndarray) -> float:
    """Two-sided paired Student's t-test p-value (scipy's ``ttest_rel``, the test ranx.compare runs)."""
    from scipy.stats import ttest_rel

    control, treatment = np.asarray(control, float), np.asarray(treatment, float)
    if control.shape != treatment.shape:
        raise ParameterError(f"paired test needs per-query scores of equal length, got {control.size} and {treatment.size}")
    d = treatment - control
    if not np.any(d):
        return 1.0  # identical systems (scipy returns NaN for a zero-variance difference)
    return float(ttest_rel(control, treatment, alternative="two-sided").pvalue)


def fisher_randomization_test(control: np.ndarray, treatment: np.ndarray, n_permutations: int = 10000,
                              seed: int = 42, chunk: int = 2000) -> float:
    """Two-sided Fisher randomization test (Smucker et al., CIKM'07): the share of random per-query swaps of the two
    systems whose mean difference is at least the observed one. Vectorized as sign flips of the differences."""
    control, treatment = np.asarray(control, float), np.asarray(treatment, float)
    if control.shape != treatment.shape:
        raise ParameterError(f"paired test needs per-query scores of equal length, got {control.size} and {treatment.size}")
    if n_permutations < 1:
        raise ParameterError(f"n_permutations must be >= 1, got {n_permutations}")
    d = treatment - control
    obs = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    left = n_permutations
    while left > 0:
        n = min(chunk, left)
        signs = rng.integers(0, 2, size=(n, d.size), dtype=np.int8) * 2 - 1
        hits += int((np.abs(signs @ d) / max(d.size, 1) >= obs - 1e-12).sum())
        left -= n
    return hits / n_permutations


def compare(qrels, runs: Sequence, metrics: Sequence[str] = ("ndcg@10",), baseline: int = 0, test: str = "student",
            n_permutations: int = 10000, max_p: float = 0.01, seed: int = 42) -> dict:
    """Per-query metrics of every run and a paired test of each against ``runs[baseline]``.

    Returns ``{run_name: {metric: {"mean": float, "p_value": float | None, "significant": bool | None}}}``
    (the baseline's own p-values are None).
    """
    if test not in TESTS:
        raise unknown("significance test", test, TESTS)
    if not runs:
        raise ParameterError("compare: no runs given")
    if not 0 <= baseline < len(runs):
        raise ParameterError(f"baseline index {baseline} out of range for {len(runs)} runs")
    per = [evaluate(qrels, r, list(metrics), per_query=True) for r in runs]
    out: dict = {}
    for i, r in enumerate(runs):
        name = str(r.name)
        if name in out:
            name = f"{name}#{i}"
        out[name] = {}
        for m in metrics:
            entry = {"mean": float(per[i][m].mean()), "p_value": None, "significant": None}
            if i != baseline:
                p = (paired_t_test(per[baseline][m], per[i][m]) if test == "student"
                     else fisher_randomization_test(per[baseline][m], per[i][m], n_permutations, seed))
                entry["p_value"] = p
                entry["significant"] = bool(p <= max_p)
            out[name][m] = entry
    return out
