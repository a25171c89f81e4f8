"""Every model the engine loads, behind one protocol (:class:`Encoder`: ``modality``, ``spec``, ``load()``): CLIP
(visual), CLAP (audio), the dense text embedder, Whisper (ASR), rapidocr (OCR), the vision-language model of the
reranker and the text language model of query expansion. :func:`load_encoder` loads any of them by kind and model name
or path, ``DEFAULTS`` holds each kind's default model, and :func:`encoder_from_spec` rebuilds the encoder an index
recorded. Each module imports its model library only when a model loads."""

from .base import DEFAULTS, Encoder
from .registry import KINDS, encoder_from_spec, load_encoder

__all__ = ["DEFAULTS", "KINDS", "Encoder", "encoder_from_spec", "load_encoder"]
