"""OpenAI-compatible chat-completions reranker backend (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs): the
prompts and parsing of :class:`PromptedBackend` over the shared transport of :class:`mmfuse.llm.http.OpenAIChat`."""

from __future__ import annotations

import math
from typing import Any

from mmfuse.errors import BackendError, ParameterError
from mmfuse.llm.http import OpenAIChat, image_data_url, resolve_server
from mmfuse.rerankers.prompts import Part

from .base import PromptedBackend

__all__ = ["OpenAIBackend", "image_data_url"]


class OpenAIBackend(PromptedBackend):
    """Listwise (and logprob-based pointwise) reranking through ``POST {base_url}/chat/completions``.

    ``base_url``/``api_key`` default to ``OPENAI_BASE_URL``/``OPENAI_API_KEY``. Each request has a ``timeout``;
    connection errors, timeouts and HTTP 408/409/425/429/5xx are retried ``retries`` times with exponential
    backoff and jitter; at most ``concurrency`` requests are in flight at once across threads.
    """

    name = "openai"

    def __init__(self, model: str | None, *, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, retries: int = 2, backoff: float = 0.5, concurrency: int = 4,
                 mode: str = "listwise", template: str | None = None, max_new_tokens: int | None = None,
                 temperature: float = 0.0, image_format: str = "jpeg", extra_body: dict[str, Any] | None = None,
                 transport=None):
        super().__init__(mode=mode, template=template, max_new_tokens=max_new_tokens)
        if not model:
            raise ParameterError("--model is required for the openai backend (the model name the server serves)")
        base_url, api_key = resolve_server(base_url, api_key)
        self.http = OpenAIChat(model, base_url, api_key=api_key, timeout=timeout, retries=retries, backoff=backoff,
                               concurrency=concurrency, image_format=image_format, extra_body=extra_body,
                               transport=transport)
        self.model = model
        self.base_url, self.url = self.http.base_url, self.http.url
        self.concurrency = self.http.concurrency
        self.temperature = temperature

    # the transport's settings and counters, as this backend's own
    requests = property(lambda self: self.http.requests)
    retried = property(lambda self: self.http.retried)
    retries = property(lambda self: self.http.retries)
    backoff = property(lambda self: self.http.backoff)
    image_format = property(lambda self: self.http.image_format)
    extra_body = property(lambda self: self.http.extra_body)

    def close(self) -> None:
        self.http.close()

    def messages(self, parts: list[Part]) -> list[dict]:
        return self.http.messages(parts)

    def complete(self, parts: list[Part], max_tokens: int) -> str:
        return self.http.chat(parts, max_tokens, self.temperature).text

    def yes_scores(self, prompts: list[list[Part]]) -> list[float]:
        """log P("yes") of the first answer token from ``top_logprobs`` (-50 when no form of yes is listed)."""
        out = []
        for parts in prompts:
            body = {"model": self.model, "messages": self.messages(parts), "max_tokens": 1,
                    "temperature": 0.0, "logprobs": True, "top_logprobs": 20, **self.extra_body}
            data = self.http.post(body)
            try:
                top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{self.url}: the server returned no logprobs; pointwise mode needs them") from None
            ys = [t["logprob"] for t in top if str(t.get("token", "")).strip().lower() == "yes"]
            out.append(math.log(sum(math.exp(v) for v in ys)) if ys else -50.0)
        return out
