"""On-screen text extraction with rapidocr-onnxruntime (ships its ONNX models: PP-OCRv4 Chinese + English; other
PaddleOCR detection/recognition models by path, e.g. another language's recogniser), skipping near-duplicate frames.

rapidocr often drops the spaces between words ("REDBICYCLE"); matching is done downstream (``normalize_text``/
``squash`` of :mod:`mmfuse.utils.text`, re-exported here, and the n-gram BM25 analyzer of :mod:`mmfuse.store.bm25`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError
from mmfuse.utils.lazy import require
from mmfuse.utils.text import normalize_text, squash

from .base import fingerprint, first_line

__all__ = ["MODEL_FILES", "OcrExtractor", "frame_signature", "normalize_text", "squash"]

# Files that replace rapidocr's own: option -> (rapidocr's keyword, the ``mmfuse index`` flag)
MODEL_FILES = {
    "det_model": ("det_model_path", "--ocr-det-model"),
    "rec_model": ("rec_model_path", "--ocr-rec-model"),
    "rec_keys": ("rec_keys_path", "--ocr-rec-keys"),
}

Progress = Callable[[int, int, str], None]

# The near-duplicate test (see OcrExtractor). Every constant comes from the figures given here, none from a corpus.
# Blocks of about this many pixels of the picture the detector sees: a line of text it can read (>= ~10 px tall)
# crosses a block row in most of its pixel rows.
_BLOCK_PX = 16
# The change in a block's mean or contrast (grey levels, 0..1) that counts: 8 of 255 levels, above what video
# compression does to a static block of 256 pixels (well under one level), below what the smallest legible line does
# to a block it crosses (strokes over a sixth of the block at a quarter of the grey scale move its mean by ~0.04 and
# its standard deviation by ~0.09).
_CHANGE = 0.03
# A pixel on a vertical stroke edge: a horizontal grey step of 15 of 255 levels or more (compression noise stays
# below ~5, the edge of a legible stroke is above 30).
_EDGE = 0.06
# A block could hold text when in one of its pixel rows at least this share of the pixels are stroke edges: a row
# through a line of letters crosses two edges per stroke (~0.4 of its pixels); a row crosses the outline of a plain
# shape once or twice (at most ~0.2 of a 16-pixel row).
_TEXTLIKE = 0.25


def frame_signature(frame: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per block of a ``grid`` = (rows, cols) split of the frame: the mean and the standard deviation of its grey
    levels (0..1), and the largest share of stroke-edge pixels in one of its pixel rows (how much it looks like a
    line of letters): float32 [3, rows, cols]. Block sums by ``reduceat``: cheap, no resampling library."""
    a = np.asarray(frame)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB frame, got shape {a.shape}")
    h, w = a.shape[:2]
    gray = a[..., 0] * (0.299 / 255) + a[..., 1] * (0.587 / 255) + a[..., 2] * (0.114 / 255)
    ys = (np.arange(grid[0]) * h) // grid[0]
    xs = (np.arange(grid[1]) * w) // grid[1]
    # A repeated start (a frame smaller than the grid) yields that single row or column, counted once.
    heights, widths = np.maximum(np.diff(np.append(ys, h)), 1), np.maximum(np.diff(np.append(xs, w)), 1)

    def block_mean(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(x, ys, axis=0), xs, axis=1) / np.outer(heights, widths)

    mean = block_mean(gray)
    std = np.sqrt(np.maximum(block_mean(gray * gray) - mean * mean, 0.0))
    edges = np.zeros((h, w), np.float32)
    edges[:, 1:] = np.abs(np.diff(gray, axis=1)) >= _EDGE
    per_row = np.add.reduceat(edges, xs, axis=1) / widths  # [h, cols]: share of edge pixels per row of each block
    textlike = np.maximum.reduceat(per_row, ys, axis=0)
    return np.stack([mean, std, textlike]).astype(np.float32)


