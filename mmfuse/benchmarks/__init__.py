"""Benchmark harness: dataset loaders, ranx-exact metrics, significance tests, fusion sweeps, reports and plots."""

from __future__ import annotations

from mmfuse.eval.metrics import evaluate

from .datasets import Dataset, load_dataset
from .sweep import run_benchmark

__all__ = ["Dataset", "load_dataset", "evaluate", "run_benchmark"]
