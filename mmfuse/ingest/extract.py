"""Extraction, the same for both engines: the model set of a run (:class:`Models`), opening a file (:func:`decode`),
what each modality makes of a segment (:data:`SEGMENT_STEPS`, plug-ins, and the steps that keep state across
segments: :class:`AsrChunks` for speech, :class:`~mmfuse.ingest.caption.CaptionBatch` for captions, built by
:func:`stream_steps`), the per-file result (:class:`FileExtraction`: segment rows, transcript and caption assignment,
metadata row, dense text vectors, the ``VideoRecord``) and :func:`failure_reason`, the one line both engines report
for a file that failed. A file computes only its ``todo`` modalities (:meth:`mmfuse.ingest.plan.Plan.work`); the
writer fills in the ones it ``carry``-s over from the index.

The local engine runs these per file as the segments stream out of the decoder (:func:`extract_file`); the Ray engine
runs each modality as its own stage over a file's decoded segments. Same functions, so the same index.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmfuse.encoders import load_encoder
from mmfuse.errors import MmfuseError, ModelError, ParameterError
from mmfuse.retrievers import load_retriever
from mmfuse.store.lance import VideoRecord

from .caption import CaptionBatch, Captioner, CaptionStats
from .plan import DENSE, FRAME_SIZE, MODALITIES, IndexConfig, Job
from .probe import AUDIO_EXTENSIONS, MediaError, MediaInfo, probe
from .segments import Segment, iter_segments

__all__ = [
    "SEGMENT_STEPS", "SEGMENT_TEXT", "AsrChunks", "FileExtraction", "Models", "Timings", "decode", "extract_file",
    "failure_reason", "stream_steps",
]

# modality -> (encoder kind, what to check when its model will not load)
_ENCODERS = {
    "visual": ("clip", " (check --clip-model/--clip-pretrained/--clip-checkpoint)"),
    "audio": ("clap", " (check --clap-model)"),
    "ocr": ("ocr", " (check --ocr-det-model/--ocr-rec-model/--ocr-rec-keys)"),
    "asr": ("whisper", " (check --asr-model)"),
    "asr_en": ("whisper", " (check --asr-model)"),
    "caption": ("vlm", " (check --vlm-model/--vlm-base-url)"),
}
# the modalities whose output depends on the size frames are decoded at (--frame-size is part of their spec)
FRAME_MODALITIES = ("visual", "ocr", "caption")
# modality -> the columns of the segments table it writes
SEGMENT_TEXT = {"ocr": ("ocr_text",), "asr": ("asr_text", "asr_lang"), "asr_en": ("asr_en_text",),
                "caption": ("caption_text",)}


def _model_of(modality: str, cfg: IndexConfig) -> tuple[str | None, dict[str, Any]] | str:
    """(model name or path, options) for a modality's encoder, or why the config gives it none."""
    if modality == "visual":
        if not (cfg.clip_model or cfg.clip_checkpoint):
            return ("no CLIP model configured; enable it with --clip-model NAME --clip-pretrained TAG or "
                    "--clip-checkpoint PATH")
        return cfg.clip_model, {"pretrained": cfg.clip_pretrained, "checkpoint": cfg.clip_checkpoint}
    if modality == "audio":
        if not cfg.clap_model:
            return "no CLAP model configured; enable it with --clap-model NAME_OR_DIR"
        return cfg.clap_model, {}
    if modality in ("asr", "asr_en"):  # None: the bundled tiny.en
        return cfg.asr_model, {"task": "translate" if modality == "asr_en" else "transcribe"}
    if modality == "ocr":  # None: rapidocr's bundled models
        return None, {"det_model": cfg.ocr_det_model, "rec_model": cfg.ocr_rec_model, "rec_keys": cfg.ocr_rec_keys}
    return None, {}


def _captioner(cfg: IndexConfig) -> Captioner:
    return Captioner.from_settings(cfg.vlm_model, base_url=cfg.vlm_base_url, api_key=cfg.vlm_api_key,
                                   cache=cfg.vlm_cache, timeout=cfg.vlm_timeout, retries=cfg.vlm_retries,
                                   concurrency=cfg.vlm_concurrency, template=cfg.caption_template,
                                   input=cfg.caption_input, cell=cfg.caption_cell, max_tokens=cfg.caption_max_tokens)
