"""mmfuse: fuse many text-to-video retrievers and rerank with a vision-language model.

Public API: ``Run``, ``Qrels`` (result lists and judgements), ``fuse`` (all fusion methods), ``evaluate``
(metrics), ``Pipeline`` (retrieve -> fuse -> rerank). ``import mmfuse`` loads numpy and pyarrow only; the rest
loads on first use. The package is laid out in rooms, each importing only from rooms below it (see
``docs/design.md``): errors/utils, runs, fusion/eval, encoders/store, retrievers/llm, ingest/expand, rerankers,
benchmarks, config, pipeline, app.
"""

from __future__ import annotations

from mmfuse import _deprecated
from mmfuse.errors import MmfuseError
from mmfuse.runs import Qrels, Run

__version__ = "0.1.0"
__all__ = ["Run", "Qrels", "MmfuseError", "fuse", "interleave", "evaluate", "Pipeline", "__version__"]

_deprecated.install()

_LAZY = {"fuse": "mmfuse.fusion", "interleave": "mmfuse.fusion", "evaluate": "mmfuse.eval",
         "Pipeline": "mmfuse.pipeline"}


def __getattr__(name: str):
    # Lazy: `import mmfuse` stays light (no fusion registry, no pipeline) until these are used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmfuse' has no attribute {name!r}")
