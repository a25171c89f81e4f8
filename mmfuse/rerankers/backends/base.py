"""The backend protocol (``rank(query, candidates, metadata) -> order``) and the shared prompt+parse machinery."""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from mmfuse.errors import ParameterError, unknown
from mmfuse.rerankers.parsing import ParseStats, parse_ranking
from mmfuse.rerankers.prompts import Candidate, Part, PromptTemplate

MODES = ("listwise", "pointwise")


@runtime_checkable
class RerankBackend(Protocol):
    """Anything that orders candidates: returns 0-based indices into ``candidates``, best first.

    Orders that are not permutations are repaired by the reranker (duplicates dropped, missing appended).
    """

    name: str

    def rank(self, query: str, candidates: list[Candidate], metadata: dict[str, Any]) -> list[int]: ...


class PromptedBackend:
    """Base for model backends: renders the template, asks the model, parses its answer.

    Subclasses implement ``complete(parts, max_tokens) -> str`` (listwise) and optionally
    ``yes_scores(prompts) -> list[float]`` (pointwise, from first-token logits).
    """

    name = "prompted"
    concurrency = 1  # how many queries the reranker may send at once

    def __init__(self, *, mode: str = "listwise", template: str | None = None, max_new_tokens: int | None = None):
        if mode not in MODES:
            raise unknown("rerank mode", mode, MODES)
        self.mode = mode
        self.template = PromptTemplate.load(template or mode)
        self.max_new_tokens = max_new_tokens
        self.parse_stats = ParseStats()
        self.last_answer: str | None = None
        self._lock = threading.Lock()

    # subclasses -------------------------------------------------------------------------------------------------
    def complete(self, parts: list[Part], max_tokens: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def complete_batch(self, prompts: list[list[Part]], max_tokens: int) -> list[str]:
        """Several prompts at once; models that can batch override this."""
        return [self.complete(p, max_tokens) for p in prompts]

    def yes_scores(self, prompts: list[list[Part]]) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError(f"backend {self.name!r} has no pointwise mode")

    # shared -----------------------------------------------------------------------------------------------------
    def prompt(self, query: str, candidates: list[Candidate], metadata: dict[str, Any] | None = None) -> list[Part]:
        return self.template.render(query, candidates, metadata)

    def rank(self, query: str, candidates: list[Candidate], metadata: dict[str, Any] | None = None) -> list[int]:
        if not candidates:
            return []
        if self.mode == "pointwise":
            prompts = [self.template.render(query, [c], metadata) for c in candidates]
            scores = self.yes_scores(prompts)
            # stable sort: ties keep the incoming order
            return sorted(range(len(candidates)), key=lambda i: -scores[i])
        k = len(candidates)
        # "[12] > " is about 5 tokens; room for all labels plus a little prose
        budget = self.max_new_tokens or 6 * k + 16
        text = self.complete(self.prompt(query, candidates, metadata), budget)
        self.last_answer = text
        order, info = parse_ranking(text, k)
        with self._lock:
            self.parse_stats.add(info)
        return order


    def rank_batch(self, requests: list[tuple[str, list[Candidate], dict[str, Any]]]) -> list[list[int]]:
        """``rank`` for several (query, candidates, metadata) requests; listwise prompts share one model call."""
        if self.mode != "listwise":
            return [self.rank(*r) for r in requests]
        budget = self.max_new_tokens or 6 * max(len(c) for _, c, _ in requests) + 16
        texts = self.complete_batch([self.prompt(*r) for r in requests], budget)
        orders = []
        for (_, cands, _), text in zip(requests, texts):
            self.last_answer = text
            order, info = parse_ranking(text, len(cands))
            with self._lock:
                self.parse_stats.add(info)
            orders.append(order)
        return orders


def get_backend(name: str, model: str | None = None, **kwargs) -> RerankBackend:
    """Build a backend by name: ``transformers`` (local model) or ``openai`` (OpenAI-compatible server)."""
    if name == "transformers":
        if not model:
            raise ParameterError("--model is required for the transformers backend (a hub name or a local path)")
        from .transformers_backend import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if name == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(model, **kwargs)
    raise unknown("rerank backend", name, ["transformers", "openai"])
