"""The local engine: index a folder with a thread pool on this machine.

Each file is decoded in ONE pass (:func:`mmfuse.ingest.segments.iter_segments`) and every modality is fed as its
segments stream out (:func:`mmfuse.ingest.extract.extract_file`): frames to CLIP, OCR and frame-based plug-ins, 48 kHz
audio to CLAP, 16 kHz audio to faster-whisper in ~30 s chunks, so memory stays flat on long files. Files run on
``workers`` threads: decoding (PyAV), OCR (onnxruntime), ASR (CTranslate2) and torch all release the GIL, and threads
share one copy of every model. Only the calling thread writes to the index. Planning, extraction and writing are
shared with the Ray engine (:mod:`mmfuse.ingest.ray_engine`), which writes the same index.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time

from mmfuse.errors import MmfuseError
from mmfuse.store.lance import IndexStore

from .extract import Models, Timings, extract_file, failure_reason
from .plan import UNCHANGED, IndexConfig, IndexSummary, Job, Progress, plan_folder, read_sidecar, video_folder
from .probe import content_hash
from .write import BatchWriter, finish_run

__all__ = ["index_folder"]


def _hash(job: Job, timings: Timings) -> tuple[str | None, str]:
    """(content hash, "") or (None, the reason the file cannot be read)."""
    try:
        with timings.clock("hash"):
            return content_hash(job.path), ""
    except (MmfuseError, OSError) as e:
        return None, failure_reason(e)


def index_folder(video_dir: str | os.PathLike, index_dir: str | os.PathLike, config: IndexConfig | None = None,
                 progress: Progress | None = None) -> IndexSummary:
    """Index every media file under ``video_dir`` into the LanceDB index at ``index_dir``.

    New and changed files (content hash, modalities, metadata sidecar entry) are indexed; unchanged ones are skipped,
    so a second run does no work and loads no model; a file the index holds gets only the modalities it lacks (the
    others are carried over). Files that cannot be indexed are listed in ``summary.failed``
    with the reason, hidden ones in ``summary.skipped``; everything else is indexed. The folder, the models and
    plug-ins, and the sidecar are checked before the index is created or touched. ``progress(files_done,
    files_total, label)`` is called from the calling thread (label: ``"<file> | <n> segments"``).
    """
    cfg = config or IndexConfig()
    t_start = time.perf_counter()
    summary = IndexSummary()
    timings = Timings()
    vdir = video_folder(video_dir)
    models = Models(cfg, summary.warnings, load=False)  # loaded below, only if a file needs work
    meta = read_sidecar(vdir, cfg, summary.warnings)
    with IndexStore.create(index_dir) as store:
        summary.modalities = list(models.enabled)
        plan = plan_folder(store, vdir, cfg, models.specs, meta, summary)
        total, done = len(plan.jobs), 0

        def report(label: str) -> None:
            if progress is not None:
                progress(done, total, f"{label} | {timings.segments} segments")

        # Content hashes first (threads: I/O bound): unchanged files never reach a model, and a run with nothing
        # new does not even load the models.
        report("hashing")
        todo: list[tuple[Job, str, tuple[str, ...], tuple[str, ...]]] = []
        with cf.ThreadPoolExecutor(max_workers=max(2, cfg.workers)) as hp:
            for job, (h, why) in zip(plan.jobs, hp.map(lambda j: _hash(j, timings), plan.jobs)):
                if h is None:
                    summary.failed.append((job.rel, why))
                    done += 1
                    continue
                mods, carry = plan.work(job, h)
                if not mods:
                    summary.skipped.append((job.rel, UNCHANGED))
                    done += 1
                else:
                    todo.append((job, h, mods, carry))
        if todo:
            with timings.clock("load_models"):
                models.load(summary.warnings)
            summary.modalities = list(models.enabled)
        report("indexing")
        writer = BatchWriter(store, dict(models.specs), summary, cfg, timings)
        stop = threading.Event()
        pool = cf.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="mmfuse-index")
        try:
            pending = {pool.submit(extract_file, job, h, mods, carry, cfg, models, plan.meta, timings, stop): job
                       for job, h, mods, carry in todo}
            last = ""
            while pending:
                finished, _ = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    try:
                        writer.add(fut.result())
                    except (MmfuseError, OSError) as e:
                        summary.failed.append((job.rel, failure_reason(e)))
                    done += 1
                    last = job.rel
                writer.due()
                report(last or "indexing")
            writer.flush()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        finish_run(store, models.plugins, summary, timings)
    summary.timings = dict(timings.seconds)
    summary.wall = time.perf_counter() - t_start
    return summary
