"""User-facing error types: every mistake a user can make raises one of these with a one-line message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MmfuseError(Exception):
    """Base class; the CLI prints ``str(err)`` on one line and exits non-zero."""

    exit_code = 2


class InputError(MmfuseError):
    """Malformed or inconsistent input data (a file, a line, an array)."""


class ParameterError(MmfuseError):
    """A parameter value that is not allowed (unknown name, wrong count, out of range)."""


class ConfigError(MmfuseError):
    """An invalid configuration file or key."""


class ModelError(MmfuseError):
    """A model that cannot be loaded or run."""


class IndexError_(MmfuseError):
    """A missing, locked or inconsistent index."""


class BackendError(MmfuseError):
    """A reranker backend (model or server) that failed."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> ParameterError:
    """Build the standard 'unknown X' error with a suggestion and the allowed names."""
    choices = sorted(set(choices))
    return ParameterError(
        f"unknown {kind} {name!r}{suggest(name, choices)}; choose from: {', '.join(choices)}"
    )
