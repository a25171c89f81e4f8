"""OpenAI-compatible chat completions over httpx (vLLM, SGLang, Ollama, llama.cpp server, hosted APIs): the transport
(timeouts, retries with backoff, a concurrency limit) that the reranker's HTTP backend and query expansion share."""

from __future__ import annotations

import base64
import io
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mmfuse.errors import BackendError, ParameterError
from mmfuse.utils.lazy import require

from .base import Completion, Part, TextGenerator, timed_call
from .cache import AnswerCache

__all__ = ["OpenAIChat", "RETRY_STATUS", "image_data_url", "resolve_server"]

# statuses worth another try: timeouts, conflicts, rate limits and server-side failures
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def image_data_url(img, fmt: str = "jpeg", quality: int = 90) -> str:
    """A PIL image as a ``data:image/...;base64,`` URL (the form every OpenAI-compatible server accepts)."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG")
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def resolve_server(base_url: str | None, api_key: str | None, *, url_env: Sequence[str] = ("OPENAI_BASE_URL",),
                   key_env: Sequence[str] = ("OPENAI_API_KEY",), flag: str = "--base-url") -> tuple[str, str | None]:
    """The server URL and API key: as given, else the first environment variable set; with a key but no URL, the
    OpenAI API. Neither is one :class:`~mmfuse.errors.ParameterError` naming ``flag`` and the variables."""
    base_url = base_url or next((os.environ[v] for v in url_env if os.environ.get(v)), None)
    api_key = api_key or next((os.environ[v] for v in key_env if os.environ.get(v)), None)
    if not base_url:
        if not api_key:
            raise ParameterError(f"no server: pass {flag} (e.g. http://localhost:8000/v1) or set "
                                 f"{' or '.join(url_env)}")
        base_url = "https://api.openai.com/v1"
    return base_url.rstrip("/"), api_key


class OpenAIChat(TextGenerator):
    """``POST {base_url}/chat/completions`` with one user message per prompt (text, and images as data URLs).

    Each request has a ``timeout``; connection errors, timeouts, replies that are not JSON and HTTP
    408/409/425/429/5xx are retried ``retries`` times with exponential backoff and jitter; other HTTP errors fail at
    once. At most ``concurrency`` requests are in flight at once, across every thread using this client.
    ``extra_body`` is merged into every request (e.g. ``{"top_p": 0.9}`` or a server's own options).
    """

    name = "openai"

    def __init__(self, model: str, base_url: str, *, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 2, backoff: float = 0.5, concurrency: int = 4, image_format: str = "jpeg",
                 extra_body: dict[str, Any] | None = None, transport=None, cache: AnswerCache | None = None):
        super().__init__(cache)
        httpx = require("httpx")
        if image_format not in ("jpeg", "png"):
            raise ParameterError(f"image_format must be jpeg or png, got {image_format!r}")
        if float(timeout) <= 0:
            raise ParameterError(f"timeout must be > 0 seconds, got {timeout}")
        self.model_name = str(model)
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))
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

    def messages(self, parts: Sequence[Part]) -> list[dict]:
        content: list[dict] = []
        for kind, val in parts:
            if kind == "image":
                content.append({"type": "image_url", "image_url": {"url": image_data_url(val, self.image_format)}})
            else:
                content.append({"type": "text", "text": val})
        return [{"role": "user", "content": content}]

    def post(self, body: dict) -> dict:
        """The server's JSON reply to ``body``, after the retries; raises :class:`BackendError` naming the URL."""
        httpx = require("httpx")
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
            if resp.status_code in RETRY_STATUS:
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

    def content(self, data: dict) -> str:
        """The text of ``choices[0].message`` (content parts joined); a reply without one is a BackendError."""
        try:
            content = data["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"{self.url}: server reply has no choices[0].message") from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""

    def chat(self, parts: Sequence[Part], max_tokens: int, temperature: float = 0.0, **extra: Any) -> Completion:
        """One request: the answer with the token counts of the server's ``usage`` (None when it sends none)."""
        body = {"model": self.model_name, "messages": self.messages(parts), "max_tokens": int(max_tokens),
                "temperature": float(temperature), **self.extra_body, **extra}
        data = self.post(body)
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Completion(self.content(data), _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))

    def _generate(self, prompts: list[list[Part]], max_tokens: int, temperature: float) -> list[Completion]:
        if len(prompts) == 1:
            return [timed_call(self.chat, prompts[0], max_tokens, temperature)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: timed_call(self.chat, p, max_tokens, temperature), prompts))

    def __repr__(self) -> str:
        return f"OpenAIChat({self.model_name!r}, {self.base_url!r})"


def _count(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None
