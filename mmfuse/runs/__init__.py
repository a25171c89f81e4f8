"""Ranked lists: the columnar ``Run`` and ``Qrels``, their operations, and their readers and writers (TREC, qrels,
Parquet, JSON) with the compiled parsing kernels."""

from __future__ import annotations

from .run import FORMATS, Qrels, Run

__all__ = ["FORMATS", "Qrels", "Run"]
