"""Audio side of retrieval: CLAP audio/text encoders (transformers by default, laion_clap as an optional extra).

``ClapEncoder`` loads a transformers ``ClapModel`` + ``ClapProcessor`` from a local directory or a hub name.
It never downloads unless the user names the model: ``ClapEncoder()`` (no model) only looks in the local
Hugging Face cache for ``laion/clap-htsat-unfused``.

Audio longer than the processor's window (10 s for the LAION checkpoints) is split into whole windows whose
embeddings are averaged, so the result is deterministic (the processor would otherwise crop at random).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError, ParameterError
from mmfuse.utils.lazy import require
from mmfuse.utils.quiet import quiet_loading

from .base import DEFAULTS, fingerprint, first_line, l2_normalize, resolve_device

__all__ = ["SAMPLE_RATE", "ClapEncoder", "LaionClapEncoder", "enable_hint"]

SAMPLE_RATE = 48000

Progress = Callable[[int, int, str], None]


def enable_hint() -> str:
    """How to give the audio modality a model (the CLI flag)."""
    return (
        f"enable it with --clap-model {DEFAULTS['clap']} (downloads ~600 MB once) "
        "or --clap-model DIR (a local transformers CLAP directory)"
    )


def _in_hf_cache(repo: str) -> bool:
    """Whether a hub model's config is in the local cache (no network: huggingface_hub only looks on disk)."""
    try:
        hub = require("huggingface_hub", error=ImportError)
    except ImportError:
        return False
    try:
        found = hub.try_to_load_from_cache(repo, "config.json")
    except Exception:  # malformed repo ids raise validation errors
        return False
    return isinstance(found, str)


