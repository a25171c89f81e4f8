"""Encoders by kind: :func:`load_encoder` (a kind plus a model name or path, as ``SentenceTransformer(name_or_path)``
or open_clip's ``create_model_and_transforms(name)``) and :func:`encoder_from_spec` (the encoder an index recorded)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from mmfuse.errors import ModelError, ParameterError, unknown

from .base import DEFAULTS, Encoder
from .clap import ClapEncoder, LaionClapEncoder
from .clip import ClipEncoder
from .ocr import OcrExtractor
from .text import DenseTextEncoder
from .vlm import LanguageModel, VisionLanguageModel
from .whisper import WhisperTranscriber

__all__ = ["KINDS", "encoder_from_spec", "load_encoder"]

# kind -> class; every class takes the model name or path first (None: DEFAULTS[kind]) and has ``from_spec``
KINDS: dict[str, type] = {
    "clip": ClipEncoder,
    "clap": ClapEncoder,
    "laion_clap": LaionClapEncoder,
    "text": DenseTextEncoder,
    "whisper": WhisperTranscriber,
    "ocr": OcrExtractor,
    "vlm": VisionLanguageModel,
    "llm": LanguageModel,
}
# the "kind" an encoder writes into its spec -> its class
_SPEC_KINDS: dict[str, type] = {
    "open_clip": ClipEncoder,
    "transformers-clap": ClapEncoder,
    "laion_clap": LaionClapEncoder,
    "sentence-transformers": DenseTextEncoder,
    "faster-whisper": WhisperTranscriber,
    "rapidocr-onnxruntime": OcrExtractor,
    "transformers-vlm": VisionLanguageModel,
    "transformers-llm": LanguageModel,
}


def load_encoder(kind: str, name_or_path: str | os.PathLike | None = None, *, lazy: bool = False,
                 **opts: Any) -> Encoder:
    """The ``kind`` encoder (``clip``, ``clap``, ``laion_clap``, ``text``, ``whisper``, ``ocr``, ``vlm``, ``llm``) for a model
    name or a local path; ``None`` is the kind's default (``DEFAULTS``). ``opts`` are the class's keyword options
    (``pretrained``/``checkpoint`` for CLIP, ``device``, ``batch_size``, ...), checked by name.

    The weights load now, unless ``lazy``: then the configuration is checked now and the weights load on first use
    (or ``.load()``), which is how the indexer builds its models so that a run with nothing new loads nothing.
    Raises ``ModelError`` for a model that cannot be found or loaded, ``ParameterError`` for an unknown kind or
    option.
    """
    cls = KINDS.get(kind)
    if cls is None:
        raise unknown("encoder kind", kind, KINDS)
    params = list(inspect.signature(cls).parameters.values())
    # the first positional parameter takes the name or path; OCR's models ship with rapidocr (nothing to name)
    named = params[0] if params and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD else None
    options = [p.name for p in params if p is not named]
    for name in opts:
        if name not in options:
            raise unknown(f"{kind} encoder option", name, options)
    if name_or_path is None and DEFAULTS[kind] is None:
        raise ModelError(f"the {kind} encoder has no default model: name one (a hub name or a local path)")
    if named is not None:
        enc = cls(name_or_path, **opts)
    elif name_or_path is None or str(name_or_path) == DEFAULTS[kind]:
        enc = cls(**opts)
    else:
        raise ModelError(f"{kind} encoder: {name_or_path!r} is not available, only {DEFAULTS[kind]}")
    if not lazy:
        enc.load()
    return enc


def encoder_from_spec(spec: Mapping[str, Any]) -> Encoder:
    """Rebuild, unloaded, the encoder whose ``spec`` an index recorded: its spec equals the recorded one when the
    same model is installed (the spec decides "same model")."""
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    cls = _SPEC_KINDS.get(kind)
    if cls is None:
        raise ParameterError(f"cannot rebuild an encoder from spec {spec!r}: unknown kind {kind!r}; "
                             f"known: {', '.join(sorted(_SPEC_KINDS))}")
    return cls.from_spec(spec)
