"""Local VLM reranker backend: the prompts and parsing of :class:`PromptedBackend`, generation through the shared
:class:`mmfuse.llm.local.TransformersChat` (chat template, left-padded batches) and yes-probabilities from the first
answer token's logits, on the model :mod:`mmfuse.encoders.vlm` loads."""

from __future__ import annotations

from typing import Any

from mmfuse.encoders import load_encoder
from mmfuse.llm.local import TransformersChat
from mmfuse.rerankers.prompts import Part
from mmfuse.utils.lazy import require

from .base import PromptedBackend

_YES = ("yes", "Yes", " yes", " Yes", "YES")


class TransformersBackend(PromptedBackend):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL / SmolVLM / InternVL (HF format) and other image-text-to-text models.

    ``model`` is a hub name or a local directory (no download happens unless a hub name is given).
    ``batch_size`` bounds how many pointwise prompts go through the model at once; ``query_batch`` how many
    queries' listwise prompts are generated together (single-window reranking only; mind GPU memory).
    """

    name = "transformers"

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", mode: str = "listwise",
                 template: str | None = None, max_new_tokens: int | None = None, batch_size: int = 8,
                 query_batch: int = 1, trust_remote_code: bool = False, processor_kwargs: dict[str, Any] | None = None):
        super().__init__(mode=mode, template=template, max_new_tokens=max_new_tokens)
        vlm = load_encoder("vlm", model, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                           processor_kwargs=processor_kwargs)
        self.chat = TransformersChat(vlm, batch_size=batch_size)
        self.vlm = vlm
        self.model_name = vlm.model_name
        self.processor, self.model, self.device, self.dtype = vlm.processor, vlm.model, vlm.device, vlm.dtype
        self.batch_size = self.chat.batch_size
        self.query_batch = max(1, int(query_batch))
        self._torch = require("torch", "vlm")
        tok = self.tokenizer
        ids = []
        for w in _YES:
            enc = tok.encode(w, add_special_tokens=False)
            if enc and enc[0] not in ids:
                ids.append(enc[0])
        self.yes_ids = ids

    @property
    def tokenizer(self):
        return self.vlm.tokenizer

    # ------------------------------------------------------------------------------------------------------------
    def encode(self, prompts: list[list[Part]]):
        """Processor inputs for a batch of prompts (left-padded so the last position is each prompt's end)."""
        return self.chat.encode(prompts)

    def count_tokens(self, parts: list[Part]) -> int:
        """Prompt length in tokens as the model sees it (images expanded to their visual tokens)."""
        return self.chat.count_tokens(parts)

    def complete(self, parts: list[Part], max_tokens: int) -> str:
        return self.complete_batch([parts], max_tokens)[0]

    def complete_batch(self, prompts: list[list[Part]], max_tokens: int) -> list[str]:
        """Greedy answers for left-padded prompts generated together."""
        return [c.text for c in self.chat.generate_batch(prompts, max_tokens)]

    def yes_scores(self, prompts: list[list[Part]]) -> list[float]:
        """log P(first answer token is a form of "yes") for each prompt."""
        torch = self._torch
        scores: list[float] = []
        for i in range(0, len(prompts), self.batch_size):
            inputs = self.encode(prompts[i:i + self.batch_size])
            with torch.inference_mode():
                logits = self.model(**inputs).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            scores.extend(torch.logsumexp(logp[:, self.yes_ids], dim=-1).tolist())
        return scores
