"""On-screen text extraction with rapidocr-onnxruntime (ships its ONNX models), skipping near-duplicate frames.

rapidocr often drops the spaces between words ("REDBICYCLE"); matching is done downstream by
``mmfuse.retrievers.text`` (``normalize_text``/``squash`` and the n-gram BM25 analyzer), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError
from mmfuse.utils.lazy import require
from mmfuse.utils.text import normalize_text, squash

from .base import first_line

__all__ = ["OcrExtractor", "frame_signature", "normalize_text", "squash"]

Progress = Callable[[int, int, str], None]

_SIG = 32  # side of the grayscale thumbnail used to compare consecutive frames


def frame_signature(frame: np.ndarray, side: int = _SIG) -> np.ndarray:
    """A side x side grayscale thumbnail (float32 in [0, 1]) made by block means: cheap, no resampling library."""
    a = np.asarray(frame)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB frame, got shape {a.shape}")
    h, w = a.shape[:2]
    gray = a[..., 0] * np.float32(0.299 / 255) + a[..., 1] * np.float32(0.587 / 255) + a[..., 2] * np.float32(
        0.114 / 255
    )
    ys = (np.arange(side) * h) // side
    xs = (np.arange(side) * w) // side
    # Block sums by reduceat; a repeated start (frame smaller than side) yields that single row, count 1.
    blocks = np.add.reduceat(np.add.reduceat(gray, ys, axis=0), xs, axis=1)
    ny = np.maximum(np.diff(np.append(ys, h)), 1)
    nx = np.maximum(np.diff(np.append(xs, w)), 1)
    area = np.outer(ny, nx).astype(np.float32)
    return (blocks / area).astype(np.float32)


class OcrExtractor:
    """``extract(frames) -> list[str]``: the text on each frame (lines joined by spaces, reading order).

    A frame whose thumbnail differs from the last OCR'd frame by less than ``dedup_threshold`` (mean absolute
    grayscale difference, 0..1) reuses that frame's text instead of running OCR again: video frames within a
    segment are mostly the same picture.

    ``max_side`` bounds the detector's input (rapidocr's default upscales the *short* side to 736 px, which
    is slow and does not help on video frames); ``min_score`` drops low-confidence lines.
    """

    modality = "ocr"

    def __init__(
        self,
        *,
        dedup_threshold: float = 0.02,
        max_side: int = 960,
        min_score: float = 0.5,
        use_cls: bool = False,
        threads: int | None = None,
    ):
        self.dedup_threshold = float(dedup_threshold)
        self.max_side = int(max_side)
        self.min_score = float(min_score)
        self.use_cls = bool(use_cls)
        self.threads = threads
        self._engine = None
        self.n_ocr = 0  # frames actually sent to OCR (for tests and benchmarks)
        self.n_skipped = 0

    @property
    def spec(self) -> dict[str, Any]:
        try:
            ver = version("rapidocr-onnxruntime")
        except PackageNotFoundError:
            ver = None
        return {"kind": "rapidocr-onnxruntime", "version": ver, "max_side": self.max_side,
                "min_score": self.min_score, "use_cls": self.use_cls}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OcrExtractor:
        return cls(max_side=spec.get("max_side", 960), min_score=spec.get("min_score", 0.5),
                   use_cls=spec.get("use_cls", False))

    def load(self):
        if self._engine is None:
            rapidocr = require("rapidocr_onnxruntime")
            kwargs: dict[str, Any] = {
                "det_limit_side_len": self.max_side,
                "det_limit_type": "max",
                "use_cls": self.use_cls,
                "text_score": self.min_score,
                "print_verbose": False,
            }
            if self.threads:
                kwargs["intra_op_num_threads"] = int(self.threads)
            try:
                self._engine = rapidocr.RapidOCR(**kwargs)
            except Exception as e:
                raise ModelError(f"cannot start rapidocr: {first_line(e)}") from None
        return self._engine

    def read(self, frame: np.ndarray) -> str:
        """OCR one RGB frame, no de-duplication."""
        engine = self.load()
        a = np.asarray(frame)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise InputError(f"expected an HxWx3 uint8 RGB frame, got shape {a.shape} dtype {a.dtype}")
        # rapidocr treats arrays as OpenCV BGR.
        result, _ = engine(np.ascontiguousarray(a[:, :, ::-1]), use_cls=self.use_cls)
        self.n_ocr += 1
        if not result:
            return ""
        lines = [str(r[1]).strip() for r in result if len(r) > 2 and float(r[2]) >= self.min_score]
        return " ".join(s for s in lines if s)

    def extract(self, frames: Sequence[np.ndarray], progress: Progress | None = None) -> list[str]:
        """Text of each frame, in order; near-duplicates of the previous OCR'd frame reuse its text."""
        out: list[str] = []
        last_sig: np.ndarray | None = None
        last_text = ""
        n = len(frames)
        for i, fr in enumerate(frames):
            sig = frame_signature(fr)
            if last_sig is not None and sig.shape == last_sig.shape and (
                float(np.abs(sig - last_sig).mean()) < self.dedup_threshold
            ):
                out.append(last_text)
                self.n_skipped += 1
            else:
                last_text = self.read(fr)
                last_sig = sig
                out.append(last_text)
            if progress is not None:
                progress(i + 1, n, "ocr")
        return out

    def segment_text(self, frames: Sequence[np.ndarray]) -> str:
        """All distinct text of a segment's frames, first-seen order, as one string (what gets indexed)."""
        seen: set[str] = set()
        parts: list[str] = []
        for text in self.extract(frames):
            key = squash(text)
            if text and key not in seen:
                seen.add(key)
                parts.append(text)
        return " ".join(parts)
