"""The Ray engine: a Ray Data pipeline (files as rows; decoding and each encoder as ``map_batches`` stages) that writes
the same LanceDB index as the local engine (:func:`mmfuse.ingest.local.index_folder`).

Pipeline, one row per media file::

    plan (driver) -> decode (tasks) -> ocr | visual | audio | plug-ins | asr | caption (actor pools)
                  -> assemble (tasks) -> dense text (actor pool) -> BatchWriter (driver) -> finish_run (driver)

* plan: the folder, the models, the plug-ins and the metadata sidecar are checked on the driver before anything is
  created; then :func:`mmfuse.ingest.plan.plan_folder` walks the folder and reads what the index holds.
* decode: content hash, what the file needs (:meth:`mmfuse.ingest.plan.Plan.work`: nothing when content, modalities
  and sidecar entry are unchanged; only the missing modalities of a file the index holds), probe and ONE
  :func:`mmfuse.ingest.segments.iter_segments` pass per file; the decoded segments (frames, audio at every rate an
  enabled model needs) travel to the encoder stages, which skip the files that do not need them.
* each encoder stage is an actor pool (``concurrency`` actors, ``num_cpus`` each, fractional allowed; ``num_gpus``
  per actor when the cluster has GPUs and the model can use one), so a model loads once per actor, not per file.
* the driver is the only writer, exactly like the local engine (a video becomes visible when its ``videos`` row is
  committed), so interrupted runs leave no half-written video and a second run skips unchanged files; at the end,
  plug-ins with their own index build it (``index(store)``) and the store is optimized.

Every rule is a function both engines call (:mod:`mmfuse.ingest.plan`, :mod:`mmfuse.ingest.extract`,
:mod:`mmfuse.ingest.write`); a stage here only moves a file's :class:`~mmfuse.ingest.extract.FileExtraction` and
segments between them. ``tests/test_ray_engine.py`` checks that both engines write identical tables.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmfuse.encoders import load_encoder
from mmfuse.errors import MmfuseError
from mmfuse.store.lance import IndexStore
from mmfuse.utils.lazy import require

from .extract import SEGMENT_STEPS, FileExtraction, Models, Timings, decode, failure_reason, stream_steps
from .plan import (
    DENSE, UNCHANGED, IndexConfig, IndexSummary, Job, Plan, Progress, plan_folder, read_sidecar, video_folder,
)
from .probe import content_hash
from .write import BatchWriter, finish_run

__all__ = ["ENCODER_STAGES", "index_with_ray"]

# Encoder stages in pipeline order ("asr" also translates, as asr_en); "dense" (the text embedder over transcript,
# caption and metadata text) runs after assembling, as it reads the rows.
ENCODER_STAGES = ("ocr", "visual", "audio", "asr", "caption")
_GPU_STAGES = {"visual", "audio", "dense"}  # and "caption" with a local vision-language model


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "video_id": pa.array([r["video_id"] for r in rows], pa.string()),
        "rel": pa.array([r["rel"] for r in rows], pa.string()),
        "path": pa.array([r["path"] for r in rows], pa.string()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "reason": pa.array([r["reason"] for r in rows], pa.string()),
        "payload": pa.array([r["payload"] for r in rows], pa.binary()),
    })


def _fail(row: dict[str, Any], e: BaseException) -> dict[str, Any]:
    return {**row, "status": "failed", "reason": failure_reason(e), "payload": b""}


def _pack(work: FileExtraction, segments: list) -> bytes:
    return pickle.dumps((work, segments), protocol=5)


def _each_file(batch: Any, step: Callable[[FileExtraction, list], list]) -> pa.Table:
    """Apply ``step(work, segments) -> segments to pass on`` to each decoded file of a batch; a failed file passes
    through, and a file whose step raises a user-facing error becomes a failed row (the next files go on)."""
    out = []
    for row in batch.to_pylist():
        if row["status"] != "ok":
            out.append(row)
            continue
        work, segments = pickle.loads(row["payload"])
        try:
            segments = step(work, segments)
        except (MmfuseError, OSError) as e:
            out.append(_fail(row, e))
            continue
        out.append({**row, "payload": _pack(work, segments)})
    return _table(out)


# --------------------------------------------------------------------------- stage: decode (tasks)
def _decode(batch: Any, *, cfg: IndexConfig, plan: Plan, rates: tuple[int, ...]) -> Any:
    """Hash, skip unchanged files, probe, decode once: payload = (FileExtraction, segments)."""
    out = []
    for row in batch.to_pylist():
        job = Job(Path(row["path"]), row["rel"], row["video_id"])
        try:
            h = content_hash(job.path)
            todo, carry = plan.work(job, h)
            if not todo:
                out.append({**row, "status": "skipped", "reason": UNCHANGED, "payload": b""})
                continue
            info, segments = decode(job, cfg, rates)
            out.append({**row, "payload": _pack(FileExtraction(job, h, info, todo, carry), list(segments))})
        except (MmfuseError, OSError) as e:
            out.append(_fail(row, e))
    return _table(out)


# --------------------------------------------------------------------------- stage: encoders (actor pools)
class _EncodeStage:
    """One modality, plug-in or the dense text encoder, loaded once per actor by the engine's model set."""

    def __init__(self, stage: str, cfg: IndexConfig, columns: Sequence[str]) -> None:
        self.stage, self.cfg, self.columns = stage, cfg, list(columns)
        if stage == "dense":
            self.model = load_encoder("text", cfg.text_model, device="cuda" if require("ray").get_gpu_ids() else "cpu")
        elif stage.startswith("plugin:"):
            one = dataclasses.replace(cfg, modalities=(), retrievers=(stage[7:],), dense_text=False)
            self.name, self.model = Models(one, []).plugins[0]
        else:
            one = dataclasses.replace(cfg, modalities=(stage,), retrievers=(), dense_text=False)
            self.models = Models(one, [])

    def __call__(self, batch: Any) -> Any:
        return _each_file(batch, self._run)

    def _run(self, work: FileExtraction, segments: list) -> list:
        if self.stage == "dense":
            work.encode_dense(self.model, self.columns)
        elif self.stage in ("asr", "caption"):
            for step in stream_steps(self.models, self.cfg, work.todo):
                for seg in segments:
                    step.add(seg)
                work.collect(step)
        elif self.stage.startswith("plugin:"):
            if self.name in work.todo:
                for seg in segments:
                    work.encode_plugin(self.name, self.model, seg)
        elif self.stage in work.todo:
            for seg in segments:
                SEGMENT_STEPS[self.stage](work, self.models.encoders[self.stage], seg)
        return segments