_MIN_ASR_SAMPLES = 1600  # whisper on < 0.1 s of 16 kHz audio only hallucinates


class Models:
    """The models of one run: built (and their names checked) when constructed, loaded by :meth:`load` only when
    some file needs work, then shared by every worker thread. A model that cannot be built or loaded drops its
    modality with a warning; an unknown or clashing plug-in raises, before any model loads.

    ``enabled`` lists the modalities the run writes; ``specs`` maps each written column (modalities, the dense
    columns ``NAME_dense``, plug-ins) to ``(kind, spec, plug-in reference)``; ``encoders`` maps modality -> encoder
    (``asr_en``: Whisper translating, with ``asr_task="translate"``; ``caption``: the
    :class:`~mmfuse.ingest.caption.Captioner`).
    """

    def __init__(self, cfg: IndexConfig, warnings: list[str], *, load: bool = True) -> None:
        self.encoders: dict[str, Any] = {}
        self.plugins: list[tuple[str, Any]] = []
        self.dense: Any = None
        self.enabled: list[str] = []
        self.specs: dict[str, tuple[str, dict, str]] = {}
        plugin_specs = {}
        for ref in cfg.retrievers:  # first: a wrong reference fails before any model is built
            obj = load_retriever(ref)
            obj = obj() if isinstance(obj, type) else obj
            name = str(getattr(obj, "name", ref))
            if name in (*MODALITIES, "asr_en", *(f"{d}_dense" for d in DENSE)) or name in plugin_specs:
                raise ParameterError(f"--retriever {ref}: name {name!r} clashes with another modality")
            self.plugins.append((name, obj))
            plugin_specs[name] = ("plugin", dict(getattr(obj, "spec", {}) or {}), ref)
        mods = [x for x in MODALITIES if x in cfg.modalities]  # a fixed order, whatever the user's
        if "asr" in mods and cfg.asr_task == "translate":
            mods.insert(mods.index("asr") + 1, "asr_en")
        for m in mods:
            if m == "meta":
                self._enable("meta", {"model": "bm25", "fields": ["title", "description", "tags"]})
                continue
            model = _model_of(m, cfg)
            if isinstance(model, str):
                warnings.append(f"{m} modality skipped: {model}")
                continue
            kind, hint = _ENCODERS[m]
            try:
                enc = _captioner(cfg) if m == "caption" else load_encoder(kind, model[0], lazy=True, **model[1])
            except (ModelError, ImportError) as e:
                warnings.append(f"{m} modality skipped: {e}{hint}")
                continue
            if m == "asr_en" and enc.english_only:
                warnings.append(_english_only(enc))
                continue
            self.encoders[m] = enc
            spec = dict(enc.spec)
            if m in FRAME_MODALITIES and cfg.frame_size != FRAME_SIZE:  # the default size keeps older specs valid
                spec["frame_size"] = cfg.frame_size
            self._enable(m, spec)
        if cfg.dense_text and set(DENSE) & set(self.enabled):
            self.dense = load_encoder("text", cfg.text_model, lazy=True)
            for m in DENSE:
                if m in self.enabled:
                    self.specs[f"{m}_dense"] = (f"{m}_dense", dict(self.dense.spec), "")
        for name, spec in plugin_specs.items():
            self.specs[name] = spec
            self.enabled.append(name)
        if load:
            self.load(warnings)

    def _enable(self, modality: str, spec: dict) -> None:
        self.enabled.append(modality)
        self.specs[modality] = (modality, dict(spec), "")

    def load(self, warnings: list[str]) -> None:
        """Load every model now, once, so worker threads never race to load the same one."""
        for m, enc in list(self.encoders.items()):
            try:
                enc.load()
            except (ModelError, ImportError) as e:
                warnings.append(f"{m} modality skipped: {e}{_ENCODERS[m][1]}")
                self._drop(m)
                continue
            if m == "asr_en" and enc.english_only:  # known once the weights are read
                warnings.append(_english_only(enc))
                self._drop(m)
        if self.dense is not None:
            try:
                self.dense.load()
            except (ModelError, ImportError) as e:
                warnings.append(f"dense text search skipped: {e} (check --text-model)")
                self.dense = None
                for m in DENSE:
                    self.specs.pop(f"{m}_dense", None)

    def _drop(self, m: str) -> None:
        del self.encoders[m]
        self.enabled.remove(m)
        self.specs.pop(m, None)
        self.specs.pop(f"{m}_dense", None)

    def audio_rates(self) -> tuple[int, ...]:
        """Every sample rate a model of this run reads: 16 kHz for Whisper, 48 kHz for CLAP, plug-ins' own."""
        rates = {enc.sample_rate for m, enc in self.encoders.items() if m in ("asr", "asr_en", "audio")}
        for _, p in self.plugins:
            rates.update(int(r) for r in getattr(p, "audio_rates", ()) or ())
        return tuple(sorted(rates))


