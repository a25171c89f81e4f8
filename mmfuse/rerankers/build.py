"""``build_reranker``: the one place a :class:`VLMReranker` and its backend are assembled from plain settings.

``mmfuse rerank``, ``Pipeline.from_config`` and the demo all call it, so a setting means the same everywhere and is
checked in the same order: the cheap checks (grid shape and size, subtitles file) before the backend loads, which
for a local model can take minutes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mmfuse.errors import ParameterError, unknown

from .backends.base import get_backend
from .grid import GridSpec, parse_cell, parse_grid
from .reranker import VLMReranker, load_subtitles

# the options each backend takes; the other backend's options are ignored, so one set of settings fits both
BACKEND_OPTIONS = {
    "transformers": ("device", "dtype", "query_batch", "batch_size"),
    "openai": ("base_url", "api_key", "timeout", "retries", "concurrency"),
}


def build_reranker(backend: str, model: str | None, *, mode: str = "listwise", template: str | None = None,
                   top: int = 20, window: int = 20, step: int = 10, grid: str | tuple[int, int] = "2x2",
                   cell: str | int | tuple[int, int] = 224, sampling: str = "uniform",
                   subtitles: str | os.PathLike | Mapping[str, str] | None = None, subtitle_tokens: int = 64,
                   cache_dir: str | os.PathLike | None = None, **backend_options: Any) -> VLMReranker:
    """A :class:`VLMReranker` over the ``backend`` (``"openai"`` or ``"transformers"``) serving ``model``.

    ``grid`` is ``"ROWSxCOLS"``, ``cell`` ``N`` or ``"WxH"`` pixels; ``subtitles`` a file or ``{video_id: text}``;
    ``backend_options`` are the backend's own (``BACKEND_OPTIONS``: ``base_url``, ``api_key``, ``timeout``,
    ``retries``, ``concurrency`` for openai; ``device``, ``dtype``, ``query_batch``, ``batch_size`` for
    transformers), options of the other backend are dropped. The grid (shape, pixel size, sampling) and the
    subtitles are checked before the model loads; ``top``/``window``/``step`` by :class:`VLMReranker`.
    """
    if backend not in BACKEND_OPTIONS:
        raise unknown("rerank backend", backend, BACKEND_OPTIONS)
    known = {o for opts in BACKEND_OPTIONS.values() for o in opts}
    extra = set(backend_options) - known
    if extra:
        raise ParameterError(f"build_reranker: unknown backend option(s) {', '.join(sorted(extra))}; "
                             f"known: {', '.join(sorted(known))}")
    rows, cols = parse_grid(grid)
    spec = GridSpec(rows=rows, cols=cols, cell=parse_cell(cell), sampling=sampling)
    if int(subtitle_tokens) < 0:
        raise ParameterError(f"subtitle_tokens must be >= 0, got {subtitle_tokens}")
    subs = load_subtitles(subtitles) if subtitles is not None else None
    opts = {k: v for k, v in backend_options.items() if k in BACKEND_OPTIONS[backend]}
    be = get_backend(backend, model, mode=mode, template=template, **opts)
    return VLMReranker(be, top=top, window=window, step=step, grid=(spec.rows, spec.cols), cell=spec.cell,
                       subtitles=subs, subtitle_tokens=subtitle_tokens, cache_dir=cache_dir, sampling=sampling)