def _check_audio(i: int, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise InputError(f"audio {i}: expected mono 1-D samples at {SAMPLE_RATE} Hz, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _windows(audios: Sequence[np.ndarray], window: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Split each clip into consecutive windows of at most ``window`` samples; returns pieces and owner ids."""
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for i, a in enumerate(audios):
        a = _check_audio(i, a)
        if a.size == 0:
            a = np.zeros(1, dtype=np.float32)
        n = max(1, -(-a.size // window))
        # A short tail would be repeat-padded into a whole window and over-weighted; merge it backwards.
        if n > 1 and a.size - (n - 1) * window < window // 4:
            n -= 1
        bounds = np.linspace(0, a.size, n + 1).astype(np.int64)
        for s, e in zip(bounds[:-1], bounds[1:]):
            pieces.append(a[s:e][:window])
            owner.append(i)
    return pieces, np.asarray(owner, dtype=np.int64)


def _pool_by_owner(emb: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, emb)
    return l2_normalize(sums)


class ClapEncoder:
    """CLAP through transformers: ``encode_audio(list of mono 48 kHz float32) -> [n, d]``, ``encode_text``.

    ``model``: a local directory (``save_pretrained`` layout) or a hub name (downloaded once by transformers).
    ``None`` means the default LAION checkpoint from the local cache only.
    """

    modality = "audio"
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 8,
    ):
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device
        self._local_only = model is None
        name = DEFAULTS["clap"] if model is None else str(model)
        path = Path(name).expanduser()
        self._path: Path | None = None
        if path.is_dir():
            self._path = path.resolve()
            name = str(self._path)
        elif model is not None and (name.startswith((".", "/", "~")) or os.sep in name and name.count("/") > 1):
            raise ModelError(f"CLAP model directory {name} does not exist; {enable_hint()}")
        self.model_name = name
        if self._local_only and not _in_hf_cache(name):
            raise ModelError(f"no CLAP model configured ({name} is not in the local Hugging Face cache); "
                             f"{enable_hint()}")
        self._model = None
        self._processor = None
        self._torch_device = None

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "transformers-clap", "model": self.model_name, "sample_rate": SAMPLE_RATE}
        if self._path is not None:
            weights = sorted(self._path.glob("*.safetensors")) or sorted(self._path.glob("*.bin"))
            if weights:
                spec["weights_fingerprint"] = fingerprint(weights[0])
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClapEncoder:
        return cls(spec.get("model"))

    def load(self):
        """Load model and processor now; raises ``ModelError`` with how to enable CLAP."""
        if self._model is not None:
            return self._model
        torch, transformers = require("torch"), require("transformers")
        kwargs = {"local_files_only": True} if self._local_only else {}
        try:
            with quiet_loading():
                processor = transformers.ClapProcessor.from_pretrained(self.model_name, **kwargs)
                model = transformers.ClapModel.from_pretrained(self.model_name, **kwargs)
        except Exception as e:
            if self._local_only:
                raise ModelError(f"no CLAP model configured ({self.model_name} is not in the local cache); "
                                 f"{enable_hint()}") from None
            raise ModelError(f"cannot load CLAP {self.model_name!r}: {first_line(e)}; {enable_hint()}") from None
        rate = getattr(processor.feature_extractor, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ModelError(f"CLAP {self.model_name!r}: processor expects {rate} Hz, mmfuse feeds {SAMPLE_RATE} Hz")
        device = resolve_device(self.device)
        self._torch_device = torch.device(device)
        self._model = model.eval().to(self._torch_device)
        self._processor = processor
        return self._model

    @property
    def window(self) -> int:
        """Samples per model window (the processor's max length)."""
        self.load()
        return int(getattr(self._processor.feature_extractor, "nb_max_samples", 10 * SAMPLE_RATE))

    @property
    def dim(self) -> int:
        model = self.load()
        return int(model.config.projection_dim)

    def _truncation(self) -> str:
        fused = bool(getattr(self._model.config.audio_config, "enable_fusion", False))
        return "fusion" if fused else "rand_trunc"

    @staticmethod
    def _features(out) -> Any:
        # transformers < 5 returns the projected tensor, >= 5 an output object with it in pooler_output.
        return out if hasattr(out, "detach") else out.pooler_output

    def encode_audio(self, audios: Sequence[np.ndarray], progress: Progress | None = None) -> np.ndarray:
        """Mono float32 clips at 48 kHz -> float32 [n, d], L2-normalized."""
        model = self.load()
        torch = require("torch")

        n = len(audios)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces, owner = _windows(audios, self.window)
        out = []
        trunc = self._truncation()
        for start in range(0, len(pieces), self.batch_size):
            chunk = pieces[start : start + self.batch_size]
            inputs = self._processor(
                audio=chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=trunc
            )
            inputs = {k: v.to(self._torch_device) for k, v in inputs.items() if k in ("input_features", "is_longer")}
            with torch.inference_mode():
                emb = self._features(model.get_audio_features(**inputs))
            out.append(emb.float().cpu().numpy())
            if progress is not None:
                progress(min(start + self.batch_size, len(pieces)), len(pieces), "audio")
        return _pool_by_owner(np.concatenate(out, axis=0), owner, n)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        model = self.load()
        torch = require("torch")

        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [t or "" for t in texts[start : start + self.batch_size]]
            inputs = self._processor(text=chunk, return_tensors="pt", padding=True, truncation=True)
            inputs = {k: v.to(self._torch_device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                emb = self._features(model.get_text_features(**inputs))
            out.append(emb.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0))

    def __repr__(self) -> str:
        return f"ClapEncoder({self.model_name!r})"


class LaionClapEncoder:
    """Optional: laion_clap ``.pt`` checkpoints (``pip install laion_clap``; not a default dependency).

    laion_clap builds its text tokenizer with ``transformers`` from a hub name at run time (``roberta-base`` /
    ``bert-base-uncased``), so it needs network access or a warm Hugging Face cache. Prefer converting the
    checkpoint to a transformers directory (``convert_clap_original_pytorch_to_hf.py`` in the transformers
    source repository) and
    using ``ClapEncoder``.
    """

    modality = "audio"
    sample_rate = SAMPLE_RATE

    def __init__(self, checkpoint: str | os.PathLike, *, enable_fusion: bool = False, amodel: str = "HTSAT-tiny",
                 device: str = "auto"):
        self.checkpoint = Path(checkpoint).expanduser().resolve()
        if not self.checkpoint.is_file():
            raise ModelError(f"laion_clap checkpoint {self.checkpoint} does not exist")
        self.enable_fusion = bool(enable_fusion)
        self.amodel = amodel
        self.device = device
        self._model = None

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "laion_clap", "checkpoint": str(self.checkpoint), "amodel": self.amodel,
                "enable_fusion": self.enable_fusion, "fingerprint": fingerprint(self.checkpoint),
                "sample_rate": SAMPLE_RATE}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LaionClapEncoder:
        return cls(spec["checkpoint"], enable_fusion=spec.get("enable_fusion", False),
                   amodel=spec.get("amodel", "HTSAT-tiny"))

    def load(self):
        if self._model is None:
            try:
                laion_clap = require("laion_clap", error=ImportError)
            except ImportError:
                raise ModelError("laion_clap is not installed: pip install laion_clap (optional extra), "
                                 "or convert the checkpoint and use --clap-model DIR") from None
            try:
                model = laion_clap.CLAP_Module(enable_fusion=self.enable_fusion, amodel=self.amodel,
                                               device=resolve_device(self.device))
                model.load_ckpt(str(self.checkpoint))
            except Exception as e:
                raise ModelError(f"cannot load laion_clap checkpoint {self.checkpoint}: {first_line(e)}") from None
            self._model = model
        return self._model

    def encode_audio(self, audios: Sequence[np.ndarray], progress: Progress | None = None) -> np.ndarray:
        model = self.load()
        out = []
        for i, a in enumerate(audios):
            emb = model.get_audio_embedding_from_data(x=_check_audio(i, a)[None, :], use_tensor=False)
            out.append(np.asarray(emb, dtype=np.float32).reshape(1, -1))
            if progress is not None:
                progress(i + 1, len(audios), "audio")
        if not out:
            return np.zeros((0, 512), dtype=np.float32)
        return l2_normalize(np.concatenate(out, axis=0))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        model = self.load()
        if isinstance(texts, str):
            texts = [texts]
        emb = model.get_text_embedding(list(texts), use_tensor=False)
        return l2_normalize(np.asarray(emb, dtype=np.float32))
