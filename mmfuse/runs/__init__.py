"""Ranked lists: the columnar ``Run`` and ``Qrels`` and their operations (``model``), id tables (``ids``), readers
and writers of TREC, qrels, Parquet and JSON files (``readers``, ``writers``), query files (``queries``), Parquet
runs read and written block by block (``stream``) and the compiled parsing kernels (``fastio``)."""

from __future__ import annotations

from .ids import LazyIds
from .model import INPUT_ORDER, Qrels, RankedList, Run
from .queries import read_queries
from .readers import FORMATS

__all__ = ["FORMATS", "INPUT_ORDER", "LazyIds", "Qrels", "RankedList", "Run", "read_queries"]
