"""Ingest: media decoding (``probe``, ``frames``, ``audio``, ``segments``), planning an indexing run over a folder
(``plan``), per-file and per-segment extraction (``extract``), batched writing (``write``) and the two engines that
share them: local threads (``local``) and Ray Data (``ray_engine``)."""

from .local import index_folder
from .plan import MODALITIES, IndexConfig, IndexSummary
from .ray_engine import index_with_ray

__all__ = ["MODALITIES", "IndexConfig", "IndexSummary", "index_folder", "index_with_ray"]