# --------------------------------------------------------------------------- stage: assemble (tasks)
def _assemble(batch: Any, *, meta: dict[str, dict]) -> Any:
    """Segment rows, transcript and caption assignment and the metadata row; the frames and audio are dropped here."""

    def assemble(work: FileExtraction, segments: list) -> list:
        for seg in segments:
            work.add_segment(seg)
        work.finish(meta.get(work.job.video_id))
        return []

    return _each_file(batch, assemble)


# --------------------------------------------------------------------------- driver
def _probe_models(cfg: IndexConfig) -> tuple[list[str], dict, list[str], tuple[int, ...]]:
    """Which modalities load on a worker (and their specs), as the local engine decides it; runs once, remotely."""
    warnings: list[str] = []
    models = Models(cfg, warnings)
    return list(models.enabled), dict(models.specs), warnings, models.audio_rates()


def index_with_ray(video_dir: str | os.PathLike, index_dir: str | os.PathLike,
                   modalities: Sequence[str] | None = None, address: str | None = None, *,
                   config: IndexConfig | None = None, concurrency: int | dict[str, int] = 1,
                   num_cpus: float | dict[str, float] = 1.0, num_gpus: float | None = None, task_cpus: float = 0.5,
                   progress: Progress | None = None) -> IndexSummary:
    """Index ``video_dir`` into ``index_dir`` with Ray Data; returns the same ``IndexSummary`` as the local engine.

    ``modalities`` overrides ``config.modalities`` (an :class:`mmfuse.ingest.plan.IndexConfig`). ``address``: a Ray
    cluster to join (``"auto"``, ``"ray://host:10001"``); without it an already initialised Ray is used, or a local
    one is started (and stopped at the end). ``concurrency``/``num_cpus``: actors per encoder stage and CPUs per
    actor (a number, or a dict by stage name: ocr, visual, audio, asr, dense, plugin:REF); ``num_gpus``: GPUs per
    visual/audio/dense actor (default: 1 when the cluster has GPUs, else 0); ``task_cpus``: CPUs per decode/assemble
    task. Keep the actors' CPUs below the cluster's total so decode tasks can run. On a multi-node cluster the
    video folder must be visible at the same absolute path on every node (a shared or mounted file system).
    """
    cfg = config or IndexConfig()
    if modalities is not None:
        cfg = dataclasses.replace(cfg, modalities=tuple(modalities))
    summary = IndexSummary()
    timings = Timings()
    vdir = video_folder(video_dir)
    # Every plug-in is checked before Ray starts; those with a per-segment encoder get a stage, the others build
    # their own index at the end (finish_run), here on the driver.
    plugins = Models(dataclasses.replace(cfg, modalities=(), dense_text=False), [], load=False).plugins \
        if cfg.retrievers else []
    plugin_stages = [f"plugin:{ref}" for ref, (_, p) in zip(cfg.retrievers, plugins) if hasattr(p, "encode_segments")]
    meta = read_sidecar(vdir, cfg, summary.warnings)
    ray = require("ray")

    def per(stage: str, value: Any, default: Any) -> Any:
        if isinstance(value, dict):
            return value.get(stage, value.get(stage.split(":")[0], default))
        return value

    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        gpus = num_gpus if num_gpus is not None else (1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
        t_start = time.perf_counter()
        enabled, specs, warnings, rates = ray.get(ray.remote(num_cpus=task_cpus)(_probe_models).remote(cfg))
        summary.warnings.extend(warnings)
        summary.modalities = list(enabled)
        with IndexStore.create(index_dir) as store:
            plan = plan_folder(store, vdir, cfg, specs, meta, summary)
            total, done = len(plan.jobs), 0
            if progress is not None:
                progress(0, total, "starting")
            writer = BatchWriter(store, specs, summary, cfg, timings)
            if plan.jobs:
                items = [{"video_id": j.video_id, "rel": j.rel, "path": str(j.path.resolve()), "status": "ok",
                          "reason": "", "payload": b""} for j in plan.jobs]
                # one file per block, made here: repartition() would run split tasks of a whole CPU each, which
                # never start while fractional actor pools hold the rest of a small cluster
                ds = ray.data.from_arrow([_table([it]) for it in items])
                ds = ds.map_batches(_decode, batch_size=1, batch_format="pyarrow", num_cpus=task_cpus,
                                    fn_kwargs={"cfg": cfg, "plan": dataclasses.replace(plan, jobs=[]), "rates": rates})

                # a local vision-language model wants a GPU; one behind a server does not
                gpu_stages = _GPU_STAGES | ({"caption"} if cfg.vlm_model and not cfg.vlm_base_url else set())

                def encode(ds: Any, stage: str) -> Any:
                    return ds.map_batches(_EncodeStage, batch_size=1, batch_format="pyarrow",
                                          fn_constructor_kwargs={"stage": stage, "cfg": cfg, "columns": list(specs)},
                                          compute=ray.data.ActorPoolStrategy(size=int(per(stage, concurrency, 1))),
                                          num_cpus=float(per(stage, num_cpus, 1.0)),
                                          num_gpus=gpus if stage.split(":")[0] in gpu_stages else 0)

                for stage in [s for s in ENCODER_STAGES if s in enabled] + plugin_stages:
                    ds = encode(ds, stage)
                ds = ds.map_batches(_assemble, batch_size=1, batch_format="pyarrow", num_cpus=task_cpus,
                                    fn_kwargs={"meta": plan.meta})
                if {f"{m}_dense" for m in DENSE} & set(specs):
                    ds = encode(ds, "dense")
                for batch in ds.iter_batches(batch_size=1, batch_format="pyarrow", prefetch_batches=1):
                    for row in batch.to_pylist():
                        if row["status"] == "ok":
                            work, _ = pickle.loads(row["payload"])
                            writer.add(work)
                        elif row["status"] == "skipped":
                            summary.skipped.append((row["rel"], row["reason"]))
                        else:
                            summary.failed.append((row["rel"], row["reason"]))
                        done += 1
                        if progress is not None:
                            progress(done, total, row["rel"])
                    writer.due()
            writer.flush()
            finish_run(store, plugins, summary, timings)
        summary.failed.sort()
        summary.timings = dict(timings.seconds)
        summary.wall = time.perf_counter() - t_start
        return summary
    finally:
        if started:
            ray.shutdown()
