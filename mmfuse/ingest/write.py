"""Writing an indexing run, the same for both engines: the one writer (the calling thread, or the Ray driver) commits
finished videos in batches, with the modalities a file carries over from the index read back first; then the run ends
with the plug-ins that keep their own index building it from the committed rows, and with the store's optimization.
See :mod:`mmfuse.store.lance` for why a half-written video is never visible."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfuse.errors import MmfuseError
from mmfuse.store.lance import IndexStore

from .extract import SEGMENT_TEXT, FileExtraction, Timings
from .plan import IndexConfig, IndexSummary

__all__ = ["BatchWriter", "finish_run"]

# why a file whose modalities cannot be carried over is not written (its old entry stays as it was)
OTHER_WINDOWS = ("its segments differ from the ones the index holds for it (indexed with another --window?), so its "
                 "other modalities cannot be kept: index with the same --window, or into a new --index")


class BatchWriter:
    """Buffers finished files and commits them together: every ``cfg.batch_size`` videos or ``cfg.batch_seconds``
    seconds, whichever comes first. Batches bound both the number of commits and the work an interruption loses."""

    def __init__(self, store: IndexStore, specs: dict[str, tuple[str, dict, str]], summary: IndexSummary,
                 cfg: IndexConfig, timings: Timings) -> None:
        self.store, self.specs, self.summary, self.cfg, self.timings = store, specs, summary, cfg, timings
        self._buf: list[FileExtraction] = []
        self._last = time.perf_counter()

    def add(self, work: FileExtraction) -> None:
        self._buf.append(work)

    def due(self) -> None:
        """Commit the buffer if it is full or old enough."""
        if len(self._buf) >= self.cfg.batch_size or \
                (self._buf and time.perf_counter() - self._last > self.cfg.batch_seconds):
            self.flush()

    def flush(self) -> None:
        if self._buf:
            with self.timings.clock("write"):
                works = carry_over(self.store, self._buf, self.summary)
                recs = [w.record() for w in works]
                specs = dict(self.specs)
                stored = self.store.specs()
                for m in {m for r in recs for m in r.vectors} - set(specs):  # carried-over vectors keep their spec
                    if m in stored:
                        specs[m] = (stored[m]["kind"], stored[m]["spec"], stored[m]["ref"])
                self.store.write_videos(recs, specs)
            for w, rec in zip(works, recs):
                self.summary.indexed.append((rec.video_id, len(rec.segments), rec.info["duration"]))
                self.summary.seconds += rec.info["duration"]
                self.summary.segments += len(rec.segments)
                if w.caption_stats is not None:
                    s = self.summary.captions
                    self.summary.captions = w.caption_stats if s is None else s.merge(w.caption_stats)
            self._buf.clear()
        self._last = time.perf_counter()


def carry_over(store: IndexStore, works: Sequence[FileExtraction], summary: IndexSummary) -> list[FileExtraction]:
    """Fill each file's carried-over modalities from what the index holds for it (segment texts, vectors, transcript,
    metadata row); the files that can be written. A file whose segments are not the stored ones (another window
    length) is reported in ``summary.failed`` and left out: its entry in the index stays as it was."""
    carrying = [w for w in works if w.carry]
    if not carrying:
        return list(works)
    ids = [w.job.video_id for w in carrying]
    old: dict[str, list[dict[str, Any]]] = {}
    for r in store.rows_of("segments", ids):
        old.setdefault(r["video_id"], []).append(r)
    out, ok = [], []
    for w in works:
        if not w.carry:
            out.append(w)
            continue
        rows = sorted(old.get(w.job.video_id, []), key=lambda r: r["seg_index"])
        if [r["segment_id"] for r in rows] != [r["segment_id"] for r in w.rows] or not np.allclose(
                [(r["start"], r["end"]) for r in rows], [(r["start"], r["end"]) for r in w.rows], atol=1e-6):
            summary.failed.append((w.job.rel, OTHER_WINDOWS))
            continue
        cols = [c for m in w.carry for c in SEGMENT_TEXT.get(m, ())]
        for new, stored in zip(w.rows, rows):
            new.update({c: stored.get(c) or "" for c in cols})
        out.append(w)
        ok.append(w)
    by_id = {w.job.video_id: w for w in ok}
    for name in sorted({f"vec_{m}{d}" for w in ok for m in w.carry for d in ("", "_dense")}):
        owners = [v for v, w in by_id.items() if name[4:].removesuffix("_dense") in w.carry]
        for r in store.rows_of(name, owners):
            by_id[r["video_id"]].add_vectors(name[4:], [r["segment_id"]], np.asarray([r["vector"]], np.float32),
                                             [r["frame_time"]])
    for r in store.rows_of("transcripts", [v for v, w in by_id.items() if "asr" in w.carry]):
        by_id[r["video_id"]].subtitles = json.loads(r["subtitles"] or "[]")
    for r in store.rows_of("meta", [v for v, w in by_id.items() if "meta" in w.carry]):
        by_id[r["video_id"]].meta_row = r
    return out


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
