"""Language models behind one text-generation interface (:class:`TextGenerator`: prompts in, :class:`Completion`
objects with token counts out, answers cached on disk), with two backends: an OpenAI-compatible server over HTTP
(:class:`~mmfuse.llm.http.OpenAIChat`) and a local transformers model (:class:`~mmfuse.llm.local.TransformersChat`).
The reranker's backends and query expansion both generate through them; :func:`load_llm` picks one from a model name,
a folder or a server URL (and the ``MMFUSE_LLM_*`` / ``OPENAI_*`` environment)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmfuse.errors import ParameterError, unknown

from .base import Completion, GenerationStats, Part, Prompt, TextGenerator, Totals, as_parts
from .cache import AnswerCache, default_cache_dir, open_cache
from .parsing import ListInfo, ListStats, parse_list
from .templates import TextTemplate

__all__ = ["AnswerCache", "BACKENDS", "Completion", "GenerationStats", "ListInfo", "ListStats", "Part", "Prompt",
           "TextGenerator", "TextTemplate", "Totals", "as_parts", "default_cache_dir", "load_llm", "open_cache", "parse_list"]

BACKENDS = ("openai", "transformers")
URL_ENV = ("MMFUSE_LLM_BASE_URL", "OPENAI_BASE_URL")
KEY_ENV = ("MMFUSE_LLM_API_KEY", "OPENAI_API_KEY")
MODEL_ENV = "MMFUSE_LLM_MODEL"


def load_llm(model: str | os.PathLike | None = None, *, base_url: str | None = None, api_key: str | None = None,
             backend: str | None = None, cache: Any = True, timeout: float = 60.0, retries: int = 2,
             concurrency: int = 4, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
             lazy: bool = False) -> TextGenerator:
    """The language model to generate with.

    ``model`` (default ``$MMFUSE_LLM_MODEL``) is the served model name, or a local model folder (transformers).
    ``backend`` None decides: ``base_url`` given -> the server; ``model`` an existing folder -> transformers;
    ``$MMFUSE_LLM_BASE_URL``, ``$OPENAI_BASE_URL`` or an API key set -> that server. The API key defaults to
    ``$MMFUSE_LLM_API_KEY``, then ``$OPENAI_API_KEY``. ``cache``: True = the default folder
    (:func:`default_cache_dir`), a path, or None for no cache. ``timeout``/``retries``/``concurrency`` are the
    server's; ``device``/``dtype``/``batch_size`` the local model's, whose weights load on the first prompt when
    ``lazy`` (the settings are still checked now).
    """
    model = str(model) if model is not None else os.environ.get(MODEL_ENV) or None
    local = model is not None and Path(model).expanduser().is_dir()
    if backend is None:
        if base_url:
            backend = "openai"
        elif local:
            backend = "transformers"
        elif any(os.environ.get(v) for v in (*URL_ENV, *KEY_ENV)):
            backend = "openai"
        else:
            raise ParameterError("no language model: pass --llm-base-url URL --llm-model NAME (an OpenAI-compatible "
                                 "server), or --llm-model DIR (a local transformers model), or set "
                                 "MMFUSE_LLM_BASE_URL and MMFUSE_LLM_MODEL")
    if backend not in BACKENDS:
        raise unknown("language-model backend", backend, BACKENDS)
    store = open_cache(cache)
    if backend == "transformers":
        if not model:
            raise ParameterError("--llm-model is required for a local model (a model folder or a hub name)")
        from .local import TransformersChat

        return TransformersChat(str(Path(model).expanduser()) if local else model, device=device, dtype=dtype,
                                batch_size=batch_size, cache=store, lazy=lazy)
    from .http import OpenAIChat, resolve_server

    url, key = resolve_server(base_url, api_key, url_env=URL_ENV, key_env=KEY_ENV, flag="--llm-base-url")
    if not model:
        raise ParameterError(f"--llm-model is required with a server ({url}): the model name it serves "
                             f"(or set {MODEL_ENV})")
    return OpenAIChat(model, url, api_key=key, timeout=timeout, retries=retries, concurrency=concurrency, cache=store)
