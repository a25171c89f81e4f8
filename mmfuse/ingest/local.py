"""Indexing orchestration: walk a folder, decode each file once, feed every enabled modality, write the index.

Each file is decoded in ONE pass (:func:`mmfuse.ingest.iter_segments`); every segment's frames go to
CLIP and OCR (and frame-based plug-ins), its 48 kHz audio to CLAP, its 16 kHz audio to faster-whisper
(in ~30 s chunks, so memory stays flat on long files). Files are processed by a thread pool
(``workers``): decoding (PyAV), OCR (onnxruntime), ASR (CTranslate2) and torch all release the GIL,
and threads share one copy of every model. Only the main thread writes to the index, one video at a
time (see :mod:`mmfuse.store.lance` for why a half-written video is never visible).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mmfuse.store.lance import IndexStore

from mmfuse.errors import InputError, MmfuseError, ModelError, ParameterError, unknown

MODALITIES = ("visual", "audio", "ocr", "asr", "meta")
Progress = Callable[[int, int, str], None]


@dataclass
class IndexConfig:
    """What to index and with which models. Model fields left ``None`` disable that modality (with a warning)."""

    modalities: Sequence[str] = MODALITIES
    window: float = 10.0
    frames_per_segment: int = 4
    frame_size: int | None = 960
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_checkpoint: str | None = None
    clap_model: str | None = None
    dense_text: bool = True
    retrievers: Sequence[str] = ()
    metadata: str | os.PathLike | None = None
    workers: int = 1
    asr_chunk: float = 30.0
    batch_size: int = 32  # videos per index commit
    batch_seconds: float = 5.0  # ... or whatever finished within this many seconds
    prune: bool = True


@dataclass
class IndexSummary:
    """Result of one indexing run; ``failed`` holds (file, reason) for every file that was not indexed."""

    indexed: list[tuple[str, int, float]] = field(default_factory=list)  # video_id, segments, seconds
    skipped: list[tuple[str, str]] = field(default_factory=list)  # file, reason (unchanged)
    failed: list[tuple[str, str]] = field(default_factory=list)  # file, reason
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of work per stage (summed over threads)
    wall: float = 0.0
    seconds: float = 0.0  # seconds of video indexed in this run
    segments: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- models
class _Models:
    """The models of one run, loaded once in the main thread and shared by the worker threads."""

    def __init__(self, cfg: IndexConfig, warnings: list[str], load: bool = True) -> None:
        self.clip = self.clap = self.ocr = self.asr = self.dense = None
        self._to_load: list[tuple[str, Any]] = []
        self.plugins: list[tuple[str, Any]] = []
        self.enabled: list[str] = []
        self.specs: dict[str, tuple[str, dict, str]] = {}
        mods = list(dict.fromkeys(cfg.modalities))
        for m in mods:
            if m not in MODALITIES:
                raise unknown("modality", m, MODALITIES)
        # Plug-ins first: a wrong reference should fail before any model is loaded.
        from mmfuse.retrievers import load_retriever

        plugin_specs = {}
        for ref in cfg.retrievers:
            obj = load_retriever(ref)
            obj = obj() if isinstance(obj, type) else obj
            name = str(getattr(obj, "name", ref))
            if name in MODALITIES or name in ("asr_dense", "meta_dense") or name in plugin_specs:
                raise ParameterError(f"--retriever {ref}: name {name!r} clashes with another modality")
            self.plugins.append((name, obj))
            plugin_specs[name] = ("plugin", dict(getattr(obj, "spec", {}) or {}), ref)
        if "visual" in mods:
            if not (cfg.clip_model or cfg.clip_checkpoint):
                warnings.append("visual modality skipped: no CLIP model configured; enable it with "
                                "--clip-model NAME --clip-pretrained TAG or --clip-checkpoint PATH")
            else:
                try:
                    from mmfuse.encoders.clip import ClipEncoder

                    self.clip = ClipEncoder(model=cfg.clip_model, pretrained=cfg.clip_pretrained, checkpoint=cfg.clip_checkpoint)
                    self._enable("visual", "visual", self.clip.spec, self.clip)
                except (ModelError, ImportError) as e:
                    warnings.append(f"visual modality skipped: {e} (check --clip-model/--clip-pretrained/--clip-checkpoint)")
        if "audio" in mods:
            if not cfg.clap_model:
                warnings.append("audio modality skipped: no CLAP model configured; enable it with --clap-model NAME_OR_DIR")
            else:
                try:
                    from mmfuse.encoders.clap import ClapEncoder

                    self.clap = ClapEncoder(model=cfg.clap_model)
                    self._enable("audio", "audio", self.clap.spec, self.clap)
                except (ModelError, ImportError) as e:
                    warnings.append(f"audio modality skipped: {e} (check --clap-model)")
        if "ocr" in mods:
            try:
                from mmfuse.encoders.ocr import OcrExtractor

                self.ocr = OcrExtractor()
                self._enable("ocr", "ocr", getattr(self.ocr, "spec", {"model": "rapidocr"}), self.ocr)
            except (ModelError, ImportError) as e:
                warnings.append(f"ocr modality skipped: {e}")
        if "asr" in mods:
            try:
                from mmfuse.encoders.whisper import WhisperTranscriber

                self.asr = WhisperTranscriber()
                self._enable("asr", "asr", getattr(self.asr, "spec", {"model": "whisper"}), self.asr)
            except (ModelError, ImportError) as e:
                warnings.append(f"asr modality skipped: {e}")
        if "meta" in mods:
            self._enable("meta", "meta", {"model": "bm25", "fields": ["title", "description", "tags"]})
        if cfg.dense_text and ({"asr", "meta"} & set(self.enabled)):
            try:
                from mmfuse.encoders.text import DenseTextEncoder

                self.dense = DenseTextEncoder()
                for m in ("asr", "meta"):
                    if m in self.enabled:
                        self.specs[f"{m}_dense"] = (f"{m}_dense", dict(self.dense.spec), "")
            except (ModelError, ImportError) as e:
                warnings.append(f"dense text search skipped: {e}")
        for name, spec in plugin_specs.items():
            self.specs[name] = spec
            self.enabled.append(name)
        if load:
            self.load(warnings)

    def _enable(self, modality: str, kind: str, spec: Any, model: Any = None) -> None:
        self.enabled.append(modality)
        self.specs[modality] = (kind, dict(spec or {}), "")
        if model is not None:
            self._to_load.append((modality, model))

    def load(self, warnings: list[str]) -> None:
        """Load every model now, once, so worker threads never race to load the same one. Called only
        when some file needs work (a run with nothing new loads nothing). A model that fails to load
        drops its modality with a warning."""
        hints = {"visual": " (check --clip-model/--clip-pretrained/--clip-checkpoint)", "audio": " (check --clap-model)"}
        for modality, model in self._to_load:
            try:
                if hasattr(model, "load"):
                    model.load()
            except (ModelError, ImportError) as e:
                warnings.append(f"{modality} modality skipped: {e}{hints.get(modality, '')}")
                self.enabled.remove(modality)
                self.specs.pop(modality, None)
                setattr(self, {"visual": "clip", "audio": "clap", "ocr": "ocr", "asr": "asr"}.get(modality, "_x"), None)
                if modality == "asr":
                    self.specs.pop("asr_dense", None)
        if self.dense is not None:
            try:
                self.dense.load()
            except (ModelError, ImportError) as e:
                warnings.append(f"dense text search skipped: {e}")
                self.dense = None
                self.specs.pop("asr_dense", None)
                self.specs.pop("meta_dense", None)
        self._to_load = []

    def audio_rates(self) -> tuple[int, ...]:
        rates = set()
        if self.asr is not None:
            rates.add(16000)
        if self.clap is not None:
            rates.add(48000)
        for _, p in self.plugins:
            rates.update(int(r) for r in getattr(p, "audio_rates", ()) or ())
        return tuple(sorted(rates))


# --------------------------------------------------------------------------- metadata sidecar
def load_metadata(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a sidecar with title/description/tags per video: JSON (``{id: {...}}`` or a list of
    records) or CSV (columns ``video_id``/``id``/``file``, ``title``, ``description``, ``tags``)."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read metadata: {e}") from None
    recs: list[dict[str, Any]] = []
    if p.suffix.lower() == ".csv":
        recs = list(csv.DictReader(raw.splitlines()))
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: line {e.lineno}: invalid JSON: {e.msg}") from None
        if isinstance(data, dict) and isinstance(data.get("videos"), (list, dict)):
            data = data["videos"]
        if isinstance(data, dict):
            recs = [dict(v, video_id=k) for k, v in data.items() if isinstance(v, dict)]
        elif isinstance(data, list):
            recs = [r for r in data if isinstance(r, dict)]
        else:
            raise InputError(f"{p}: metadata must be an object or a list of records")
    out = {}
    for r in recs:
        key = r.get("video_id") or r.get("id") or r.get("file") or r.get("filename") or r.get("path")
        if not key:
            continue
        key = Path(str(key)).stem if Path(str(key)).suffix.lower() in _exts() else str(key)
        tags = r.get("tags") or []
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.replace("|", ";").replace(",", ";").split(";") if t.strip()]
        title, desc = str(r.get("title") or ""), str(r.get("description") or "")
        out[key] = {"title": title, "description": desc, "tags": ", ".join(map(str, tags)),
                    "text": " ".join(x for x in (title, desc, " ".join(map(str, tags))) if x)}
    return out


def _exts() -> frozenset[str]:
    from .probe import VIDEO_EXTENSIONS

    return VIDEO_EXTENSIONS


def find_metadata(video_dir: Path) -> Path | None:
    for name in ("metadata.json", "metadata.csv"):
        if (video_dir / name).is_file():
            return video_dir / name
    return None


# --------------------------------------------------------------------------- walking
@dataclass
class _Job:
    path: Path
    rel: str
    video_id: str
    content_hash: str = ""


def _hash_job(job: _Job, counter: "_Counter") -> tuple[str, str]:
    """("ok", hash) or ("failed", reason) for one file."""
    from .probe import content_hash

    try:
        t = time.perf_counter()
        h = content_hash(job.path)
        counter.add_time("hash", time.perf_counter() - t)
        return "ok", h
    except MmfuseError as e:
        return "failed", getattr(e, "reason", None) or str(e)
    except OSError as e:
        return "failed", f"cannot read: {e.strerror or e}"


def walk(video_dir: Path) -> tuple[list[_Job], list[tuple[str, str]]]:
    """Media files under ``video_dir`` (sorted) and the files refused before decoding (name, reason)."""
    from .probe import display_name

    exts = _exts()
    jobs, failed, seen = [], [], {}
    for root, dirs, files in os.walk(video_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = Path(root) / f
            if f.startswith(".") or p.suffix.lower() not in exts:
                continue
            rel = p.relative_to(video_dir).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                failed.append((display_name(p.relative_to(video_dir)), "file name is not valid UTF-8 (rename the file)"))
                continue
            vid = rel[: -len(p.suffix)] if p.suffix else rel
            if vid in seen:
                failed.append((rel, f"duplicate video id {vid!r} (also {seen[vid]}); rename one of them"))
                continue
            seen[vid] = rel
            jobs.append(_Job(p, rel, vid))
    return jobs, failed


# --------------------------------------------------------------------------- per-file work
class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.segments = 0
        self.timings: dict[str, float] = {}

    def add_time(self, key: str, dt: float) -> None:
        with self.lock:
            self.timings[key] = self.timings.get(key, 0.0) + dt

    def add_segment(self) -> None:
        with self.lock:
            self.segments += 1


def _clock(counter: _Counter, key: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            counter.add_time(key, time.perf_counter() - self.t)

    return _T()


def _process(job: _Job, cfg: IndexConfig, models: _Models, state: dict[str, dict], meta: dict[str, dict],
             counter: _Counter, stop: threading.Event) -> tuple[str, Any]:
    """Index one file. Returns ("indexed", VideoRecord) | ("skipped", reason) | ("failed", reason)."""
    from mmfuse.store.lance import VideoRecord

    from .probe import AUDIO_EXTENSIONS, content_hash, probe
    from .segments import iter_segments

    try:
        h = job.content_hash or content_hash(job.path)
        with _clock(counter, "probe"):
            info = probe(job.path)
        if not info.has_video and job.path.suffix.lower() not in AUDIO_EXTENSIONS:
            return "failed", "no video stream"
        if not info.has_video and not info.has_audio:
            return "failed", "no video or audio stream"
        rates = models.audio_rates() if info.has_audio else ()
        segs_rows: list[dict] = []
        vec: dict[str, dict[str, list]] = {}
        asr_buf: list[Any] = []
        asr_pieces: list[tuple[float, float, str]] = []

        def add_vec(m: str, seg_ids: list[str], v: np.ndarray, times: list[float] | None = None) -> None:
            d = vec.setdefault(m, {"segment_id": [], "frame_time": [], "vector": []})
            v = np.asarray(v, dtype=np.float32).reshape(len(seg_ids), -1)
            d["segment_id"].extend(seg_ids)
            d["frame_time"].extend(times if times is not None else [np.nan] * len(seg_ids))
            d["vector"].append(v)

        def flush_asr() -> None:
            if not asr_buf:
                return
            t0 = asr_buf[0].start
            audio = np.concatenate([s.audio.get(16000, np.zeros(0, np.float32)) for s in asr_buf])
            if audio.size >= 1600:  # whisper on < 0.1 s of audio only hallucinates
                with _clock(counter, "asr"):
                    for a, b, text in models.asr.transcribe(audio):
                        asr_pieces.append((t0 + float(a), t0 + float(b), str(text).strip()))
            asr_buf.clear()

        it = iter_segments(job.path, window=cfg.window, frames_per_segment=cfg.frames_per_segment,
                                 audio_rates=rates, frame_size=cfg.frame_size, video_id=job.video_id)
        while True:
            if stop.is_set():
                return "failed", "interrupted"
            t = time.perf_counter()
            seg = next(it, None)
            counter.add_time("decode", time.perf_counter() - t)
            if seg is None:
                break
            sid = f"{job.video_id}#{seg.index}"
            ocr_text = ""
            if seg.frames:
                if models.clip is not None:
                    with _clock(counter, "visual"):
                        add_vec("visual", [sid] * len(seg.frames), models.clip.encode_frames(seg.frames), list(seg.frame_times))
                if models.ocr is not None:
                    with _clock(counter, "ocr"):
                        if hasattr(models.ocr, "segment_text"):
                            ocr_text = models.ocr.segment_text(seg.frames)
                        else:
                            texts = models.ocr.extract(seg.frames)
                            ocr_text = " ".join(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
            if models.clap is not None and seg.audio.get(48000) is not None and seg.audio[48000].size:
                with _clock(counter, "audio"):
                    add_vec("audio", [sid], models.clap.encode_audio([seg.audio[48000]]))
            for name, plug in models.plugins:
                if hasattr(plug, "encode_segments"):
                    with _clock(counter, name):
                        add_vec(name, [sid], plug.encode_segments([seg]))
            segs_rows.append({"video_id": job.video_id, "segment_id": sid, "seg_index": int(seg.index),
                              "start": float(seg.start), "end": float(seg.end), "ocr_text": ocr_text, "asr_text": ""})
            if models.asr is not None and 16000 in seg.audio:
                seg.frames = []  # only the audio waits for the ASR chunk
                asr_buf.append(seg)
                if asr_buf[-1].end - asr_buf[0].start >= cfg.asr_chunk:
                    flush_asr()
            counter.add_segment()
        if models.asr is not None:
            flush_asr()
            assign_transcript(segs_rows, asr_pieces)
        duration = float(info.duration or (segs_rows[-1]["end"] if segs_rows else 0.0))
        meta_row = None
        m = meta.get(job.video_id) if "meta" in models.enabled else None
        if m is not None:
            meta_row = {"video_id": job.video_id, "segment_id": f"{job.video_id}#meta", "start": 0.0, "end": duration, **m}
        if models.dense is not None:
            with _clock(counter, "dense"):
                if "asr" in models.enabled:
                    rows = [r for r in segs_rows if r["asr_text"]]
                    if rows:
                        add_vec("asr_dense", [r["segment_id"] for r in rows], models.dense.encode([r["asr_text"] for r in rows]))
                if meta_row is not None and meta_row["text"]:
                    add_vec("meta_dense", [meta_row["segment_id"]], models.dense.encode([meta_row["text"]]))
        vectors = {k: {"segment_id": d["segment_id"], "frame_time": d["frame_time"], "vector": np.concatenate(d["vector"])}
                   for k, d in vec.items()}
        rec = VideoRecord(
            video_id=job.video_id, path=str(job.path.resolve()), content_hash=h,
            info={"duration": duration, "has_video": info.has_video, "has_audio": info.has_audio, "width": info.width,
                  "height": info.height, "fps": info.fps, "rotation": info.rotation},
            segments=segs_rows, vectors=vectors,
            subtitles=[{"start": a, "end": b, "text": t} for a, b, t in asr_pieces] if models.asr is not None else None,
            meta=meta_row, modalities=list(models.enabled),
        )
        return "indexed", rec
    except MmfuseError as e:
        reason = getattr(e, "reason", None) or str(e)
        return "failed", reason
    except OSError as e:
        return "failed", f"cannot read: {e.strerror or e}"


# --------------------------------------------------------------------------- orchestration
def assign_transcript(rows: list[dict], pieces: Sequence[tuple[float, float, str]]) -> None:
    """Set each segment row's ``asr_text``: every transcript piece goes to the window holding its midpoint."""
    if not rows or not pieces:
        return
    starts = np.asarray([r["start"] for r in rows])
    texts: list[list[str]] = [[] for _ in rows]
    for a, b, text in pieces:
        i = int(np.clip(np.searchsorted(starts, (a + b) / 2, side="right") - 1, 0, len(rows) - 1))
        if text:
            texts[i].append(text)
    for r, tx in zip(rows, texts):
        r["asr_text"] = " ".join(tx)


