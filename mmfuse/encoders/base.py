"""What every encoder shares: the :class:`Encoder` protocol, the default model of every kind (``DEFAULTS``: the one
place they are written down), device resolution, checkpoint fingerprints and the one-line form of a model library's
exception."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmfuse.utils.lazy import require

__all__ = ["DEFAULTS", "Encoder", "first_line", "fingerprint", "l2_normalize", "resolve_device", "weights_fingerprint"]

_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth")

# The model each kind uses when none is named. None: the user must name one. No default ever downloads: CLIP needs a
# pretrained tag or checkpoint as well, CLAP's default is read from the local Hugging Face cache only, and the text
# embedder and Whisper are bundled Python packages.
DEFAULTS: dict[str, str | None] = {
    "clip": "ViT-B-32",
    "clap": "laion/clap-htsat-unfused",
    "laion_clap": None,
    "text": "bundled:all-MiniLM-L6-v2",
    "whisper": "bundled:whisper-tiny.en",
    "ocr": "rapidocr-onnxruntime",
    "vlm": None,
    "llm": None,
}


@runtime_checkable
class Encoder(Protocol):
    """Every model the engine loads: ``modality`` (what it reads), ``spec`` (its identity, recorded in the index
    with everything it produced: two encoders with different specs never share a column) and ``load()`` (load the
    weights now; construction only checks the configuration, so a run with nothing to do loads nothing).
    :func:`mmfuse.encoders.encoder_from_spec` rebuilds an encoder from its ``spec``."""

    modality: str

    @property
    def spec(self) -> dict[str, Any]: ...

    def load(self) -> Any: ...


def resolve_device(device: str, *, mps: bool = False) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU (``"mps"`` on Apple silicon when ``mps``), else ``"cpu"``;
    any other value is returned as given."""
    if device != "auto":
        return device
    try:
        torch = require("torch", error=ImportError)
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if mps and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def first_line(e: BaseException) -> str:
    """``"Type: first line of the message"``: model libraries raise multi-line errors; users get one line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def fingerprint(path: Path) -> str:
    """Cheap identity of a large checkpoint: size + sha256 of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def weights_fingerprint(folder: str | os.PathLike) -> str:
    """Identity of a model folder's weight files (the name and :func:`fingerprint` of each ``*.safetensors``,
    ``*.bin``, ``*.pt``, ``*.pth`` in it): new weights in the same folder are another model. "" when there are
    none (or no folder)."""
    d = Path(folder).expanduser()
    files = sorted(f for pat in _WEIGHTS for f in d.glob(pat)) if d.is_dir() else []
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{fingerprint(f)}".encode())
    return h.hexdigest()[:16] if files else ""


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32, copy=False)
