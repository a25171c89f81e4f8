"""Writing an indexing run, the same for both engines: the one writer (the calling thread, or the Ray driver) commits
finished videos in batches, then the run ends with the plug-ins that keep their own index building it from the
committed rows, and with the store's optimization. See :mod:`mmfuse.store.lance` for why a half-written video is never
visible."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mmfuse.errors import MmfuseError
from mmfuse.store.lance import IndexStore, VideoRecord

from .extract import Timings
from .plan import IndexConfig, IndexSummary

__all__ = ["BatchWriter", "finish_run"]


class BatchWriter:
    """Buffers finished videos and commits them together: every ``cfg.batch_size`` videos or ``cfg.batch_seconds``
    seconds, whichever comes first. Batches bound both the number of commits and the work an interruption loses."""

    def __init__(self, store: IndexStore, specs: dict[str, tuple[str, dict, str]], summary: IndexSummary,
                 cfg: IndexConfig, timings: Timings) -> None:
        self.store, self.specs, self.summary, self.cfg, self.timings = store, specs, summary, cfg, timings
        self._buf: list[VideoRecord] = []
        self._last = time.perf_counter()

    def add(self, rec: VideoRecord) -> None:
        self._buf.append(rec)

    def due(self) -> None:
        """Commit the buffer if it is full or old enough."""
        if len(self._buf) >= self.cfg.batch_size or \
                (self._buf and time.perf_counter() - self._last > self.cfg.batch_seconds):
            self.flush()

    def flush(self) -> None:
        if self._buf:
            with self.timings.clock("write"):
                self.store.write_videos(self._buf, self.specs)
            for rec in self._buf:
                self.summary.indexed.append((rec.video_id, len(rec.segments), rec.info["duration"]))
                self.summary.seconds += rec.info["duration"]
                self.summary.segments += len(rec.segments)
            self._buf.clear()
        self._last = time.perf_counter()


def finish_run(store: IndexStore, plugins: Sequence[tuple[str, Any]], summary: IndexSummary, timings: Timings) -> None:
    """When the run changed the index: plug-ins with their own index (``index(store)``, no per-segment encoder) build
    it from the committed rows (they are reloaded at search time by their reference), then the store is optimized."""
    if not (summary.indexed or summary.removed):
        return
    for name, plugin in plugins:
        if not hasattr(plugin, "encode_segments") and callable(getattr(plugin, "index", None)):
            try:
                with timings.clock(name):
                    plugin.index(store)
            except MmfuseError as e:
                summary.warnings.append(f"plug-in {name}: index() failed: {e}")
    with timings.clock("optimize"):
        store.optimize()
