"""Fusion of ranked lists: normalisations, score/rank/adaptive methods, interleaving, and the method registry.

``fuse(runs, method=None, norm=None, weights=None, depth=None, **params) -> Run``. Importing this package
registers the built-in methods, then ``mmfuse.fusion.default`` (the adaptive default, when present); plug-ins from
the ``mmfuse.fusion`` entry-point group load on first use of the registry.

Missing-doc convention (same as ranx): queries are the union over runs and a query absent from a run is an empty
list there. A doc absent from a run has no score in it: sums (CombSUM, wsum, RRF, ISR, RBC, entropy) add nothing
for that run; hit counts (CombMNZ, CombANZ, CombMED, CombGMNZ, wmnz, mixed, ISR, log-ISR) count only the runs
that hold the doc; CombMAX/CombMIN range over the runs that hold it. Normalisation is per query over the run's own
candidates, so a missing doc effectively scores 0 *after* normalisation (e.g. the mean under zmuv). Borda is the
exception, as in ranx: under ``norm="borda"`` and in BordaFuse every candidate of the query that a run lacks gets
that run's share of the unranked points.
"""

from __future__ import annotations

from importlib import import_module

# isort: off
from . import score, rank, adaptive, interleave as _interleave_mod  # noqa: F401  (registration order = listing order)
# isort: on
from .fuse import check_weights, fuse
from .interleave import interleave, interleave_run
from .norm import NORMS, normalize
from .registry import Method, Param, default_method, get_method, methods, register_method, set_default

try:  # the adaptive default method lives in its own module (owned by the benchmark work)
    import_module(f"{__name__}.default")
except ModuleNotFoundError as e:
    if e.name != f"{__name__}.default":
        raise

__all__ = ["fuse", "interleave", "interleave_run", "methods", "register_method", "normalize", "NORMS", "Param",
           "Method", "get_method", "default_method", "set_default", "check_weights"]
