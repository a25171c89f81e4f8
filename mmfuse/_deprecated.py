"""Old module paths of the flat 0.1 layout, kept importable with a DeprecationWarning.

``mmfuse.indexing``, ``mmfuse.run``, ``mmfuse.media`` ... moved into rooms (``mmfuse.ingest``, ``mmfuse.runs``,
...). Rather than leaving one shim file per old module at the top of the package (the clutter the move removed),
one import hook answers every old name with a proxy module: each attribute is looked up in the new home(s) and
the first access warns, naming the new import. ``python -m mmfuse.cli`` keeps working too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# media.py was split by job; its public names live in these four
_MEDIA = ("mmfuse.ingest.probe", "mmfuse.ingest.frames", "mmfuse.ingest.audio", "mmfuse.ingest.segments")
# old module -> the modules that now hold its public names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "mmfuse.run": ("mmfuse.runs",),
    "mmfuse.runs.run": ("mmfuse.runs",),
    "mmfuse.index": ("mmfuse.store.lance",),
    "mmfuse.vector_index": ("mmfuse.store.ann",),
    "mmfuse.media": _MEDIA,
    "mmfuse.ingest.media": _MEDIA,
    "mmfuse.indexing": ("mmfuse.ingest.plan", "mmfuse.ingest.local", "mmfuse.pipeline"),
    "mmfuse.ray_engine": ("mmfuse.ingest.ray_engine",),
    "mmfuse.streaming": ("mmfuse.fusion.streaming",),
    "mmfuse.cli": ("mmfuse.app.cli",),
    "mmfuse.demo": ("mmfuse.app.demo",),
    "mmfuse.report_html": ("mmfuse.app.report",),
    "mmfuse.benchmarks.metrics": ("mmfuse.eval.metrics",),
    "mmfuse.benchmarks.significance": ("mmfuse.eval.significance",),
    "mmfuse.retrievers.visual": ("mmfuse.encoders.clip",),
    "mmfuse.retrievers.audio": ("mmfuse.encoders.clap",),
    "mmfuse.retrievers.asr": ("mmfuse.encoders.whisper",),
    "mmfuse.retrievers.ocr": ("mmfuse.encoders.ocr",),
    "mmfuse.retrievers.text": ("mmfuse.utils.text", "mmfuse.store.bm25", "mmfuse.encoders.text"),
}
_MAIN = {"mmfuse.cli": "from mmfuse.app.cli import main\nmain()\n"}


class _Moved(types.ModuleType):
    """A proxy for an old module path: attributes come from the new homes, with a DeprecationWarning."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in MOVED[self.__name__]:
            mod = importlib.import_module(target)
            if hasattr(mod, attr):
                warnings.warn(f"{self.__name__} is deprecated: import {attr} from {target}", DeprecationWarning,
                              stacklevel=2)
                return getattr(mod, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} (it moved to "
                             f"{', '.join(MOVED[self.__name__])})")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        # runpy sets sys.argv[0] to the origin; give the new module's file so programs see a real path
        origin = importlib.util.find_spec(MOVED[name][0]).origin if name in _MAIN else None
        return importlib.util.spec_from_loader(name, self, origin=origin)

    def create_module(self, spec):
        return _Moved(spec.name)

    def exec_module(self, module) -> None:
        return None

    def get_source(self, name):  # runpy (``python -m mmfuse.cli``) runs this
        return _MAIN.get(name, "")

    def is_package(self, name) -> bool:
        return False


def install() -> None:
    """Add the hook once, after the normal finders (a real module of the same name always wins)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
