"""mmfuse: fuse many text-to-video retrievers and rerank with a vision-language model.

Public API: ``Run``, ``Qrels`` (result lists and judgements), ``fuse`` (all fusion methods), ``evaluate``
(metrics), ``Pipeline`` (retrieve -> fuse -> rerank). Heavy parts load lazily on first use.
"""

from __future__ import annotations

from .errors import MmfuseError
from .run import Qrels, Run

__version__ = "0.1.0"
__all__ = ["Run", "Qrels", "MmfuseError", "fuse", "interleave", "evaluate", "Pipeline", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import mmfuse` stays light and free of import cycles.
    if name in ("fuse", "interleave"):
        from . import fusion

        return getattr(fusion, name)
    if name == "evaluate":
        from .benchmarks.metrics import evaluate

        return evaluate
    if name == "Pipeline":
        from .pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'mmfuse' has no attribute {name!r}")
