"""Vision-language models through transformers: the processor and the image-text-to-text model loaded by hub name or
local directory, with the device and dtype resolved. The reranker's transformers backend builds its prompts and
generates with what this loads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmfuse.errors import ModelError
from mmfuse.utils.lazy import require
from mmfuse.utils.quiet import quiet_loading

from .base import resolve_device

__all__ = ["VisionLanguageModel"]

DTYPES = ("auto", "float32", "float16", "bfloat16")


class VisionLanguageModel:
    """``AutoProcessor`` + ``AutoModelForImageTextToText`` (Qwen2-VL / Qwen2.5-VL / Qwen3-VL / SmolVLM / InternVL in
    HF format, ...). ``model`` is a hub name or a local directory (nothing is downloaded unless a hub name is given).

    ``device`` ``"auto"`` picks CUDA, then Apple's MPS, then the CPU; ``dtype`` ``"auto"`` picks bfloat16 on GPUs that
    support it (float16 on older ones) and float32 on the CPU. After :meth:`load`: ``processor``, ``model`` (in eval
    mode, on ``device``), ``device`` (the resolved name) and ``dtype`` (the torch dtype).
    """

    modality = "vlm"

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
        return {"kind": "transformers-vlm", "model": self.model_name, "dtype": self.dtype_name,
                "trust_remote_code": self.trust_remote_code}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> VisionLanguageModel:
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
        self.device = resolve_device(self.device, mps=True)
        if self.dtype_name != "auto":
            self.dtype = getattr(torch, self.dtype_name)
        elif self.device.startswith("cuda"):
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.float32
        name, remote = self.model_name, self.trust_remote_code
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(name, trust_remote_code=remote,
                                                                        **self.processor_kwargs)
            with quiet_loading():
                auto = transformers.AutoModelForImageTextToText
                try:
                    model = auto.from_pretrained(name, dtype=self.dtype, trust_remote_code=remote)
                except TypeError:  # transformers < 4.56 names it torch_dtype
                    model = auto.from_pretrained(name, torch_dtype=self.dtype, trust_remote_code=remote)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load VLM {name!r} with transformers: {str(e).splitlines()[0]}") from None
        self.model = model.to(self.device).eval()
        return self.model

    def __repr__(self) -> str:
        return f"VisionLanguageModel({self.model_name!r})"