def plan_folder(store: IndexStore, vdir: Path, cfg: IndexConfig, enabled: Sequence[str],
                summary: IndexSummary) -> tuple[dict, list, dict]:
    """The start every engine shares: drop half-written rows, read the metadata sidecar, walk the folder
    (unreadable entries go to ``summary.failed``) and forget videos whose files were deleted.
    Returns (metadata by video, jobs, stored state by video)."""
    store.cleanup()
    meta_path = Path(cfg.metadata) if cfg.metadata else find_metadata(vdir)
    meta = load_metadata(meta_path) if ("meta" in enabled and meta_path) else {}
    if "meta" in enabled and not meta_path:
        summary.warnings.append(f"meta modality: no metadata.json/metadata.csv in {vdir} (use --metadata FILE)")
    jobs, pre_failed = walk(vdir)
    summary.failed.extend(pre_failed)
    state = store.video_states()
    if cfg.prune:
        root = str(vdir.resolve())
        present = {j.video_id for j in jobs}
        gone = [v for v, r in state.items() if r["path"].startswith(root + os.sep) and v not in present
                and not os.path.exists(r["path"])]
        if gone:
            store.forget(gone)
            summary.removed = gone
    return meta, jobs, state


def index_folder(video_dir: str | os.PathLike, index_dir: str | os.PathLike, config: IndexConfig | None = None,
                 progress: Progress | None = None) -> IndexSummary:
    """Index every media file under ``video_dir`` into the LanceDB index at ``index_dir``.

    New and changed files (by content hash) are indexed; unchanged ones are skipped, so a second
    run does no work. Files that cannot be indexed are listed in ``summary.failed`` with the reason;
    everything else is indexed. ``progress(files_done, files_total, label)`` is called from the
    calling thread (label: ``"<file> | <n> segments"``).
    """
    from mmfuse.store.lance import IndexStore

    cfg = config or IndexConfig()
    if int(cfg.workers) < 1:
        raise ParameterError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.window is not None and cfg.window <= 0:
        raise ParameterError(f"window must be > 0 seconds, got {cfg.window}")
    vdir = Path(video_dir)
    if not vdir.is_dir():
        raise InputError(f"{vdir}: video folder does not exist" if not vdir.exists() else f"{vdir}: not a folder")
    t_start = time.perf_counter()
    summary = IndexSummary()
    counter = _Counter()
    with IndexStore.create(index_dir) as store:
        models = _Models(cfg, summary.warnings, load=False)  # loaded below, only if a file needs work
        for m, (kind, spec, ref) in models.specs.items():
            store.check_spec(m, spec)  # fail before any work when the index holds another model
        summary.modalities = list(models.enabled)
        meta, jobs, state = plan_folder(store, vdir, cfg, models.enabled, summary)
        # Content hashes first (threads: I/O bound): unchanged files never reach a model, and a run
        # with nothing new does not even load the models.
        total = len(jobs)
        done = 0
        stop = threading.Event()

        def report(label: str) -> None:
            if progress is not None:
                progress(done, total, f"{label} | {counter.segments} segments")

        report("hashing")
        wanted = set(models.enabled)
        todo: list[_Job] = []
        # A changed sidecar entry counts as a change of the video (re-indexed as a whole).
        old_meta = {}
        if "meta" in wanted:
            m = store.meta_rows()
            old_meta = dict(zip(m["video_id"].tolist(), m["text"].tolist()))

        def meta_changed(vid: str) -> bool:
            return "meta" in wanted and (meta.get(vid) or {}).get("text") != old_meta.get(vid)

        with cf.ThreadPoolExecutor(max_workers=max(2, int(cfg.workers))) as hp:
            for job, (st, val) in zip(jobs, hp.map(lambda j: _hash_job(j, counter), jobs)):
                old = state.get(job.video_id)
                if st != "ok":
                    summary.failed.append((job.rel, val))
                    done += 1
                elif (old and old["content_hash"] == val and wanted <= set(filter(None, old["modalities"].split(",")))
                      and not meta_changed(job.video_id)):
                    summary.skipped.append((job.rel, "unchanged"))
                    done += 1
                else:
                    job.content_hash = val
                    todo.append(job)
        if todo:
            with _clock(counter, "load_models"):
                models.load(summary.warnings)
            summary.modalities = list(models.enabled)
        report("indexing")
        specs_all = {m: models.specs[m] for m in models.specs}
        buf: list[Any] = []
        last_flush = time.perf_counter()

        def flush() -> None:
            nonlocal last_flush
            if buf:
                with _clock(counter, "write"):
                    store.write_videos(buf, specs_all)
                for rec in buf:
                    summary.indexed.append((rec.video_id, len(rec.segments), rec.info["duration"]))
                    summary.seconds += rec.info["duration"]
                buf.clear()
            last_flush = time.perf_counter()

        pool = cf.ThreadPoolExecutor(max_workers=int(cfg.workers), thread_name_prefix="mmfuse-index")
        try:
            pending = {pool.submit(_process, j, cfg, models, state, meta, counter, stop): j for j in todo}
            last = ""
            while pending:
                finished, _ = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    status, payload = fut.result()
                    if status == "indexed":
                        buf.append(payload)
                    elif status == "skipped":
                        summary.skipped.append((job.rel, payload))
                    else:
                        summary.failed.append((job.rel, payload))
                    done += 1
                    last = job.rel
                # Batches bound both the commit count and the work an interruption can lose.
                if len(buf) >= cfg.batch_size or (buf and time.perf_counter() - last_flush > cfg.batch_seconds):
                    flush()
                report(last or "indexing")
            flush()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        # Plug-ins that keep their own index (``index(store)``, no per-segment encoder) build it now,
        # from the committed segments/text; they are reloaded at search time by their reference.
        for name, plug in models.plugins:
            if not hasattr(plug, "encode_segments") and callable(getattr(plug, "index", None)) and (summary.indexed or summary.removed):
                try:
                    with _clock(counter, name):
                        plug.index(store)
                except MmfuseError as e:
                    summary.warnings.append(f"plug-in {name}: index() failed: {e}")
        if summary.indexed or summary.removed:
            with _clock(counter, "optimize"):
                store.optimize()
    summary.segments = counter.segments
    summary.timings = dict(counter.timings)
    summary.wall = time.perf_counter() - t_start
    return summary
