"""Reranker backends: the protocol, a local transformers model and an OpenAI-compatible HTTP server."""

from .base import PromptedBackend, RerankBackend, get_backend

__all__ = ["PromptedBackend", "RerankBackend", "get_backend", "TransformersBackend", "OpenAIBackend"]


def __getattr__(name):  # heavy backends import lazily
    if name == "TransformersBackend":
        from .transformers_backend import TransformersBackend

        return TransformersBackend
    if name == "OpenAIBackend":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend
    raise AttributeError(name)