class OcrExtractor:
    """``extract(frames) -> list[str]``: the text on each frame (lines joined by spaces, reading order).

    A frame reuses the text of the last OCR'd frame when nothing that could change the text changed. Both frames are
    split into blocks of about 16x16 pixels of the picture the detector sees (``max_side``); a block counts when its
    mean grey level or its contrast (standard deviation) moved by ``dedup_threshold`` (0..1) or more AND it could
    hold text in either frame (rows of it cross many vertical stroke edges, as rows through a line of letters do).
    So a caption that appears, disappears or changes is read whatever its share of the frame, as is text that a
    moving object uncovers or hides; plain shapes moving over a plain background, compression noise and fades do not
    cost an OCR call, and truly static frames (slides, still shots) skip it. Comparing with the last OCR'd frame,
    not the previous one, lets slow drift add up until it counts.

    ``max_side`` bounds the detector's input (rapidocr's default upscales the *short* side to 736 px, which
    is slow and does not help on video frames); ``min_score`` drops low-confidence lines. ``det_model`` /
    ``rec_model`` are PaddleOCR ONNX files replacing the bundled detector / recogniser (e.g. a Latin, Cyrillic,
    Japanese or Korean recogniser), ``rec_keys`` the recogniser's character list when its ONNX file carries none;
    the spec records each file with a fingerprint of its bytes.
    """

    modality = "ocr"

    def __init__(
        self,
        *,
        dedup_threshold: float = _CHANGE,
        max_side: int = 960,
        min_score: float = 0.5,
        use_cls: bool = False,
        threads: int | None = None,
        det_model: str | os.PathLike | None = None,
        rec_model: str | os.PathLike | None = None,
        rec_keys: str | os.PathLike | None = None,
    ):
        self.files: dict[str, Path] = {}
        for opt, value in (("det_model", det_model), ("rec_model", rec_model), ("rec_keys", rec_keys)):
            if value:
                path = Path(value).expanduser().resolve()
                if not path.is_file():
                    raise ModelError(f"{MODEL_FILES[opt][1]} {value}: "
                                     f"{'is not a file' if path.exists() else 'no such file'}")
                self.files[opt] = path
        self.dedup_threshold = float(dedup_threshold)
        self.max_side = int(max_side)
        self.min_score = float(min_score)
        self.use_cls = bool(use_cls)
        self.threads = threads
        self._engine = None

    @property
    def spec(self) -> dict[str, Any]:
        try:
            ver = version("rapidocr-onnxruntime")
        except PackageNotFoundError:
            ver = None
        spec = {"kind": "rapidocr-onnxruntime", "version": ver, "max_side": self.max_side,
                "min_score": self.min_score, "use_cls": self.use_cls}
        for opt, path in self.files.items():  # only when set: the bundled models' spec stays as it was
            spec[opt] = str(path)
            spec[f"{opt}_sha"] = fingerprint(path)
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OcrExtractor:
        return cls(max_side=spec.get("max_side", 960), min_score=spec.get("min_score", 0.5),
                   use_cls=spec.get("use_cls", False), **{opt: spec.get(opt) for opt in MODEL_FILES})

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
            for opt, path in self.files.items():
                kwargs[MODEL_FILES[opt][0]] = str(path)
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
            sig = frame_signature(fr, self._grid(np.shape(fr)))
            if last_sig is not None and sig.shape == last_sig.shape and not self._text_could_change(last_sig, sig):
                out.append(last_text)
            else:
                last_text = self.read(fr)
                last_sig = sig
                out.append(last_text)
            if progress is not None:
                progress(i + 1, n, "ocr")
        return out

    def _text_could_change(self, old: np.ndarray, new: np.ndarray) -> bool:
        changed = np.maximum(np.abs(new[0] - old[0]), np.abs(new[1] - old[1])) >= self.dedup_threshold
        return bool(np.any(changed & (np.maximum(old[2], new[2]) >= _TEXTLIKE)))

    def _grid(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """Blocks of ~_BLOCK_PX pixels of the frame as the detector sees it (longer side capped at ``max_side``)."""
        h, w = shape[:2]
        scale = min(1.0, self.max_side / max(h, w, 1))
        return max(1, round(h * scale / _BLOCK_PX)), max(1, round(w * scale / _BLOCK_PX))

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