def _english_only(enc: Any) -> str:
    return (f"asr_en modality skipped: {enc.model_name} is an English-only Whisper model, its transcript already is "
            f"English (pass a multilingual --asr-model such as small or large-v3 to translate)")


class Timings:
    """Seconds of work per stage (summed over threads) and segments decoded so far (for progress labels)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.segments = 0

    def add(self, key: str, dt: float) -> None:
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + dt

    @contextlib.contextmanager
    def clock(self, key: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(key, time.perf_counter() - t)

    def segment(self) -> None:
        with self._lock:
            self.segments += 1


def failure_reason(e: BaseException) -> str:
    """The reason a file failed, one line: a media error's reason, an ``MmfuseError``'s message, an OS error."""
    if isinstance(e, MmfuseError):
        return getattr(e, "reason", None) or str(e)
    return f"cannot read: {getattr(e, 'strerror', None) or e}"


def decode(job: Job, cfg: IndexConfig, rates: Sequence[int]) -> tuple[MediaInfo, Iterator[Segment]]:
    """Probe a file and start its one decoding pass (segments with audio at ``rates``); a file the index cannot
    take raises :class:`MediaError` (a video container without video, a file without any stream)."""
    info = probe(job.path)
    if not info.has_video and job.path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise MediaError(job.path, "no video stream")
    if not info.has_video and not info.has_audio:
        raise MediaError(job.path, "no video or audio stream")
    return info, iter_segments(job.path, window=cfg.window, frames_per_segment=cfg.frames_per_segment,
                               audio_rates=tuple(rates) if info.has_audio else (), frame_size=cfg.frame_size,
                               video_id=job.video_id)


class AsrChunks:
    """Consecutive segments' 16 kHz audio, transcribed in chunks of about ``seconds`` (memory stays flat on long
    files) by each Whisper of ``transcribers`` (modality -> transcriber: ``asr``, and ``asr_en`` translating);
    ``pieces`` maps each modality to its ``(start, end, text, language)`` with times from the file start."""

    def __init__(self, transcribers: dict[str, Any], seconds: float) -> None:
        self.transcribers, self.seconds = transcribers, seconds
        self.pieces: dict[str, list[tuple[float, float, str, str]]] = {m: [] for m in transcribers}
        self._buf: list[tuple[float, float, np.ndarray]] = []

    def add(self, seg: Segment) -> None:
        a = seg.audio.get(16000)
        if a is None:
            return
        self._buf.append((seg.start, seg.end, a))
        if self._buf[-1][1] - self._buf[0][0] >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        audio = np.concatenate([a for _, _, a in self._buf])
        if audio.size >= _MIN_ASR_SAMPLES:
            for m, asr in self.transcribers.items():
                pieces, lang = asr.transcribe_chunk(audio, offset=self._buf[0][0])
                self.pieces[m] += [(a, b, str(t).strip(), lang or "") for a, b, t in pieces]
        self._buf.clear()


def stream_steps(models: "Models", cfg: IndexConfig, todo: Sequence[str]) -> list[Any]:
    """The steps of ``todo`` that keep state across a file's segments, each with ``add(segment)`` and ``flush()``:
    speech in ~``cfg.asr_chunk`` s chunks (:class:`AsrChunks`), captions a batch at a time
    (:class:`~mmfuse.ingest.caption.CaptionBatch`); :meth:`FileExtraction.collect` takes their results."""
    steps: list[Any] = []
    speech = {m: models.encoders[m] for m in ("asr", "asr_en") if m in todo and m in models.encoders}
    if speech:
        steps.append(AsrChunks(speech, cfg.asr_chunk))
    if "caption" in todo and "caption" in models.encoders:
        steps.append(CaptionBatch(models.encoders["caption"]))
    return steps


@dataclass
class FileExtraction:
    """Everything one file contributes, filled segment by segment and modality by modality (in any order of
    modalities), then :meth:`finish` and :meth:`encode_dense`, then :meth:`record`. ``todo``: the modalities this
    run computes for the file; ``carry``: the ones the writer carries over from the index
    (:meth:`mmfuse.ingest.plan.Plan.work`)."""

    job: Job
    content_hash: str
    info: MediaInfo
    todo: tuple[str, ...] = ()
    carry: tuple[str, ...] = ()
    rows: list[dict[str, Any]] = field(default_factory=list)
    ocr_text: dict[int, str] = field(default_factory=dict)
    vectors: dict[str, dict[str, list]] = field(default_factory=dict)
    pieces: dict[str, list[tuple[float, float, str, str]]] = field(default_factory=dict)  # asr, asr_en
    captions: dict[int, str] = field(default_factory=dict)
    caption_stats: CaptionStats | None = None
    meta_row: dict[str, Any] | None = None
    subtitles: list[dict[str, Any]] | None = None  # a carried-over transcript (a computed one comes from pieces)

    def add_vectors(self, m: str, seg_ids: list[str], v: np.ndarray, times: list[float] | None = None) -> None:
        d = self.vectors.setdefault(m, {"segment_id": [], "frame_time": [], "vector": []})
        d["segment_id"].extend(seg_ids)
        d["frame_time"].extend(times if times is not None else [np.nan] * len(seg_ids))
        d["vector"].append(np.asarray(v, dtype=np.float32).reshape(len(seg_ids), -1))

    # -- per segment, one method per modality (SEGMENT_STEPS)
    def read_text(self, ocr: Any, seg: Segment) -> None:
        if seg.frames:
            self.ocr_text[seg.index] = ocr.segment_text(seg.frames)

    def encode_frames(self, clip: Any, seg: Segment) -> None:
        if seg.frames:
            self.add_vectors("visual", [seg.segment_id] * len(seg.frames), clip.encode_frames(seg.frames),
                             list(seg.frame_times))

    def encode_audio(self, clap: Any, seg: Segment) -> None:
        a = seg.audio.get(48000)
        if a is not None and a.size:
            self.add_vectors("audio", [seg.segment_id], clap.encode_audio([a]))

    def encode_plugin(self, name: str, plugin: Any, seg: Segment) -> None:
        if hasattr(plugin, "encode_segments"):
            self.add_vectors(name, [seg.segment_id], plugin.encode_segments([seg]))

    def add_segment(self, seg: Segment) -> None:
        """The segment's row (after its OCR step, if any; the other texts come with :meth:`finish`)."""
        self.rows.append({"video_id": self.job.video_id, "segment_id": seg.segment_id, "seg_index": int(seg.index),
                          "start": float(seg.start), "end": float(seg.end),
                          "ocr_text": self.ocr_text.get(seg.index, ""), "asr_text": "", "caption_text": "",
                          "asr_lang": "", "asr_en_text": ""})

    def collect(self, step: Any) -> None:
        """Take the results of a :func:`stream_steps` step, once every segment went through it."""
        step.flush()
        if isinstance(step, AsrChunks):
            self.pieces.update(step.pieces)
        else:
            self.captions.update(step.texts)
            self.caption_stats = step.stats if self.caption_stats is None else self.caption_stats.merge(step.stats)

    # -- per file
    @property
    def duration(self) -> float:
        return float(self.info.duration or (self.rows[-1]["end"] if self.rows else 0.0))

    def finish(self, meta: dict[str, Any] | None) -> None:
        """After every segment: each transcript piece goes to the row whose window holds its midpoint (with the
        language Whisper detected for most of the row's text), captions to their rows, and the sidecar entry
        (``meta``, with the meta modality) becomes the video's metadata row."""
        if self.rows:
            starts = np.asarray([r["start"] for r in self.rows])
            for m, pieces in self.pieces.items():
                texts: list[list[tuple[str, str]]] = [[] for _ in self.rows]
                for a, b, text, lang in pieces:
                    i = int(np.clip(np.searchsorted(starts, (a + b) / 2, side="right") - 1, 0, len(self.rows) - 1))
                    if text:
                        texts[i].append((text, lang))
                for r, tx in zip(self.rows, texts):
                    r[SEGMENT_TEXT[m][0]] = " ".join(t for t, _ in tx)
                    if m == "asr" and tx:
                        chars: dict[str, int] = {}
                        for t, lang in tx:
                            chars[lang] = chars.get(lang, 0) + len(t)
                        r["asr_lang"] = max(chars, key=chars.get)
        for r in self.rows:
            r["caption_text"] = self.captions.get(r["seg_index"], "")
        if "meta" in self.todo and meta is not None:
            vid = self.job.video_id
            self.meta_row = {"video_id": vid, "segment_id": f"{vid}#meta", "start": 0.0, "end": self.duration, **meta}

    def encode_dense(self, dense: Any, columns: Sequence[str]) -> None:
        """Dense text vectors (``NAME_dense`` of ``columns``) of the rows' texts of the text modalities computed here
        (transcript, translation, caption) and of the metadata text."""
        for m in DENSE:
            if m not in self.todo or f"{m}_dense" not in columns:
                continue
            if m == "meta":
                if self.meta_row is not None and self.meta_row["text"]:
                    self.add_vectors("meta_dense", [self.meta_row["segment_id"]], dense.encode([self.meta_row["text"]]))
                continue
            col = SEGMENT_TEXT[m][0]
            rows = [r for r in self.rows if r[col]]
            if rows:
                self.add_vectors(f"{m}_dense", [r["segment_id"] for r in rows], dense.encode([r[col] for r in rows]))

    def record(self) -> VideoRecord:
        """The video as the store writes it (carried-over modalities are added by the writer)."""
        info = self.info
        vectors = {k: {"segment_id": d["segment_id"], "frame_time": d["frame_time"],
                       "vector": np.concatenate(d["vector"])} for k, d in self.vectors.items()}
        subtitles = self.subtitles
        if "asr" in self.todo:
            subtitles = [{"start": a, "end": b, "text": t} for a, b, t, _ in self.pieces.get("asr", [])]
        return VideoRecord(
            video_id=self.job.video_id, path=str(self.job.path.resolve()), content_hash=self.content_hash,
            info={"duration": self.duration, "has_video": info.has_video, "has_audio": info.has_audio,
                  "width": info.width, "height": info.height, "fps": info.fps, "rotation": info.rotation},
            segments=self.rows, vectors=vectors, subtitles=subtitles, meta=self.meta_row,
            modalities=sorted({*self.todo, *self.carry}),
        )


