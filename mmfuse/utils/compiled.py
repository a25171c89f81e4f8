"""Shared plumbing of the compiled (numba) kernels: lazy builds with a numpy fallback, and threads over ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LazyKernels:
    """``kernels()`` -> the dict ``build()`` returns, compiled on first use; None when numba is unusable.

    numba comes with ranx and is imported only here, on first use; any import or compile problem means the
    callers take their numpy/Arrow paths.
    """

    def __init__(self, build: Callable[[], dict]):
        self._build = build
        self._kernels: dict | None = None

    def __call__(self) -> dict | None:
        if self._kernels is None:
            try:
                self._kernels = self._build()
            except Exception:  # noqa: BLE001
                self._kernels = {}
        return self._kernels or None


def threads(fn: Callable[[int], Any], n: int) -> list:
    """``[fn(0), ..., fn(n-1)]``, all but the first on threads: compiled kernels release the GIL (nogil=True)."""
    if n == 1:
        return [fn(0)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n - 1) as ex:
        futures = [ex.submit(fn, i) for i in range(1, n)]
        return [fn(0)] + [f.result() for f in futures]
