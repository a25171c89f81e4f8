"""OpenAI-compatible chat-completions backend (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs) over httpx."""

from __future__ import annotations

import base64
import io
import math
import os
import random
import threading
import time
from typing import Any

from mmfuse.errors import BackendError, ParameterError
from mmfuse.rerankers.prompts import Part

from .base import PromptedBackend

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def image_data_url(img, fmt: str = "jpeg", quality: int = 90) -> str:
    """A PIL image as a ``data:image/...;base64,`` URL (the form every OpenAI-compatible server accepts)."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG")
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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
        import httpx

        if not model:
            raise ParameterError("--model is required for the openai backend (the model name the server serves)")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not base_url:
            if not api_key:
                raise ParameterError("no server for the openai backend: pass --base-url (e.g. "
                                     "http://localhost:8000/v1) or set OPENAI_BASE_URL")
            base_url = "https://api.openai.com/v1"
        if image_format not in ("jpeg", "png"):
            raise ParameterError(f"image_format must be jpeg or png, got {image_format!r}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))
        self.temperature = temperature
        self.image_format = image_format
        self.extra_body = dict(extra_body or {})
        self._sem = threading.BoundedSemaphore(self.concurrency)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), headers=headers,
                                    transport=transport, limits=httpx.Limits(max_connections=self.concurrency))
        self.requests = 0
        self.retried = 0

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------------------------------------------------
    def messages(self, parts: list[Part]) -> list[dict]:
        content: list[dict] = []
        for kind, val in parts:
            if kind == "image":
                content.append({"type": "image_url", "image_url": {"url": image_data_url(val, self.image_format)}})
            else:
                content.append({"type": "text", "text": val})
        return [{"role": "user", "content": content}]

    def _post(self, body: dict) -> dict:
        import httpx

        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(self.backoff * (2 ** (attempt - 1)) * (1 + 0.25 * random.random()))
            try:
                with self._sem:
                    with self._lock:
                        self.requests += 1
                    resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                raise BackendError(f"{self.url}: HTTP {resp.status_code}: {resp.text[:200].strip()}")
            try:
                return resp.json()
            except ValueError:
                last = "reply is not JSON"
                continue
        raise BackendError(f"{self.url}: {last} after {self.retries + 1} attempt(s)")

    @staticmethod
    def _content(data: dict) -> str:
        try:
            content = data["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError("server reply has no choices[0].message") from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""

    def complete(self, parts: list[Part], max_tokens: int) -> str:
        body = {"model": self.model, "messages": self.messages(parts), "max_tokens": max_tokens,
                "temperature": self.temperature, **self.extra_body}
        return self._content(self._post(body))

    def yes_scores(self, prompts: list[list[Part]]) -> list[float]:
        """log P("yes") of the first answer token from ``top_logprobs`` (-50 when no form of yes is listed)."""
        out = []
        for parts in prompts:
            body = {"model": self.model, "messages": self.messages(parts), "max_tokens": 1,
                    "temperature": 0.0, "logprobs": True, "top_logprobs": 20, **self.extra_body}
            data = self._post(body)
            try:
                top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"{self.url}: the server returned no logprobs; pointwise mode needs them") from None
            ys = [t["logprob"] for t in top if str(t.get("token", "")).strip().lower() == "yes"]
            out.append(math.log(sum(math.exp(v) for v in ys)) if ys else -50.0)
        return out
