"""Score-based fusion: CombSUM, CombMNZ, CombMAX, CombMIN, CombMED, CombANZ, CombGMNZ, wsum, wmnz, mixed.

All are scatter-reductions of the (normalised) entry values over (query, doc) pairs. A doc missing from a run has
no entry there (except under Borda normalisation): it adds 0 to sums, and the "count" (MNZ, ANZ, MED, GMNZ,
wmnz, mixed) only counts the runs that hold the doc, exactly as ranx does. CombMAX/CombMIN take the max/min over
the runs that hold the doc (ranx pads with -1e9 / 1e9, which is the same for scores of magnitude below 1e9).
"""

from __future__ import annotations

import numpy as np

from .align import FusionInput
from .fast import FastSpec
from .registry import Param, register_method

_NORM = "min-max"  # ranx's default normalisation for score-based fusion


@register_method("combsum", aliases=("sum", "comb_sum"), default_norm=_NORM, ranx="sum", fast=FastSpec("value"))
def combsum(ctx: FusionInput) -> np.ndarray:
    """CombSUM (Fox & Shaw 1993): sum of the normalised scores."""
    return ctx.pair_sum(ctx.value)


@register_method("combmnz", aliases=("mnz", "comb_mnz"), default_norm=_NORM, ranx="mnz",
                 fast=FastSpec("value", "mnz"))
def combmnz(ctx: FusionInput) -> np.ndarray:
    """CombMNZ: CombSUM times the number of runs that retrieved the doc."""
    return ctx.pair_sum(ctx.value) * ctx.pair_count()


@register_method("combmax", aliases=("max", "comb_max"), default_norm=_NORM, ranx="max")
def combmax(ctx: FusionInput) -> np.ndarray:
    """CombMAX: the highest normalised score over the runs holding the doc."""
    out = np.full(ctx.n_pairs, -np.inf)
    np.maximum.at(out, ctx.pair, ctx.value)
    return out


@register_method("combmin", aliases=("min", "comb_min"), default_norm=_NORM, ranx="min")
def combmin(ctx: FusionInput) -> np.ndarray:
    """CombMIN: the lowest normalised score over the runs holding the doc."""
    out = np.full(ctx.n_pairs, np.inf)
    np.minimum.at(out, ctx.pair, ctx.value)
    return out


@register_method("combmed", aliases=("med", "comb_med"), default_norm=_NORM, ranx="med")
def combmed(ctx: FusionInput) -> np.ndarray:
    """CombMED: the median normalised score over the runs holding the doc."""
    order = np.lexsort((ctx.value, ctx.pair))
    v = ctx.value[order]
    counts = np.bincount(ctx.pair, minlength=ctx.n_pairs)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lo = start + (counts - 1) // 2
    hi = start + counts // 2
    return 0.5 * (v[lo] + v[hi])


@register_method("combanz", aliases=("anz", "comb_anz"), default_norm=_NORM, ranx="anz",
                 fast=FastSpec("value", "anz"))
def combanz(ctx: FusionInput) -> np.ndarray:
    """CombANZ: CombSUM divided by the number of runs that retrieved the doc."""
    return ctx.pair_sum(ctx.value) / ctx.pair_count()


@register_method("combgmnz", aliases=("gmnz", "comb_gmnz"), default_norm=_NORM, ranx="gmnz",
                 fast=FastSpec("value", "pow", None, "gamma"),
                 params=[Param("gamma", 1.0, float, "exponent of the hit count (1 = CombMNZ)")])
def combgmnz(ctx: FusionInput, gamma: float) -> np.ndarray:
    """CombGMNZ: CombSUM times (number of runs holding the doc) ** gamma."""
    return ctx.pair_sum(ctx.value) * ctx.pair_count() ** gamma


@register_method("wsum", aliases=("weighted_sum", "combwsum"), default_norm=_NORM, weighted=True, ranx="wsum",
                 fast=FastSpec("value"))
def wsum(ctx: FusionInput) -> np.ndarray:
    """Weighted sum: sum of weight_r * normalised score (equal weights = CombSUM)."""
    return ctx.pair_sum(ctx.value if ctx.uniform else ctx.value * ctx.entry_weight())


@register_method("wmnz", default_norm=_NORM, weighted=True, ranx="wmnz")
def wmnz(ctx: FusionInput) -> np.ndarray:
    """Weighted MNZ (ranx): sum of scores times the summed weights of the runs holding the doc."""
    return ctx.pair_sum(ctx.value) * ctx.pair_sum(ctx.entry_weight())


@register_method("mixed", default_norm=_NORM, weighted=True, ranx="mixed")
def mixed(ctx: FusionInput) -> np.ndarray:
    """Mixed (ranx): weighted sum times sqrt(number of runs holding the doc)."""
    return ctx.pair_sum(ctx.value * ctx.entry_weight()) * np.sqrt(ctx.pair_count())