# modality -> its per-segment step; OCR first so that a segment's row, added after its steps, carries its text
SEGMENT_STEPS: dict[str, Callable[[FileExtraction, Any, Segment], None]] = {
    "ocr": FileExtraction.read_text,
    "visual": FileExtraction.encode_frames,
    "audio": FileExtraction.encode_audio,
}


def _label(step: Any) -> str:
    return "asr" if isinstance(step, AsrChunks) else "caption"


def extract_file(job: Job, content_hash: str, todo: Sequence[str], carry: Sequence[str], cfg: IndexConfig,
                 models: Models, meta: dict[str, dict], timings: Timings, stop: threading.Event) -> FileExtraction:
    """Index one file's ``todo`` modalities in one decoding pass, every modality fed as its segments stream out (the
    local engine). Raises what :func:`failure_reason` turns into the file's reason (``MediaError("interrupted")``
    on ``stop``)."""
    with timings.clock("probe"):
        info, segments = decode(job, cfg, models.audio_rates())
    work = FileExtraction(job, content_hash, info, tuple(todo), tuple(carry))
    steps = stream_steps(models, cfg, todo)
    while True:
        if stop.is_set():
            raise MediaError(None, "interrupted")
        with timings.clock("decode"):
            seg = next(segments, None)
        if seg is None:
            break
        for m, step in SEGMENT_STEPS.items():
            if m in models.encoders and m in todo:
                with timings.clock(m):
                    step(work, models.encoders[m], seg)
        for name, plugin in models.plugins:
            if name in todo:
                with timings.clock(name):
                    work.encode_plugin(name, plugin, seg)
        work.add_segment(seg)
        for s in steps:
            with timings.clock(_label(s)):
                s.add(seg)
        timings.segment()
    for s in steps:
        with timings.clock(_label(s)):
            work.collect(s)
    work.finish(meta.get(job.video_id))
    if models.dense is not None:
        with timings.clock("dense"):
            work.encode_dense(models.dense, list(models.specs))
    return work
