"""Keep third-party model loaders silent: the library reports progress through callbacks, never stderr bars."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Switch off transformers' "Loading weights" progress bar for the duration of a model load."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # transformers not installed: nothing to silence
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
