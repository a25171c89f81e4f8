"""Indexing on Ray: a Ray Data pipeline (files as rows; decoding and each encoder as ``map_batches`` stages) that
writes the same LanceDB index as the local engine (:func:`mmfuse.ingest.local.index_folder`).

Pipeline, one row per media file::

    walk (driver) -> decode (tasks) -> ocr | visual | audio | plug-ins | asr (actor pools) -> dense text (actor pool)
                  -> assemble (tasks) -> IndexStore.write_videos (driver, batched commits)

* decode: content hash, skip-if-unchanged, probe and ONE :func:`mmfuse.ingest.iter_segments` pass per file; the
  decoded segments (frames, audio at every rate an enabled model needs) travel to the encoder stages.
* each encoder stage is an actor pool (``concurrency`` actors, ``num_cpus`` each, fractional allowed; ``num_gpus``
  per actor when the cluster has GPUs and the model can use one), so a model loads once per actor, not per file.
* the driver is the only writer, exactly like the local engine (a video becomes visible when its ``videos`` row is
  committed), so interrupted runs leave no half-written video and a second run skips unchanged files.

Reuse: models come from the local engine's ``_Models`` (one modality per stage), files from ``walk``, metadata from
``load_metadata``, records are ``VideoRecord`` and writes go through ``IndexStore``. The local engine runs decoding
and encoding inside one function (``indexing._process``), which has no hook to split them into stages; the per-stage
adapters below (:class:`_EncodeStage`, :func:`_assemble`) follow its rules (segment ids, OCR text, ASR chunking and
midpoint assignment, dense vectors, metadata rows), and ``tests/test_ray_engine.py`` checks that both engines write
identical tables.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, MmfuseError, ParameterError

__all__ = ["index_with_ray", "ENCODER_STAGES"]

Progress = Callable[[int, int, str], None]
# Encoder stages in pipeline order; "dense" (MiniLM over ASR/meta text) runs after ASR because it reads its output.
ENCODER_STAGES = ("ocr", "visual", "audio", "asr")
_GPU_STAGES = {"visual", "audio", "dense"}
_COLS = ("video_id", "rel", "path", "status", "reason", "payload")


def _rows(batch: Any) -> list[dict[str, Any]]:
    return batch.to_pylist()


def _table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.table({
        "video_id": pa.array([r["video_id"] for r in rows], pa.string()),
        "rel": pa.array([r["rel"] for r in rows], pa.string()),
        "path": pa.array([r["path"] for r in rows], pa.string()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "reason": pa.array([r["reason"] for r in rows], pa.string()),
        "payload": pa.array([r["payload"] for r in rows], pa.binary()),
    })


def _fail(row: dict[str, Any], e: BaseException) -> dict[str, Any]:
    if isinstance(e, MmfuseError):
        reason = getattr(e, "reason", None) or str(e)
    else:
        reason = f"cannot read: {getattr(e, 'strerror', None) or e}"
    return {**row, "status": "failed", "reason": reason, "payload": b""}


def _cfg(cfg_dict: dict[str, Any], **over: Any) -> Any:
    from .local import IndexConfig

    return IndexConfig(**{**cfg_dict, **over})


# --------------------------------------------------------------------------- stage: decode (tasks)
def _decode(batch: Any, *, cfg: dict[str, Any], state: dict[str, dict], enabled: list[str],
            rates: tuple[int, ...]) -> Any:
    """Hash, skip unchanged files, probe, decode once: payload = {hash, info, segments}."""
    from .probe import AUDIO_EXTENSIONS, content_hash, probe
    from .segments import iter_segments

    out = []
    for row in _rows(batch):
        try:
            path = Path(row["path"])
            h = content_hash(path)
            old = state.get(row["video_id"])
            if old and old["content_hash"] == h and set(enabled) <= set(filter(None, old["modalities"].split(","))):
                out.append({**row, "status": "skipped", "reason": "unchanged", "payload": b""})
                continue
            info = probe(path)
            if not info.has_video and path.suffix.lower() not in AUDIO_EXTENSIONS:
                out.append({**row, "status": "failed", "reason": "no video stream", "payload": b""})
                continue
            if not info.has_video and not info.has_audio:
                out.append({**row, "status": "failed", "reason": "no video or audio stream", "payload": b""})
                continue
            segs = list(iter_segments(path, window=cfg["window"], frames_per_segment=cfg["frames_per_segment"],
                                            audio_rates=rates if info.has_audio else (),
                                            frame_size=cfg["frame_size"], video_id=row["video_id"]))
            payload = {"hash": h, "info": dataclasses.asdict(info) if dataclasses.is_dataclass(info) else dict(info),
                       "segments": segs, "vectors": {}, "ocr": {}, "asr_pieces": None}
            out.append({**row, "status": "ok", "reason": "", "payload": pickle.dumps(payload, protocol=5)})
        except (MmfuseError, OSError) as e:
            out.append(_fail(row, e))
    return _table(out)


# --------------------------------------------------------------------------- stage: encoders (actor pools)
class _EncodeStage:
    """One encoder modality, loaded once per actor through the local engine's model loader."""

    def __init__(self, stage: str, cfg: dict[str, Any]) -> None:
        from .local import _Models

        self.stage = stage
        self.cfg = cfg
        self.warnings: list[str] = []
        if stage == "dense":
            import ray

            from mmfuse.encoders.text import DenseTextEncoder

            self.model = DenseTextEncoder(device="cuda" if ray.get_gpu_ids() else "cpu")
            self.model.load()
        elif stage.startswith("plugin:"):
            self.models = _Models(_cfg(cfg, modalities=[], retrievers=[stage[7:]], dense_text=False), self.warnings)
            self.model = self.models.plugins[0][1]
            self.name = self.models.plugins[0][0]
        else:
            self.models = _Models(_cfg(cfg, modalities=[stage], retrievers=[], dense_text=False), self.warnings)
            self.model = {"ocr": self.models.ocr, "visual": self.models.clip, "audio": self.models.clap,
                          "asr": self.models.asr}[stage]

    def __call__(self, batch: Any) -> Any:
        out = []
        for row in _rows(batch):
            if row["status"] != "ok":
                out.append(row)
                continue
            p = pickle.loads(row["payload"])
            try:
                getattr(self, "_" + self.stage.split(":")[0])(p, row["video_id"])
            except (MmfuseError, OSError) as e:
                out.append(_fail(row, e))
                continue
            out.append({**row, "payload": pickle.dumps(p, protocol=5)})
        return _table(out)

    @staticmethod
    def _add_vec(p: dict, m: str, seg_ids: list[str], v: np.ndarray, times: list[float] | None = None) -> None:
        d = p["vectors"].setdefault(m, {"segment_id": [], "frame_time": [], "vector": []})
        v = np.asarray(v, dtype=np.float32).reshape(len(seg_ids), -1)
        d["segment_id"].extend(seg_ids)
        d["frame_time"].extend(times if times is not None else [np.nan] * len(seg_ids))
        d["vector"].append(v)

    def _ocr(self, p: dict, vid: str) -> None:
        for seg in p["segments"]:
            if seg.frames:
                if hasattr(self.model, "segment_text"):
                    text = self.model.segment_text(seg.frames)
                else:
                    texts = self.model.extract(seg.frames)
                    text = " ".join(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
                p["ocr"][int(seg.index)] = text

    def _visual(self, p: dict, vid: str) -> None:
        for seg in p["segments"]:
            if seg.frames:
                sid = f"{vid}#{seg.index}"
                self._add_vec(p, "visual", [sid] * len(seg.frames), self.model.encode_frames(seg.frames),
                              list(seg.frame_times))

    def _audio(self, p: dict, vid: str) -> None:
        for seg in p["segments"]:
            a = seg.audio.get(48000)
            if a is not None and a.size:
                self._add_vec(p, "audio", [f"{vid}#{seg.index}"], self.model.encode_audio([a]))

    def _plugin(self, p: dict, vid: str) -> None:
        if hasattr(self.model, "encode_segments"):
            for seg in p["segments"]:
                self._add_vec(p, self.name, [f"{vid}#{seg.index}"], self.model.encode_segments([seg]))

    def _asr(self, p: dict, vid: str) -> None:
        pieces: list[tuple[float, float, str]] = []
        buf: list[Any] = []

        def flush() -> None:
            if not buf:
                return
            t0 = buf[0].start
            audio = np.concatenate([s.audio.get(16000, np.zeros(0, np.float32)) for s in buf])
            if audio.size >= 1600:  # same rule as the local engine: < 0.1 s of audio only hallucinates
                for a, b, text in self.model.transcribe(audio):
                    pieces.append((t0 + float(a), t0 + float(b), str(text).strip()))
            buf.clear()

        for seg in p["segments"]:
            if 16000 in seg.audio:
                buf.append(seg)
                if buf[-1].end - buf[0].start >= self.cfg["asr_chunk"]:
                    flush()
        flush()
        p["asr_pieces"] = pieces

    def _dense(self, p: dict, vid: str) -> None:
        rows = [r for r in p["segment_rows"] if r["asr_text"]] if "asr" in p["enabled"] else []
        if rows:
            self._add_vec(p, "asr_dense", [r["segment_id"] for r in rows], self.model.encode([r["asr_text"] for r in rows]))
        m = p.get("meta_row")
        if m is not None and m["text"]:
            self._add_vec(p, "meta_dense", [m["segment_id"]], self.model.encode([m["text"]]))


# --------------------------------------------------------------------------- stage: rows (tasks)
def _segment_rows(batch: Any, *, enabled: list[str], meta: dict[str, dict]) -> Any:
    """Segment rows (OCR text, ASR text by transcript-piece midpoint) and the metadata row; drops frames/audio."""
    from .local import assign_transcript

    out = []
    for row in _rows(batch):
        if row["status"] != "ok":
            out.append(row)
            continue
        p = pickle.loads(row["payload"])
        vid = row["video_id"]
        segs = p.pop("segments")
        rows = [{"video_id": vid, "segment_id": f"{vid}#{s.index}", "seg_index": int(s.index), "start": float(s.start),
                 "end": float(s.end), "ocr_text": p["ocr"].get(int(s.index), ""), "asr_text": ""} for s in segs]
        pieces = p["asr_pieces"]
        if "asr" in enabled:
            assign_transcript(rows, pieces)
        info = p["info"]
        duration = float(info.get("duration") or (rows[-1]["end"] if rows else 0.0))
        m = meta.get(vid) if "meta" in enabled else None
        p["meta_row"] = ({"video_id": vid, "segment_id": f"{vid}#meta", "start": 0.0, "end": duration, **m}
                         if m is not None else None)
        p["segment_rows"] = rows
        p["duration"] = duration
        p["enabled"] = list(enabled)
        out.append({**row, "payload": pickle.dumps(p, protocol=5)})
    return _table(out)


def _record(row: dict[str, Any], enabled: list[str]) -> Any:
    from mmfuse.store.lance import VideoRecord

    p = pickle.loads(row["payload"])
    info = p["info"]
    vectors = {k: {"segment_id": d["segment_id"], "frame_time": d["frame_time"], "vector": np.concatenate(d["vector"])}
               for k, d in p["vectors"].items()}
    return VideoRecord(
        video_id=row["video_id"], path=str(Path(row["path"]).resolve()), content_hash=p["hash"],
        info={"duration": p["duration"], "has_video": info["has_video"], "has_audio": info["has_audio"],
              "width": info["width"], "height": info["height"], "fps": info["fps"], "rotation": info["rotation"]},
        segments=p["segment_rows"], vectors=vectors,
        subtitles=([{"start": a, "end": b, "text": t} for a, b, t in p["asr_pieces"]]
                   if "asr" in enabled else None),
        meta=p["meta_row"], modalities=list(enabled),
    )


# --------------------------------------------------------------------------- driver
def _probe_models(cfg_dict: dict[str, Any]) -> tuple[list[str], dict, list[str], tuple[int, ...], list[str]]:
    """Which modalities load (and their specs), as the local engine decides it; runs once on a worker."""
    from .local import _Models

    warnings: list[str] = []
    models = _Models(_cfg(cfg_dict), warnings)
    plugins = [ref for ref in cfg_dict.get("retrievers", ())]
    return list(models.enabled), dict(models.specs), warnings, tuple(models.audio_rates()), plugins


def index_with_ray(video_dir: str | os.PathLike, index_dir: str | os.PathLike,
                   modalities: Sequence[str] | None = None, address: str | None = None, *, config: Any = None,
                   concurrency: int | dict[str, int] = 1, num_cpus: float | dict[str, float] = 1.0,
                   num_gpus: float | None = None, task_cpus: float = 0.5, progress: Progress | None = None) -> Any:
    """Index ``video_dir`` into ``index_dir`` with Ray Data; returns the same ``IndexSummary`` as the local engine.

    ``modalities`` overrides ``config.modalities`` (an :class:`mmfuse.ingest.local.IndexConfig`). ``address``: a Ray
    cluster to join (``"auto"``, ``"ray://host:10001"``); without it an already initialised Ray is used, or a local
    one is started (and stopped at the end). ``concurrency``/``num_cpus``: actors per encoder stage and CPUs per
    actor (a number, or a dict by stage name: ocr, visual, audio, asr, dense, plugin:REF); ``num_gpus``: GPUs per
    visual/audio/dense actor (default: 1 when the cluster has GPUs, else 0); ``task_cpus``: CPUs per decode/assemble
    task. Keep the actors' CPUs below the cluster's total so decode tasks can run. On a multi-node cluster the
    video folder must be visible at the same absolute path on every node (a shared or mounted file system).
    """
    import ray

    from mmfuse.store.lance import IndexStore

    from .local import IndexConfig, IndexSummary, plan_folder

    cfg = config or IndexConfig()
    if modalities is not None:
        cfg = dataclasses.replace(cfg, modalities=list(modalities))
    if cfg.window is not None and cfg.window <= 0:
        raise ParameterError(f"window must be > 0 seconds, got {cfg.window}")
    vdir = Path(video_dir)
    if not vdir.is_dir():
        raise InputError(f"{vdir}: video folder does not exist" if not vdir.exists() else f"{vdir}: not a folder")
    cfg_dict = dataclasses.asdict(cfg)
    cfg_dict["modalities"] = list(cfg.modalities)
    cfg_dict["retrievers"] = list(cfg.retrievers)
    cfg_dict["metadata"] = str(cfg.metadata) if cfg.metadata else None

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
        summary = IndexSummary()
        probe = ray.remote(num_cpus=task_cpus)(_probe_models)
        enabled, specs, warnings, rates, plugins = ray.get(probe.remote(cfg_dict))
        summary.warnings.extend(warnings)
        summary.modalities = list(enabled)
        with IndexStore.create(index_dir) as store:
            for m, (kind, spec, ref) in specs.items():
                store.check_spec(m, spec)
            meta, jobs, state = plan_folder(store, vdir, cfg, enabled, summary)
            total = len(jobs)
            if progress is not None:
                progress(0, total, "starting")
            if jobs:
                items = [{"video_id": j.video_id, "rel": j.rel, "path": str(j.path.resolve()), "status": "ok", "reason": "",
                          "payload": b""} for j in jobs]
                ds = ray.data.from_arrow(_table(items)).repartition(len(items))  # one file per block
                ds = ds.map_batches(_decode, batch_size=1, batch_format="pyarrow", num_cpus=task_cpus,
                                    fn_kwargs={"cfg": cfg_dict, "state": state, "enabled": enabled, "rates": rates})
                stages = [s for s in ENCODER_STAGES if s in enabled] + [f"plugin:{r}" for r in plugins]
                for stage in stages:
                    ds = ds.map_batches(_EncodeStage, batch_size=1, batch_format="pyarrow",
                                        fn_constructor_kwargs={"stage": stage, "cfg": cfg_dict},
                                        compute=ray.data.ActorPoolStrategy(size=int(per(stage, concurrency, 1))),
                                        num_cpus=float(per(stage, num_cpus, 1.0)),
                                        num_gpus=gpus if stage.split(":")[0] in _GPU_STAGES else 0)
                ds = ds.map_batches(_segment_rows, batch_size=1, batch_format="pyarrow", num_cpus=task_cpus,
                                    fn_kwargs={"enabled": enabled, "meta": meta})
                if {"asr_dense", "meta_dense"} & set(specs):
                    ds = ds.map_batches(_EncodeStage, batch_size=1, batch_format="pyarrow",
                                        fn_constructor_kwargs={"stage": "dense", "cfg": cfg_dict},
                                        compute=ray.data.ActorPoolStrategy(size=int(per("dense", concurrency, 1))),
                                        num_cpus=float(per("dense", num_cpus, 1.0)), num_gpus=gpus)
                buf: list[Any] = []
                last_flush = time.perf_counter()
                done = 0

                def flush() -> None:
                    nonlocal last_flush
                    if buf:
                        store.write_videos(buf, specs)
                        for rec in buf:
                            summary.indexed.append((rec.video_id, len(rec.segments), rec.info["duration"]))
                            summary.seconds += rec.info["duration"]
                            summary.segments += len(rec.segments)
                        buf.clear()
                    last_flush = time.perf_counter()

                for batch in ds.iter_batches(batch_size=1, batch_format="pyarrow", prefetch_batches=1):
                    for row in batch.to_pylist():
                        if row["status"] == "ok":
                            buf.append(_record(row, enabled))
                        elif row["status"] == "skipped":
                            summary.skipped.append((row["rel"], row["reason"]))
                        else:
                            summary.failed.append((row["rel"], row["reason"]))
                        done += 1
                        if progress is not None:
                            progress(done, total, row["rel"])
                    if len(buf) >= cfg.batch_size or (buf and time.perf_counter() - last_flush > cfg.batch_seconds):
                        flush()
                flush()
            if summary.indexed or summary.removed:
                store.optimize()
        summary.failed.sort()
        summary.wall = time.perf_counter() - t_start
        return summary
    finally:
        if started:
            ray.shutdown()
