"""The text-generation interface every language-model backend implements: prompts in, :class:`Completion` objects out,
answers cached on disk, tokens and failures counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmfuse.errors import BackendError, ParameterError

from .cache import AnswerCache

__all__ = ["Completion", "GenerationStats", "Part", "Prompt", "TextGenerator", "Totals", "as_parts", "timed_call"]

Part = tuple[str, Any]  # ("text", str) or ("image", PIL.Image)
Prompt = str | Sequence[Part]  # a plain text, or interleaved text and image parts (one user message)


def as_parts(prompt: Prompt) -> list[Part]:
    """A prompt as a list of parts (a plain string is one text part)."""
    if isinstance(prompt, str):
        return [("text", prompt)]
    return list(prompt)


@dataclass
class Completion:
    """One answer: its text, token counts (the server's ``usage``, or the local tokenizer's counts; None when the
    server reports none), whether it came from the cache, the seconds the model took (0 for a cache hit), and
    ``error`` (the one-line reason, with an empty ``text``) when the model could not answer."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Totals:
    """Counters that add up: ``merge`` sums two of them field by field, ``as_dict`` is the JSON form."""

    def merge(self, other: "Totals") -> "Totals":
        return type(self)(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationStats(Totals):
    """Totals over many prompts: model calls (cache misses), cache hits, failed calls, tokens of the calls (cache hits
    report the tokens of the call that produced them under ``cached_*``) and the model's wall time."""

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, c: Completion) -> None:
        if c.cached:
            self.cache_hits += 1
            self.cached_prompt_tokens += c.prompt_tokens or 0
            self.cached_completion_tokens += c.completion_tokens or 0
            return
        self.calls += 1
        self.failures += c.error is not None
        self.prompt_tokens += c.prompt_tokens or 0
        self.completion_tokens += c.completion_tokens or 0
        self.seconds += c.seconds

    def summary(self) -> str:
        return (f"{self.calls} model call(s) ({self.failures} failed, {self.seconds:.1f} s), {self.cache_hits} cache "
                f"hit(s); {self.prompt_tokens} prompt + {self.completion_tokens} completion tokens")


class TextGenerator:
    """Base of the backends: :meth:`generate` answers many prompts, from the cache where it can.

    Subclasses set ``name`` and ``model_name`` and implement ``_generate(prompts, max_tokens, temperature) ->
    list[Completion]`` for the prompts the cache did not hold (a failure of one prompt is a Completion with
    ``error``, so one bad answer loses nothing else). ``identity`` is what makes two generators "the same model"
    for the cache: the model name, plus a fingerprint of the weights for local models.
    """

    name = "generator"
    model_name = "?"
    concurrency = 1  # prompts in flight at once

    def __init__(self, cache: AnswerCache | None = None) -> None:
        self.cache = cache
        self.stats = GenerationStats()
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        return {"model": self.model_name}

    @property
    def spec(self) -> dict[str, Any]:
        """What the results record about the model: the backend and the identity."""
        return {"backend": self.name, **self.identity}

    def _generate(self, prompts: list[list[Part]], max_tokens: int, temperature: float) -> list[Completion]:
        raise NotImplementedError  # pragma: no cover - abstract

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 256, temperature: float = 0.0) -> list[Completion]:
        """One :class:`Completion` per prompt, in order. Cached answers (same identity, prompt, ``max_tokens`` and
        ``temperature``) are returned without calling the model; new answers are cached (failures are not). A prompt
        the model could not answer is a Completion with ``error``; a model that cannot load raises ``ModelError``."""
        if int(max_tokens) < 1:
            raise ParameterError(f"max_tokens must be >= 1, got {max_tokens}")
        parts = [as_parts(p) for p in prompts]
        settings = {"max_tokens": int(max_tokens), "temperature": float(temperature)}
        out: list[Completion | None] = [None] * len(parts)
        keys: list[str | None] = [None] * len(parts)
        todo = []
        for i, p in enumerate(parts):
            if self.cache is not None:
                keys[i] = self.cache.key(self.identity, p, settings)
                hit = self.cache.get(keys[i])
                if hit is not None:
                    out[i] = Completion(hit["text"], hit.get("prompt_tokens"), hit.get("completion_tokens"), cached=True)
                    continue
            todo.append(i)
        if todo:
            got = self._generate([parts[i] for i in todo], int(max_tokens), float(temperature))
            for i, c in zip(todo, got):
                out[i] = c
                if c.ok and self.cache is not None:
                    self.cache.put(keys[i], {"text": c.text, "prompt_tokens": c.prompt_tokens,
                                             "completion_tokens": c.completion_tokens, **self.identity, **settings})
        with self._lock:
            for c in out:
                self.stats.add(c)
        return out  # type: ignore[return-value]

    def complete(self, prompt: Prompt, max_tokens: int = 256, temperature: float = 0.0) -> str:
        """One answer's text; raises :class:`~mmfuse.errors.BackendError` when the model could not answer."""
        c = self.generate([prompt], max_tokens=max_tokens, temperature=temperature)[0]
        if not c.ok:
            raise BackendError(c.error)
        return c.text


def timed_call(fn, *args: Any) -> Completion:
    """``fn(*args) -> Completion`` with its wall time recorded and a :class:`BackendError` turned into ``error``."""
    t0 = time.perf_counter()
    try:
        c = fn(*args)
    except BackendError as e:
        c = Completion(error=str(e))
    c.seconds = time.perf_counter() - t0
    return c
