"""Query expansion with a language model at search time (Q2E, HyDE, LameR): :class:`QueryExpander` turns each query
into sub-queries or hypothetical passages and searches every retriever with them; :func:`build_expander` assembles
one from plain settings (the CLI, the config and ``Pipeline(expand=...)`` all go through it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmfuse.errors import unknown
from mmfuse.llm import load_llm

from .expander import (
    DEFAULT_N,
    LEXICAL,
    METHODS,
    ExpansionReport,
    QueryExpander,
    QueryExpansion,
    expanded_name,
)

__all__ = ["DEFAULT_N", "LEXICAL", "METHODS", "ExpansionReport", "QueryExpander", "QueryExpansion", "build_expander",
           "expanded_name"]


def build_expander(method: str, *, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                   llm: Any = None, n: int | None = None, template: str | None = None, fusion: str | None = None,
                   fusion_params: Mapping[str, Any] | None = None, candidates: int = 5, max_tokens: int | None = None,
                   temperature: float = 0.0, cache: Any = True, timeout: float = 60.0, retries: int = 2,
                   concurrency: int = 4, device: str = "auto", dtype: str = "auto",
                   batch_size: int = 8) -> QueryExpander:
    """A :class:`QueryExpander` for ``method`` (``q2e``, ``hyde``, ``lamer``) over ``llm``, or over the model that
    :func:`mmfuse.llm.load_llm` finds from ``model``/``base_url``/``api_key`` and the environment (``cache``,
    ``timeout``, ``retries``, ``concurrency``, ``device``, ``dtype``, ``batch_size`` are its settings). A local model
    loads on the first query, so every setting is checked before that. The other arguments are the expander's.
    """
    if method not in METHODS:  # before looking for a model: the cheap mistake first
        raise unknown("expansion method", method, METHODS)
    if llm is None:
        llm = load_llm(model, base_url=base_url, api_key=api_key, cache=cache, timeout=timeout, retries=retries,
                       concurrency=concurrency, device=device, dtype=dtype, batch_size=batch_size, lazy=True)
    return QueryExpander(method, llm, n=n, template=template, fusion=fusion, fusion_params=fusion_params,
                         candidates=candidates, max_tokens=max_tokens, temperature=temperature)
