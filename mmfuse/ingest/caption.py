"""Captions as a modality: each segment's frames, tiled into one image (its S-Grid, the default: servers such as vLLM
take one image per prompt unless told otherwise) or sent as separate images, described in a few sentences by a
vision-language model through :mod:`mmfuse.llm` (an OpenAI-compatible server, or a local transformers model), with a
prompt template: the packaged ``caption`` or any file with the fields ``{frames}``, ``{seconds}`` and ``{layout}``.

:class:`Captioner` holds the model and the prompt; its ``spec`` (the model's identity, the template's sha256, the
image settings, the answer length) is recorded with the index, so a changed model or prompt is refused rather than
mixed into the same column. :class:`CaptionBatch` captions a file's segments a batch at a time (the requests of a
batch are in flight together). Answers go through the language model's answer cache, which writes each one as it
arrives: a re-run, or a run resumed after a kill, asks the model again only for segments it never answered.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmfuse.errors import BackendError, ParameterError, unknown
from mmfuse.llm import GenerationStats, Part, TextGenerator, TextTemplate, is_refusal, load_llm

from .frames import fit_frame, tile_frames
from .segments import Segment

__all__ = ["INPUTS", "TEMPLATES", "CaptionBatch", "CaptionStats", "Captioner", "clean", "load_template"]

TEMPLATES = ("caption",)  # the packaged templates (mmfuse/ingest/templates/NAME.txt)
INPUTS = ("grid", "frames")
FIELDS = ("frames", "seconds", "layout")
_LAYOUT = {"grid": "tiled left to right, top to bottom in one image", "frames": "one image each"}


def load_template(name_or_path: str | Path) -> TextTemplate:
    """The caption prompt: a packaged template by name, or a file (its fields checked now)."""
    return TextTemplate.load(name_or_path, "mmfuse.ingest", builtins=TEMPLATES, allowed=FIELDS)


def _positive(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ParameterError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


@dataclass
class CaptionStats(GenerationStats):
    """The model's counters over the captioned segments, and ``unusable`` answers (empty ones and refusals, stored
    as no caption)."""

    unusable: int = 0


class Captioner:
    """A vision-language model that describes segments. ``llm`` is a :class:`~mmfuse.llm.TextGenerator` (see
    :meth:`from_settings` for one built from a model name, folder or server); ``template`` a packaged template name
    or a file; ``input`` ``"grid"`` (the frames tiled into one image) or ``"frames"`` (one image per frame); ``cell``
    the width in pixels of each frame as the model sees it (its height keeps the frame's aspect ratio);
    ``max_tokens`` bounds each caption."""

    modality = "caption"

    def __init__(self, llm: TextGenerator, *, template: str | Path = "caption", input: str = "grid", cell: int = 336,
                 max_tokens: int = 160) -> None:
        if input not in INPUTS:
            raise unknown("caption input", input, INPUTS)
        self.llm = llm
        self.template = load_template(template)
        self.input = input
        self.cell = _positive("caption cell (--caption-cell)", cell, 16)
        self.max_tokens = _positive("caption max_tokens", max_tokens)

    @classmethod
    def from_settings(cls, model: str | None = None, *, base_url: str | None = None, api_key: str | None = None,
                      cache: Any = True, timeout: float = 120.0, retries: int = 2, concurrency: int = 4,
                      **options: Any) -> "Captioner":
        """A captioner over :func:`mmfuse.llm.load_llm` (``role="vlm"``: ``MMFUSE_VLM_*``, then ``OPENAI_*``); a
        local model loads on the first caption. ``options``: the constructor's."""
        llm = load_llm(model, base_url=base_url, api_key=api_key, cache=cache, timeout=timeout, retries=retries,
                       concurrency=concurrency, lazy=True, role="vlm")
        return cls(llm, **options)

    @property
    def spec(self) -> dict[str, Any]:
        """The model's identity and everything that shapes a caption (the transport, the server's URL and the cache
        do not)."""
        return {"kind": "vlm-caption", **self.llm.identity, "template_sha256": self.template.sha256,
                "input": self.input, "cell": self.cell, "max_tokens": self.max_tokens}

    def load(self) -> None:
        """Load a local model's weights now (a server needs nothing)."""
        load = getattr(self.llm, "load", None)
        if load is not None:
            load()

    @property
    def batch(self) -> int:
        """Segments captioned together: enough to keep the server's ``concurrency`` requests (or a local model's
        batch) busy."""
        return max(4, 2 * int(getattr(self.llm, "concurrency", 1)), int(getattr(self.llm, "batch_size", 1)))

    def prompt(self, seg: Segment) -> list[Part] | None:
        """The images and text that ask for one segment's caption; None for a segment without frames (audio)."""
        if not seg.frames:
            return None
        h, w = seg.frames[0].shape[:2]
        cell = (self.cell, max(16, round(self.cell * h / max(w, 1))))
        n = len(seg.frames)
        if self.input == "grid":
            cols = math.ceil(math.sqrt(n))
            images = [tile_frames(seg.frames, math.ceil(n / cols), cols, cell)]
        else:
            images = [fit_frame(f, cell) for f in seg.frames]
        text = self.template.render(frames=n, seconds=f"{seg.duration:.0f}", layout=_LAYOUT[self.input])
        return [*(("image", im) for im in images), ("text", text)]


def clean(text: str) -> str:
    """A caption as stored: one line; "" for a refusal."""
    return "" if is_refusal(text) else " ".join(str(text).split())


class CaptionBatch:
    """A file's segments captioned ``captioner.batch`` at a time as they are added: ``texts`` maps segment index ->
    caption ("" for an unusable answer), ``stats`` counts calls, cache hits, tokens and unusable answers. An answer
    the model could not give (the server failed after its retries) raises :class:`BackendError` naming the segment:
    the file fails and is tried again by the next run, which finds the answers given so far in the cache."""

    def __init__(self, captioner: Captioner) -> None:
        self.captioner = captioner
        self.texts: dict[int, str] = {}
        self.stats = CaptionStats()
        self._todo: list[tuple[Segment, list[Part]]] = []

    def add(self, seg: Segment) -> None:
        parts = self.captioner.prompt(seg)
        if parts is None:
            return
        self._todo.append((seg, parts))
        if len(self._todo) >= self.captioner.batch:
            self.flush()

    def flush(self) -> None:
        if not self._todo:
            return
        todo, self._todo = self._todo, []
        got = self.captioner.llm.generate([p for _, p in todo], max_tokens=self.captioner.max_tokens)
        for (seg, _), c in zip(todo, got):
            self.stats.add(c)
            if not c.ok:
                raise BackendError(f"caption of {seg.segment_id}: {c.error}")
            self.texts[seg.index] = clean(c.text)
            self.stats.unusable += not self.texts[seg.index]
