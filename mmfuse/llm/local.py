"""Local generation with transformers: prompts rendered with the model's chat template, left-padded into batches,
generated greedily (or sampled when ``temperature > 0``), with token counts from the tokenizer. One code path for a
text-only causal LM and for a vision-language model (text and images): the reranker's local backend and query
expansion both generate through it; the models themselves load in :mod:`mmfuse.encoders.vlm`."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from mmfuse.encoders import load_encoder
from mmfuse.encoders.base import first_line, weights_fingerprint
from mmfuse.encoders.vlm import is_vlm_dir
from mmfuse.errors import BackendError
from mmfuse.utils.lazy import require

from .base import Completion, Part, TextGenerator
from .cache import AnswerCache

__all__ = ["TransformersChat"]


class TransformersChat(TextGenerator):
    """A local model: ``model`` is a model directory or hub name (a directory whose ``config.json`` has a vision tower
    loads as a VLM, anything else as a causal LM), or an already built
    :class:`~mmfuse.encoders.vlm.VisionLanguageModel` / :class:`~mmfuse.encoders.vlm.LanguageModel`.

    ``batch_size`` prompts are generated together (left-padded); images in a prompt need a VLM. ``lazy``: load the
    weights on the first prompt instead of now.
    """

    name = "transformers"

    def __init__(self, model: Any, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 trust_remote_code: bool = False, processor_kwargs: dict[str, Any] | None = None,
                 cache: AnswerCache | None = None, lazy: bool = False):
        super().__init__(cache)
        if isinstance(model, (str, os.PathLike)):
            kind = "vlm" if is_vlm_dir(model) else "llm"
            model = load_encoder(kind, model, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                                 processor_kwargs=processor_kwargs, lazy=True)
        self.lm = model
        self.model_name = model.model_name
        self.reads_images = model.modality == "vlm"
        self.batch_size = max(1, int(batch_size))
        self._weights: str | None = None
        if not lazy:
            self.load()

    def load(self) -> Any:
        """Load the weights now (once); raises ``ModelError`` naming the model."""
        return self.lm.load()

    @property
    def processor(self) -> Any:
        self.load()
        return self.lm.processor

    @property
    def model(self) -> Any:
        return self.load()

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self.lm.tokenizer

    @property
    def device(self) -> str:
        self.load()
        return self.lm.device

    @property
    def identity(self) -> dict[str, Any]:
        """The model name plus, for a local directory, a fingerprint of its weight files (new weights in the same
        folder are another model for the cache)."""
        if self._weights is None:
            self._weights = weights_fingerprint(self.model_name)
        return {"model": self.model_name, "weights": self._weights} if self._weights else {"model": self.model_name}

    # ------------------------------------------------------------------------------------------------------------
    def _messages(self, parts: Sequence[Part]) -> tuple[list[dict], list[Any]]:
        if self.reads_images:
            content, images = [], []
            for kind, val in parts:
                if kind == "image":
                    content.append({"type": "image"})
                    images.append(val)
                else:
                    content.append({"type": "text", "text": val})
            return [{"role": "user", "content": content}], images
        if any(kind == "image" for kind, _ in parts):
            raise BackendError(f"{self.model_name}: a text-only language model reads no images; use a "
                               f"vision-language model")
        # text-only chat templates expect the content as one string
        return [{"role": "user", "content": "".join(str(v) for _, v in parts)}], []

    def _chat_text(self, msgs: list[dict]) -> str:
        try:
            return self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        except ValueError:  # a base model without a chat template reads the prompt as it is
            content = msgs[0]["content"]
            return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)

    def encode(self, prompts: Sequence[Sequence[Part]]) -> Any:
        """Model inputs for a batch of prompts (left-padded so the last position is each prompt's end)."""
        texts, images = [], []
        for parts in prompts:
            msgs, imgs = self._messages(parts)
            texts.append(self._chat_text(msgs))
            images.append(imgs)
        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if any(images):
            kwargs["images"] = images
        tok = self.tokenizer
        if getattr(tok, "pad_token", None) is None and getattr(tok, "eos_token", None) is not None:
            tok.pad_token = tok.eos_token  # Llama-style tokenizers ship without one; batches need it
        old_side = getattr(tok, "padding_side", "right")
        tok.padding_side = "left"
        try:
            inputs = self.processor(**kwargs)
        finally:
            tok.padding_side = old_side
        return inputs.to(self.device)

    def count_tokens(self, parts: Sequence[Part]) -> int:
        """Prompt length in tokens as the model sees it (images expanded to their visual tokens)."""
        return int(self.encode([parts])["input_ids"].shape[1])

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if getattr(self.tokenizer, "eos_token_id", None) is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    def generate_batch(self, prompts: Sequence[Sequence[Part]], max_tokens: int,
                       temperature: float = 0.0) -> list[Completion]:
        """Answers for prompts generated together, with the prompt's and the answer's token counts (the answer up to
        and including its end-of-sequence token)."""
        torch = require("torch", "vlm")
        inputs = self.encode(prompts)
        kw: dict[str, Any] = {"max_new_tokens": int(max_tokens), "do_sample": temperature > 0}
        if temperature > 0:
            kw["temperature"] = float(temperature)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kw)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        n_prompt = inputs["attention_mask"].sum(dim=1).tolist()
        eos = self._eos_ids()
        done = torch.zeros_like(new, dtype=torch.bool)
        if eos and new.shape[1]:
            is_eos = torch.isin(new, torch.tensor(sorted(eos), device=new.device))
            # tokens after the first end-of-sequence are padding
            done[:, 1:] = torch.cumsum(is_eos, dim=1)[:, :-1] > 0
        n_new = (~done).sum(dim=1).tolist()
        return [Completion(t, int(p), int(n)) for t, p, n in zip(texts, n_prompt, n_new)]

    def _generate(self, prompts: list[list[Part]], max_tokens: int, temperature: float) -> list[Completion]:
        self.load()  # a model that cannot load is the caller's error, not each prompt's
        out: list[Completion] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = prompts[i:i + self.batch_size]
            t0 = time.perf_counter()
            try:
                got = self.generate_batch(chunk, max_tokens, temperature)
            except BackendError as e:
                got = [Completion(error=str(e)) for _ in chunk]
            except (RuntimeError, ValueError) as e:  # out of memory, a prompt longer than the model takes
                got = [Completion(error=f"{self.model_name}: {first_line(e)}") for _ in chunk]
            took = (time.perf_counter() - t0) / len(chunk)
            for c in got:
                c.seconds = took
            out += got
        return out

    def __repr__(self) -> str:
        return f"TransformersChat({self.model_name!r})"
