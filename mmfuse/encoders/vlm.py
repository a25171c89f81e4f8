"""Generative models through transformers: a vision-language model (the processor and the image-text-to-text model)
and a text-only language model (the tokenizer and the causal LM), loaded by hub name or local directory with the
device and dtype resolved. :mod:`mmfuse.llm` prompts and generates with what this loads (the reranker, query
expansion)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmfuse.errors import ModelError
from mmfuse.utils.lazy import require
from mmfuse.utils.quiet import quiet_loading

from .base import resolve_device

__all__ = ["LanguageModel", "VisionLanguageModel", "is_vlm_dir"]

DTYPES = ("auto", "float32", "float16", "bfloat16")


class VisionLanguageModel:
    """``AutoProcessor`` + ``AutoModelForImageTextToText`` (Qwen2-VL / Qwen2.5-VL / Qwen3-VL / SmolVLM / InternVL in
    HF format, ...). ``model`` is a hub name or a local directory (nothing is downloaded unless a hub name is given).

    ``device`` ``"auto"`` picks CUDA, then Apple's MPS, then the CPU; ``dtype`` ``"auto"`` picks bfloat16 on GPUs that
    support it (float16 on older ones) and float32 on the CPU. After :meth:`load`: ``processor``, ``model`` (in eval
    mode, on ``device``), ``device`` (the resolved name) and ``dtype`` (the torch dtype).
    """

    modality = "vlm"
    kind = "transformers-vlm"
    label = "VLM"
    auto_processor = "AutoProcessor"
    auto_model = "AutoModelForImageTextToText"

    def __init__(self, model: str | os.PathLike, *, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, processor_kwargs: Mapping[str, Any] | None = None):
        if dtype not in DTYPES:
            raise ModelError(f"unknown --dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        self.model_name = str(model)
        self.device = device
        self.dtype_name = dtype
        self.trust_remote_code = bool(trust_remote_code)
        self.processor_kwargs = dict(processor_kwargs or {})
        self.processor: Any = None
        self.model: Any = None
        self.dtype: Any = None

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, "dtype": self.dtype_name,
                "trust_remote_code": self.trust_remote_code}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "VisionLanguageModel":
        return cls(spec.get("model"), dtype=spec.get("dtype", "auto"),
                   trust_remote_code=spec.get("trust_remote_code", False))

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def load(self) -> Any:
        """Load the processor and the model now (once); raises ``ModelError`` naming the model."""
        if self.model is not None:
            return self.model
        torch, transformers = require("torch", "vlm"), require("transformers", "vlm")
        from_processor = getattr(transformers, self.auto_processor)
        auto = getattr(transformers, self.auto_model)
        self.device = resolve_device(self.device, mps=True)
        if self.dtype_name != "auto":
            self.dtype = getattr(torch, self.dtype_name)
        elif self.device.startswith("cuda"):
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32
        name, remote = self.model_name, self.trust_remote_code
        try:
            self.processor = from_processor.from_pretrained(name, trust_remote_code=remote, **self.processor_kwargs)
            with quiet_loading():
                try:
                    model = auto.from_pretrained(name, dtype=self.dtype, trust_remote_code=remote)
                except TypeError:  # transformers < 4.56 names it torch_dtype
                    model = auto.from_pretrained(name, torch_dtype=self.dtype, trust_remote_code=remote)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load {self.label} {name!r} with transformers: {str(e).splitlines()[0]}") from None
        self.model = model.to(self.device).eval()
        return self.model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name!r})"


class LanguageModel(VisionLanguageModel):
    """``AutoTokenizer`` + ``AutoModelForCausalLM``: a text-only instruction model (Qwen2.5, Llama 3, Mistral, ... in
    HF format), loaded like :class:`VisionLanguageModel`; ``processor`` is the tokenizer."""

    modality = "llm"
    kind = "transformers-llm"
    label = "language model"
    auto_processor = "AutoTokenizer"
    auto_model = "AutoModelForCausalLM"


def is_vlm_dir(path: str | os.PathLike) -> bool:
    """Whether a local model directory holds a vision-language model (its ``config.json`` has a vision tower)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "vision_config" in config
