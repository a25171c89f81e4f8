"""Evaluation: ranx-exact metrics over Runs and Qrels, and paired significance tests. ``mmfuse.evaluate`` is the
public entry."""

from __future__ import annotations

from .metrics import Evaluation, evaluate

__all__ = ["evaluate", "Evaluation"]
