"""Planning an indexing run, the same for both engines: the settings (:class:`IndexConfig`, checked when built, so a
mistake is reported before anything is created), walking the video folder (hidden entries are reported as skipped,
unreadable names as failed), the metadata sidecar, and :class:`Plan`, which decides what needs work: a file is skipped
when its content, the modalities it holds and its sidecar entry are all unchanged; a file whose bytes the index holds
gets only the modalities it lacks (and meta when its sidecar entry changed), the others carried over from the index."""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmfuse.errors import InputError, ParameterError, unknown
from mmfuse.store.lance import IndexStore

from .caption import INPUTS, CaptionStats, load_template
from .probe import VIDEO_EXTENSIONS, display_name, is_media_file

__all__ = [
    "ASR_TASKS", "DEFAULT_MODALITIES", "DENSE", "FRAME_SIZE", "MODALITIES", "UNCHANGED", "IndexConfig", "IndexSummary",
    "Job", "Plan", "Walk", "find_metadata", "load_metadata", "plan_folder", "read_sidecar", "video_folder", "walk",
]

MODALITIES = ("visual", "audio", "ocr", "asr", "meta", "caption")
# what an index holds when the user names no modality: captions need a vision-language model, so they are asked for
DEFAULT_MODALITIES = ("visual", "audio", "ocr", "asr", "meta")
FRAME_SIZE = 960  # default cap on the longer side of decoded frames, in pixels
ASR_TASKS = ("transcribe", "translate")  # translate: also the English translation, as the modality asr_en
# text modalities also searched with the dense text embedder, in the vector column NAME_dense
DENSE = ("asr", "asr_en", "meta", "caption")
UNCHANGED = "unchanged"  # the skip reason of a file whose index entry is current
Progress = Callable[[int, int, str], None]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _seconds(name: str, value: Any, *, zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise ParameterError(f"{name} must be a {'non-negative' if zero else 'positive'} number of seconds, "
                             f"got {value!r}")
    return float(value)


def _check_path(flag: str, value: Any, *, always: bool = False) -> None:
    """A model file or folder the user named must exist: one line now, not a modality skipped later. A value that
    may be a hub name (``small``, ``org/model``) is a path only when it says so (absolute, ``./``, ``../``, ``~``)
    or ``always`` (a flag that takes files only)."""
    if value is None:
        return
    text = os.fspath(value)
    if (always or text.startswith(("/", "./", "../", "~"))) and not Path(text).expanduser().exists():
        raise ParameterError(f"{flag} {text}: no such file or directory")


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """A comma-separated string or a sequence of names, stripped, duplicates dropped."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(dict.fromkeys(v.strip() for v in items if v.strip()))


@dataclass(frozen=True)
class IndexConfig:
    """What to index and with which models; every value is checked here (one ``ParameterError`` naming the field and,
    where there is one, its ``mmfuse index`` flag), so an engine finds no mistake after it has created the index.

    ``modalities``/``retrievers`` take a sequence or a comma-separated string. Model fields left ``None`` disable
    that modality with a warning; ``clip_checkpoint`` alone uses the default architecture
    (:data:`mmfuse.encoders.DEFAULTS`). ``window`` None makes each file one segment.

    Languages: ``asr_model`` any faster-whisper model (name or folder; None: the bundled tiny.en), ``asr_task``
    ``"translate"`` also indexes Whisper's English translation (modality ``asr_en``); ``ocr_det_model`` /
    ``ocr_rec_model`` / ``ocr_rec_keys`` replace rapidocr's models; ``text_model`` the dense text embedder
    (sentence-transformers name or folder; None: the bundled all-MiniLM-L6-v2). Captions (modality ``caption``):
    ``vlm_model``/``vlm_base_url``/``vlm_api_key`` (unset: ``$MMFUSE_VLM_*``, then ``$OPENAI_*``), the answer cache
    ``vlm_cache`` (True: the default folder, a path, or None), the server's ``vlm_timeout``/``vlm_retries``/
    ``vlm_concurrency``, and ``caption_template``/``caption_input``/``caption_cell``/``caption_max_tokens``
    (:class:`mmfuse.ingest.caption.Captioner`).
    """

    modalities: Sequence[str] = DEFAULT_MODALITIES
    window: float | None = 10.0
    frames_per_segment: int = 4
    frame_size: int | None = FRAME_SIZE
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_checkpoint: str | os.PathLike | None = None
    clap_model: str | None = None
    dense_text: bool = True
    retrievers: Sequence[str] = ()
    metadata: str | os.PathLike | None = None
    workers: int = 1
    asr_chunk: float = 30.0
    batch_size: int = 32  # videos per index commit
    batch_seconds: float = 5.0  # ... or whatever finished within this many seconds
    prune: bool = True
    asr_model: str | None = None
    asr_task: str = "transcribe"
    ocr_det_model: str | os.PathLike | None = None
    ocr_rec_model: str | os.PathLike | None = None
    ocr_rec_keys: str | os.PathLike | None = None
    text_model: str | os.PathLike | None = None
    vlm_model: str | None = None
    vlm_base_url: str | None = None
    vlm_api_key: str | None = None
    vlm_cache: Any = True
    vlm_timeout: float = 120.0
    vlm_retries: int = 2
    vlm_concurrency: int = 4
    caption_template: str | os.PathLike = "caption"
    caption_input: str = "grid"
    caption_cell: int = 336
    caption_max_tokens: int = 160

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalized values are set once, here
        mods = _names(self.modalities)
        for m in mods:
            if m not in MODALITIES:
                raise unknown("modality", m, MODALITIES)
        set_(self, "modalities", mods)
        set_(self, "retrievers", _names(self.retrievers))
        if not mods and not self.retrievers:
            raise ParameterError("nothing to index: no modality (--modalities) and no plug-in (--retriever)")
        if self.window is not None:
            set_(self, "window", _seconds("window (--window)", self.window))
        set_(self, "frames_per_segment", _positive_int("frames_per_segment (--frames)", self.frames_per_segment))
        if self.frame_size is not None:
            if isinstance(self.frame_size, bool) or not isinstance(self.frame_size, numbers.Integral) \
                    or self.frame_size < 2:
                raise ParameterError(f"frame_size (--frame-size) must be None or an integer >= 2 (pixels), "
                                     f"got {self.frame_size!r}")
            set_(self, "frame_size", int(self.frame_size))
        set_(self, "workers", _positive_int("workers (--workers)", self.workers))
        set_(self, "asr_chunk", _seconds("asr_chunk", self.asr_chunk))
        set_(self, "batch_size", _positive_int("batch_size", self.batch_size))
        set_(self, "batch_seconds", _seconds("batch_seconds", self.batch_seconds, zero=True))
        if self.asr_task not in ASR_TASKS:
            raise unknown("ASR task (--asr-task)", self.asr_task, ASR_TASKS)
        for flag, value in (("--clip-checkpoint", self.clip_checkpoint), ("--ocr-det-model", self.ocr_det_model),
                            ("--ocr-rec-model", self.ocr_rec_model), ("--ocr-rec-keys", self.ocr_rec_keys)):
            _check_path(flag, value, always=True)  # files only
        for flag, value in (("--clip-model", self.clip_model), ("--clap-model", self.clap_model),
                            ("--asr-model", self.asr_model), ("--text-model", self.text_model)):
            _check_path(flag, value)  # a hub name or a folder
        if "caption" in mods:
            self._check_captions()

    def _check_captions(self) -> None:
        """The caption settings, checked now; the server and model are resolved from the environment here, so every
        worker (a Ray actor on another node too) captions with the same ones."""
        env = os.environ.get
        model = self.vlm_model or env("MMFUSE_VLM_MODEL") or None
        url = self.vlm_base_url or env("MMFUSE_VLM_BASE_URL") or env("OPENAI_BASE_URL") or None
        key = self.vlm_api_key or env("MMFUSE_VLM_API_KEY") or env("OPENAI_API_KEY") or None
        if not model:
            raise ParameterError("the caption modality needs a vision-language model: pass --vlm-base-url URL "
                                 "--vlm-model NAME (an OpenAI-compatible server) or --vlm-model DIR (a local "
                                 "transformers model), or set MMFUSE_VLM_BASE_URL and MMFUSE_VLM_MODEL")
        local = Path(model).expanduser().is_dir() and not self.vlm_base_url
        for name, value in (("vlm_model", model), ("vlm_base_url", None if local else url),
                            ("vlm_api_key", None if local else key)):
            object.__setattr__(self, name, value)
        load_template(self.caption_template)
        if self.caption_input not in INPUTS:
            raise unknown("caption input (--caption-input)", self.caption_input, INPUTS)
        if isinstance(self.vlm_retries, bool) or not isinstance(self.vlm_retries, numbers.Integral) \
                or self.vlm_retries < 0:
            raise ParameterError(f"vlm_retries (--vlm-retries) must be an integer >= 0, got {self.vlm_retries!r}")
        _positive_int("vlm_concurrency (--vlm-concurrency)", self.vlm_concurrency)
        _seconds("vlm_timeout (--vlm-timeout)", self.vlm_timeout)
        _positive_int("caption_max_tokens", self.caption_max_tokens)
        if _positive_int("caption_cell (--caption-cell)", self.caption_cell) < 16:
            raise ParameterError(f"caption_cell (--caption-cell) must be at least 16 pixels, got {self.caption_cell}")


@dataclass
class IndexSummary:
    """Result of one indexing run. ``skipped`` holds (file, reason) for files left alone on purpose (``UNCHANGED``,
    hidden names), ``failed`` (file, reason) for every file that could not be indexed."""

    indexed: list[tuple[str, int, float]] = field(default_factory=list)  # video_id, segments, seconds
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    captions: CaptionStats | None = None  # the vision-language model's calls, cache hits and tokens (caption runs)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of work per stage (summed over threads)
    wall: float = 0.0
    seconds: float = 0.0  # seconds of video indexed in this run
    segments: int = 0  # segments written in this run


# --------------------------------------------------------------------------- the folder
@dataclass
class Job:
    """One media file of the folder: its path, its path relative to the folder and its video id (that path
    without the extension)."""

    path: Path
    rel: str
    video_id: str


@dataclass
class Walk:
    jobs: list[Job]
    failed: list[tuple[str, str]]  # refused before decoding: (name, reason)
    skipped: list[tuple[str, str]]  # hidden files and folders: (name, reason)


def video_folder(video_dir: str | os.PathLike) -> Path:
    vdir = Path(video_dir)
    if not vdir.is_dir():
        raise InputError(f"{vdir}: video folder does not exist" if not vdir.exists() else f"{vdir}: not a folder")
    return vdir


def walk(video_dir: str | os.PathLike) -> Walk:
    """Media files under ``video_dir`` (sorted). Names starting with '.' are not indexed (editor, OS and sync files,
    AppleDouble ``._x.mp4``): hidden media files and hidden folders are listed in ``skipped`` with the reason."""
    root = Path(video_dir)
    jobs, failed, skipped, seen = [], [], [], {}
    for here, dirs, files in os.walk(root):
        base = Path(here)
        for d in sorted(d for d in dirs if d.startswith(".")):
            skipped.append((display_name((base / d).relative_to(root)) + "/",
                            "hidden folder (name starts with '.'): not searched"))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            p = base / f
            if not is_media_file(p):
                continue
            if f.startswith("."):
                skipped.append((display_name(p.relative_to(root)),
                                "hidden file (name starts with '.'): not indexed; rename it to index it"))
                continue
            rel = p.relative_to(root).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                failed.append((display_name(p.relative_to(root)), "file name is not valid UTF-8 (rename the file)"))
                continue
            vid = rel[: -len(p.suffix)] if p.suffix else rel
            if vid in seen:
                failed.append((rel, f"duplicate video id {vid!r} (also {seen[vid]}); rename one of them"))
                continue
            seen[vid] = rel
            jobs.append(Job(p, rel, vid))
    return Walk(jobs, failed, skipped)


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
        key = Path(str(key)).stem if Path(str(key)).suffix.lower() in VIDEO_EXTENSIONS else str(key)
        tags = r.get("tags") or []
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.replace("|", ";").replace(",", ";").split(";") if t.strip()]
        title, desc = str(r.get("title") or ""), str(r.get("description") or "")
        out[key] = {"title": title, "description": desc, "tags": ", ".join(map(str, tags)),
                    "text": " ".join(x for x in (title, desc, " ".join(map(str, tags))) if x)}
    return out


def find_metadata(video_dir: Path) -> Path | None:
    for name in ("metadata.json", "metadata.csv"):
        if (video_dir / name).is_file():
            return video_dir / name
    return None


def read_sidecar(vdir: Path, cfg: IndexConfig, warnings: list[str]) -> dict[str, dict]:
    """The metadata entries by video id when the meta modality is on (``cfg.metadata``, else the folder's
    metadata.json/.csv); an engine reads it before it touches the index, so a bad sidecar changes nothing."""
    if "meta" not in cfg.modalities:
        return {}
    path = Path(cfg.metadata) if cfg.metadata else find_metadata(vdir)
    if path is None:
        warnings.append(f"meta modality: no metadata.json/metadata.csv in {vdir} (use --metadata FILE)")
        return {}
    return load_metadata(path)


# --------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """What a run starts from: the files, the sidecar entries, and what the index holds for each video."""

    jobs: list[Job]
    enabled: tuple[str, ...]
    meta: dict[str, dict[str, Any]]  # sidecar entries by video id
    state: dict[str, dict[str, Any]]  # stored content hash and modalities by video id
    old_meta: dict[str, str]  # stored sidecar text by video id

    def work(self, job: Job, content_hash: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(modalities to compute, modalities to carry over from the index) for a file. New bytes: every enabled
        modality, nothing carried. Bytes the index holds: the enabled modalities it lacks, plus meta when the
        sidecar entry changed; every other modality the video holds is carried over (whether enabled or not: a run
        that adds a modality loses none). Nothing to compute: the file is unchanged."""
        old = self.state.get(job.video_id)
        if old is None or old["content_hash"] != content_hash:
            return self.enabled, ()
        have = tuple(filter(None, old["modalities"].split(",")))
        stale_meta = (self.meta.get(job.video_id) or {}).get("text") != self.old_meta.get(job.video_id)
        todo = tuple(m for m in self.enabled if m not in have or (m == "meta" and stale_meta))
        return todo, tuple(m for m in have if m not in todo)

    def unchanged(self, job: Job, content_hash: str) -> bool:
        """Skip-if-unchanged: same bytes, every enabled modality already indexed, and (with the meta modality) the
        same sidecar entry."""
        return not self.work(job, content_hash)[0]


def plan_folder(store: IndexStore, vdir: Path, cfg: IndexConfig, specs: dict[str, tuple[str, dict, str]],
                meta: dict[str, dict[str, Any]], summary: IndexSummary) -> Plan:
    """The start of a run on an open store: refuse a column that holds another model's output (``specs``: column ->
    (kind, spec, ref), its keys the enabled modalities), drop half-written rows, walk the folder (refused and hidden
    entries go to ``summary``) and forget videos whose files were deleted (``cfg.prune``)."""
    for m, (_kind, spec, _ref) in specs.items():
        store.check_spec(m, spec)
    enabled = [m for m in specs if m not in {f"{d}_dense" for d in DENSE}]
    store.cleanup()
    found = walk(vdir)
    summary.failed.extend(found.failed)
    summary.skipped.extend(found.skipped)
    state = store.video_states()
    if cfg.prune:
        root = str(vdir.resolve())
        present = {j.video_id for j in found.jobs}
        gone = [v for v, r in state.items() if r["path"].startswith(root + os.sep) and v not in present
                and not os.path.exists(r["path"])]
        if gone:
            store.forget(gone)
            summary.removed = gone
    old_meta: dict[str, str] = {}
    if "meta" in enabled:
        m = store.meta_rows()
        old_meta = dict(zip(m["video_id"].tolist(), m["text"].tolist()))
    return Plan(found.jobs, tuple(enabled), meta, state, old_meta)
