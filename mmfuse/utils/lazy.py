"""The one pattern for heavy optional dependencies: ``require(name, extra)`` inside the function that needs it.

Everything else is imported at the top of its module, so the structure of the package is visible there. The heavy
libraries (torch, open_clip, transformers, sentence-transformers, faster-whisper, rapidocr, PyAV, Pillow, LanceDB,
bm25s, Ray, matplotlib, httpx, FastAPI) load only when a user reaches a feature that needs them: ``import mmfuse``
stays light, and a missing extra is one clear error naming what to install instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mmfuse.errors import ModelError

__all__ = ["require", "EXTRAS"]

# distribution to install, and the mmfuse extra that brings it, per importable module
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "video"),
    "open_clip": ("open_clip_torch", "video"),
    "transformers": ("transformers", "video"),
    "sentence_transformers": ("sentence-transformers", "video"),
    "faster_whisper": ("faster-whisper", "video"),
    "rapidocr_onnxruntime": ("rapidocr-onnxruntime", "video"),
    "av": ("av", "video"),
    "PIL": ("pillow", "video"),
    "lancedb": ("lancedb", "video"),
    "bm25s": ("bm25s", "video"),
    "ray": ("ray[data]", "ray"),
    "matplotlib": ("matplotlib", "all"),
    "httpx": ("httpx", "llm"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "threadpoolctl": ("threadpoolctl", "serve"),
}


def require(name: str, extra: str | None = None, *, error: type[Exception] = ModelError) -> ModuleType:
    """Import ``name`` (e.g. ``"av"``, ``"PIL.Image"``) now; when it is not installed raise ``error`` with the pip
    command that installs it (``extra`` overrides the mmfuse extra listed in ``EXTRAS``)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        top = name.partition(".")[0]
        if e.name is not None and e.name.partition(".")[0] != top:
            raise  # the module is there but one of *its* imports is broken: that traceback is the useful one
        dist, default_extra = EXTRAS.get(top, (top, "all"))
        raise error(f"{dist} is not installed: pip install 'mmfuse[{extra or default_extra}]'") from None
