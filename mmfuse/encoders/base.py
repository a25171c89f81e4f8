"""What every encoder shares: device resolution and the one-line form of a model library's exception."""

from __future__ import annotations

__all__ = ["first_line", "resolve_device"]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other value is returned as given."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def first_line(e: BaseException) -> str:
    """``"Type: first line of the message"``: model libraries raise multi-line errors; users get one line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
