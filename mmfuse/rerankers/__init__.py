"""VLM reranking of ranked video lists: S-Grids, prompts, tolerant parsing, strategies and backends."""

from mmfuse.rerankers.backends.base import PromptedBackend, RerankBackend, get_backend

from .build import build_reranker
from .grid import GridCache, GridSpec, build_grid, draw_label, placeholder
from .parsing import ParseInfo, ParseStats, parse_ranking
from .prompts import Candidate, PromptTemplate
from .reranker import RerankStats, VLMReranker, load_mapping, load_queries, load_subtitles

__all__ = [
    "VLMReranker", "build_reranker", "RerankStats", "RerankBackend", "PromptedBackend", "get_backend", "GridSpec",
    "GridCache",
    "build_grid", "draw_label", "placeholder", "parse_ranking", "ParseInfo", "ParseStats", "Candidate",
    "PromptTemplate", "load_queries", "load_subtitles", "load_mapping",
]
