"""Language models behind one text-generation interface (:class:`TextGenerator`: prompts in, :class:`Completion`
objects with token counts out, answers cached on disk), with two backends: an OpenAI-compatible server over HTTP
(:class:`~mmfuse.llm.http.OpenAIChat`) and a local transformers model (:class:`~mmfuse.llm.local.TransformersChat`).
The reranker's backends and query expansion both generate through them; :func:`load_llm` picks one from a model name,
a folder or a server URL (and the ``MMFUSE_LLM_*`` / ``OPENAI_*`` environment; ``MMFUSE_VLM_*`` for the
vision-language model that captions videos)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmfuse.errors import ParameterError, unknown

from .base import Completion, GenerationStats, Part, Prompt, TextGenerator, Totals, as_parts
from .cache import AnswerCache, default_cache_dir, open_cache
from .parsing import ListInfo, ListStats, is_refusal, parse_list
from .templates import TextTemplate

__all__ = ["AnswerCache", "BACKENDS", "Completion", "GenerationStats", "ListInfo", "ListStats", "Part", "Prompt",
           "ROLES", "TextGenerator", "TextTemplate", "Totals", "as_parts", "default_cache_dir", "is_refusal",
           "load_llm", "open_cache", "parse_list"]

BACKENDS = ("openai", "transformers")
ROLES = ("llm", "vlm")  # the text model of query expansion, the vision-language model of captioning


def load_llm(model: str | os.PathLike | None = None, *, base_url: str | None = None, api_key: str | None = None,
             backend: str | None = None, cache: Any = True, timeout: float = 60.0, retries: int = 2,
             concurrency: int = 4, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
             lazy: bool = False, role: str = "llm") -> TextGenerator:
    """The language model to generate with.

    ``model`` (default ``$MMFUSE_LLM_MODEL``) is the served model name, or a local model folder (transformers).
    ``backend`` None decides: ``base_url`` given -> the server; ``model`` an existing folder -> transformers;
    ``$MMFUSE_LLM_BASE_URL``, ``$OPENAI_BASE_URL`` or an API key set -> that server. The API key defaults to
    ``$MMFUSE_LLM_API_KEY``, then ``$OPENAI_API_KEY``. ``cache``: True = the default folder
    (:func:`default_cache_dir`), a path, or None for no cache. ``timeout``/``retries``/``concurrency`` are the
    server's; ``device``/``dtype``/``batch_size`` the local model's, whose weights load on the first prompt when
    ``lazy`` (the settings are still checked now). ``role`` ``"vlm"`` reads ``MMFUSE_VLM_*`` instead of
    ``MMFUSE_LLM_*`` (then ``OPENAI_*`` for both) and names the ``--vlm-*`` flags in its errors.
    """
    if role not in ROLES:
        raise unknown("language-model role", role, ROLES)
    env, flag = f"MMFUSE_{role.upper()}", f"--{role}"
    url_env, key_env, model_env = (f"{env}_BASE_URL", "OPENAI_BASE_URL"), (f"{env}_API_KEY", "OPENAI_API_KEY"), \
        f"{env}_MODEL"
    model = str(model) if model is not None else os.environ.get(model_env) or None
    local = model is not None and Path(model).expanduser().is_dir()
    if backend is None:
        if base_url:
            backend = "openai"
        elif local:
            backend = "transformers"
        elif any(os.environ.get(v) for v in (*url_env, *key_env)):
            backend = "openai"
        else:
            raise ParameterError(f"no {'vision-' if role == 'vlm' else ''}language model: pass {flag}-base-url URL "
                                 f"{flag}-model NAME (an OpenAI-compatible server), or {flag}-model DIR (a local "
                                 f"transformers model), or set {env}_BASE_URL and {model_env}")
    if backend not in BACKENDS:
        raise unknown("language-model backend", backend, BACKENDS)
    store = open_cache(cache)
    if backend == "transformers":
        if not model:
            raise ParameterError(f"{flag}-model is required for a local model (a model folder or a hub name)")
        from .local import TransformersChat

        return TransformersChat(str(Path(model).expanduser()) if local else model, device=device, dtype=dtype,
                                batch_size=batch_size, cache=store, lazy=lazy)
    from .http import OpenAIChat, resolve_server

    url, key = resolve_server(base_url, api_key, url_env=url_env, key_env=key_env, flag=f"{flag}-base-url")
    if not model:
        raise ParameterError(f"{flag}-model is required with a server ({url}): the model name it serves "
                             f"(or set {model_env})")
    return OpenAIChat(model, url, api_key=key, timeout=timeout, retries=retries, concurrency=concurrency, cache=store)
