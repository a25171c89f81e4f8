"""Visual side of retrieval: the open_clip frame/text encoder and frame-pooling scores over segments or videos.

Pooling choices for turning per-frame embeddings into one score per owner (segment or video):

- ``mean``: CLIP4Clip's parameter-free mean pooling of frame embeddings, re-normalized.
- ``max``: element-wise max over frame embeddings, re-normalized.
- ``softmax``: query-scored softmax-weighted mean (Bain et al., "A CLIP-Hitchhiker's Guide to Long Video
  Retrieval"): frame weights ``softmax(q.f / T)``, pooled embedding ``sum w f`` normalized, score its cosine
  with ``q``.
- ``maxsim``: late interaction (Video-ColBERT style): max over frames of ``q.f``; for multi-vector queries
  ``[m, t, d]`` the sum over query vectors of their max over frames.

``mean`` and ``max`` are query-independent, so an index can store the pooled vectors (``pool``); ``softmax``
and ``maxsim`` need the frame vectors at search time (``score``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ModelError, ParameterError, unknown
from mmfuse.utils.lazy import require

from .base import DEFAULTS, fingerprint, first_line, l2_normalize, resolve_device

__all__ = ["POOLINGS", "ClipEncoder", "FrameScorer", "enable_hint", "pool", "score"]

POOLINGS = ("mean", "max", "softmax", "maxsim")

Progress = Callable[[int, int, str], None]


def enable_hint() -> str:
    """How to give the visual modality weights (the CLI flags)."""
    return (
        f"enable it with --clip-model {DEFAULTS['clip']} --clip-pretrained openai (downloads the weights once) "
        "or --clip-checkpoint PATH (a local open_clip .pt/.bin/.safetensors file)"
    )


# --------------------------------------------------------------------------------------------------- pooling


def _owners(frame_owner: np.ndarray, n_frames: int, n_owners: int | None) -> tuple[np.ndarray, int]:
    owner = np.asarray(frame_owner)
    if owner.shape != (n_frames,):
        raise InputError(f"frame_owner has shape {owner.shape}, expected ({n_frames},) (one owner per frame)")
    if n_frames and not np.issubdtype(owner.dtype, np.integer):
        raise InputError(f"frame_owner must hold integer owner indices, got dtype {owner.dtype}")
    owner = owner.astype(np.int64, copy=False)
    if n_frames and owner.min() < 0:
        raise InputError("frame_owner holds negative owner indices")
    top = int(owner.max()) + 1 if n_frames else 0
    if n_owners is None:
        n_owners = top
    elif n_owners < top:
        raise InputError(f"frame_owner refers to owner {top - 1} but n_owners={n_owners}")
    return owner, int(n_owners)


class FrameScorer:
    """Frame embeddings grouped by owner, with the query-independent work done once.

    Build it once per loaded index (``FrameScorer(frames, owner)``) and call ``score(queries, pooling)`` per
    search: frames are sorted by owner once, pooled vectors and per-owner Gram matrices are cached, and every
    pooling is a matrix product plus ``ufunc.reduceat`` over contiguous owner runs (no Python loop over owners).
    """

    def __init__(self, frame_embs: np.ndarray, frame_owner, n_owners: int | None = None):
        f = np.asarray(frame_embs, dtype=np.float32)
        if f.ndim != 2:
            raise InputError(f"frame embeddings must be [n_frames, dim], got shape {f.shape}")
        owner, self.n_owners = _owners(frame_owner, f.shape[0], n_owners)
        if owner.size and np.any(owner[1:] < owner[:-1]):
            order = np.argsort(owner, kind="stable")
            f, owner = f[order], owner[order]
        self.frames = np.ascontiguousarray(f)
        self.owner = owner
        self.dim = f.shape[1]
        self.counts = np.bincount(owner, minlength=self.n_owners)
        self.nonempty = np.flatnonzero(self.counts)
        self.starts = (np.cumsum(self.counts) - self.counts)[self.nonempty]
        self._pooled: dict[str, np.ndarray] = {}
        self._gram: tuple[np.ndarray, np.ndarray] | None = None

    def _fill(self, values: np.ndarray, m: int) -> np.ndarray:
        """[O_nonempty, ...] per-owner values -> [m, O] with -inf for owners without frames."""
        out = np.full((m, self.n_owners), -np.inf, dtype=np.float32)
        out[:, self.nonempty] = values.T
        return out

    def pooled(self, method: str) -> np.ndarray:
        """Mean or element-wise max of each owner's frames, L2-normalized: [O, d] (zeros for empty owners)."""
        if method not in self._pooled:
            out = np.zeros((self.n_owners, self.dim), dtype=np.float32)
            if self.nonempty.size:
                if method == "mean":
                    sums = np.add.reduceat(self.frames, self.starts, axis=0)
                    out[self.nonempty] = sums / self.counts[self.nonempty, None]
                else:
                    out[self.nonempty] = np.maximum.reduceat(self.frames, self.starts, axis=0)
            self._pooled[method] = l2_normalize(out).astype(np.float32)
        return self._pooled[method]

    def _padded_gram(self) -> tuple[np.ndarray, np.ndarray]:
        """Position of each frame inside its owner's run, and per-owner Gram matrices [O_nonempty, K, K]."""
        if self._gram is None:
            k = int(self.counts.max()) if self.counts.size else 0
            first = np.repeat(self.starts, self.counts[self.nonempty])
            pos = np.arange(self.frames.shape[0]) - first
            grp = np.repeat(np.arange(self.nonempty.size), self.counts[self.nonempty])
            block = np.zeros((self.nonempty.size, k, self.dim), dtype=np.float32)
            block[grp, pos] = self.frames
            self._gram = (pos, np.einsum("okd,old->okl", block, block))
        return self._gram

    def score(self, query_embs: np.ndarray, pooling: str = "mean", *, temperature: float = 0.1,
              block_queries: int = 256) -> np.ndarray:
        """Scores [m, O] (float32; -inf for owners without frames). See the module docstring for poolings."""
        if pooling not in POOLINGS:
            raise unknown("pooling", pooling, POOLINGS)
        q = _queries(query_embs)
        if q.shape[-1] != self.dim and self.frames.shape[0]:
            raise InputError(f"query dim {q.shape[-1]} != frame dim {self.dim}")
        m = q.shape[0]
        if pooling in ("mean", "max"):
            if q.ndim == 3:
                raise InputError(f"{pooling} pooling takes single-vector queries [m, d]; got {q.shape}")
            out = q @ self.pooled(pooling).T
            out[:, self.counts == 0] = -np.inf
            return out.astype(np.float32)
        if pooling == "softmax":
            if q.ndim == 3:
                raise InputError("softmax pooling takes single-vector queries [m, d]; use maxsim for [m, t, d]")
            if temperature <= 0:
                raise ParameterError(f"temperature must be > 0, got {temperature}")
        if self.nonempty.size == 0 or m == 0:
            return np.full((m, self.n_owners), -np.inf, dtype=np.float32)
        step = max(1, int(block_queries))
        parts = [self._score_block(q[i : i + step], pooling, temperature) for i in range(0, m, step)]
        return np.concatenate(parts, axis=0)

    def _score_block(self, q: np.ndarray, pooling: str, temperature: float) -> np.ndarray:
        m = q.shape[0]
        if pooling == "maxsim":
            flat = q.reshape(-1, self.dim)
            sims = self.frames @ flat.T  # [n, m*t]
            best = np.maximum.reduceat(sims, self.starts, axis=0)  # [O_ne, m*t]
            if q.ndim == 3:
                best = best.reshape(-1, m, q.shape[1]).sum(axis=2)
            return self._fill(best, m)
        # Query-scored softmax weights per owner run, then cos(q, sum w f) = (w.s) / sqrt(w^T G w).
        sims = self.frames @ q.T  # [n, m]
        seg = np.repeat(np.arange(self.nonempty.size), self.counts[self.nonempty])
        gmax = np.maximum.reduceat(sims, self.starts, axis=0)
        e = np.exp((sims - gmax[seg]) / temperature)
        w = e / np.add.reduceat(e, self.starts, axis=0)[seg]
        num = np.add.reduceat(w * sims, self.starts, axis=0)  # [O_ne, m]
        pos, gram = self._padded_gram()
        wp = np.zeros((self.nonempty.size, gram.shape[1], m), dtype=np.float32)
        wp[seg, pos] = w
        den2 = np.einsum("okm,okl,olm->om", wp, gram, wp)
        return self._fill(num / np.sqrt(np.maximum(den2, 1e-30)), m)


# One-entry cache so repeated score() calls on the same arrays (one loaded index, many searches) reuse the
# grouping, pooled vectors and Gram matrices. Keyed on object identity: arrays must not be mutated in place.
_LAST: list = [None, None, None, None]


def _scorer(frame_embs, frame_owner, n_owners) -> FrameScorer:
    if isinstance(frame_embs, FrameScorer):
        return frame_embs
    if _LAST[0] is frame_embs and _LAST[1] is frame_owner and _LAST[2] == n_owners:
        return _LAST[3]
    sc = FrameScorer(frame_embs, frame_owner, n_owners)
    if isinstance(frame_embs, np.ndarray) and isinstance(frame_owner, np.ndarray):
        _LAST[:] = [frame_embs, frame_owner, n_owners, sc]
    return sc


def _default_owner(frame_embs, frame_owner):
    if frame_owner is None and not isinstance(frame_embs, FrameScorer):
        return np.zeros(np.asarray(frame_embs).shape[0], dtype=np.int64)
    return frame_owner


def pool(frame_embs: np.ndarray, frame_owner, method: str = "mean", n_owners: int | None = None) -> np.ndarray:
    """Query-independent pooling ('mean' or 'max') to one vector per owner, for storing in an index."""
    if method in ("mean", "max"):
        return FrameScorer(frame_embs, frame_owner, n_owners).pooled(method)
    if method in POOLINGS:
        raise ParameterError(f"pooling {method!r} depends on the query: use score(..., pooling={method!r})")
    raise unknown("pooling", method, POOLINGS)


def _queries(query_embs: np.ndarray) -> np.ndarray:
    q = np.asarray(query_embs, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim not in (2, 3):
        raise InputError(f"query embeddings must be [m, d] or [m, tokens, d], got shape {q.shape}")
    return q


def score(
    query_embs: np.ndarray,
    frame_embs: np.ndarray | FrameScorer,
    frame_owner=None,
    pooling: str = "mean",
    *,
    temperature: float = 0.1,
    n_owners: int | None = None,
    block_queries: int = 256,
) -> np.ndarray:
    """Score queries [m, d] (or [m, t, d] for maxsim) against owners of frames: float32 [m, n_owners].

    ``frame_owner[i]`` is the owner (segment or video index, 0..O-1) of frame ``i``; ``n_owners`` defaults to
    ``max(frame_owner) + 1``. Owners without frames score ``-inf``. ``frame_embs`` may be a prepared
    :class:`FrameScorer` (then ``frame_owner`` is ignored); calling again with the very same arrays reuses
    the preparation of the previous call.
    """
    if pooling not in POOLINGS:
        raise unknown("pooling", pooling, POOLINGS)
    sc = _scorer(frame_embs, _default_owner(frame_embs, frame_owner), n_owners)
    return sc.score(query_embs, pooling, temperature=temperature, block_queries=block_queries)


# --------------------------------------------------------------------------------------------------- encoder


class ClipEncoder:
    """open_clip image/text encoder, loaded lazily; embeddings are float32 and L2-normalized.

    ``model`` is an open_clip model name (``ViT-B-32``, the default), ``hf-hub:org/repo``, ``local-dir:/path`` or a
    directory holding ``open_clip_config.json`` and weights, or a model-config ``.json`` file (its stem becomes the
    name). :meth:`from_spec` rebuilds an encoder from its recorded ``spec``.
    Weights come from ``pretrained`` (an open_clip tag, downloaded once by open_clip) or ``checkpoint`` (a local
    file). Without either, and without a schema that carries weights, construction raises ``ModelError``:
    random weights would index noise.
    """

    modality = "visual"

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        pretrained: str | None = None,
        checkpoint: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 32,
        precision: str = "fp32",
    ):
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
        self.device = device
        self.precision = precision
        self.pretrained = pretrained
        self.checkpoint = Path(checkpoint).resolve() if checkpoint is not None else None
        self._config_file: Path | None = None
        name = DEFAULTS["clip"] if model is None else str(model)
        path = Path(name).expanduser()
        # ``source`` is what spec records: passing it back as ``model`` rebuilds the same encoder in any process.
        self.source = name
        if name.endswith(".json") and path.is_file():
            self._config_file = path.resolve()
            self.source = str(self._config_file)
            name = path.stem
        elif name.endswith(".json"):
            raise ModelError(f"open_clip model config {name} does not exist; {enable_hint()}")
        elif not name.startswith(("hf-hub:", "local-dir:")) and path.is_dir():
            name = f"local-dir:{path.resolve()}"
            self.source = name
        self.model_name = name
        if self.checkpoint is not None and pretrained is not None:
            raise ParameterError("pass either pretrained (a tag) or checkpoint (a file), not both")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise ModelError(f"CLIP checkpoint {self.checkpoint} does not exist; {enable_hint()}")
        if self.checkpoint is None and pretrained is None and not name.startswith(("hf-hub:", "local-dir:")):
            raise ModelError(f"no CLIP weights configured for {name!r}; {enable_hint()}")
        self._model = None
        self._preprocess = None
        self._tokenizer = None
        self._torch_device = None
        self._fp = fingerprint(self.checkpoint) if self.checkpoint is not None else None

    # ---------------------------------------------------------------- identity
    @property
    def spec(self) -> dict[str, Any]:
        """Model identity stored with every vector; two encoders with different specs must not share a column."""
        spec: dict[str, Any] = {"kind": "open_clip", "model": self.source, "pretrained": self.pretrained}
        if self.checkpoint is not None:
            spec["checkpoint"] = str(self.checkpoint)
            spec["checkpoint_fingerprint"] = self._fp
        if self.model_name.startswith("local-dir:"):
            d = Path(self.model_name[len("local-dir:") :])
            weights = sorted(p for p in d.glob("*") if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
            if weights:
                spec["checkpoint_fingerprint"] = fingerprint(weights[0])
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClipEncoder:
        return cls(spec.get("model"), pretrained=spec.get("pretrained"), checkpoint=spec.get("checkpoint"))

    # ---------------------------------------------------------------- loading
    def load(self):
        """Build the model and load its weights now; raises ``ModelError`` with how to fix it."""
        if self._model is not None:
            return self._model
        open_clip, torch = require("open_clip"), require("torch")
        if self._config_file is not None and self.model_name not in open_clip.list_models():
            open_clip.add_model_config(self._config_file)
        name = self.model_name
        if not name.startswith(("hf-hub:", "local-dir:")) and open_clip.get_model_config(name) is None:
            raise unknown("open_clip model", name, open_clip.list_models())
        device = resolve_device(self.device)
        source = str(self.checkpoint) if self.checkpoint is not None else self.pretrained
        # Tags trained with QuickGELU (all 'openai' ones) silently degrade on a GELU config; open_clip only
        # warns, so follow the tag.
        quick_gelu = False
        if self.pretrained and self.checkpoint is None and not name.startswith(("hf-hub:", "local-dir:")):
            tag_cfg = open_clip.get_pretrained_cfg(name, self.pretrained) or {}
            quick_gelu = bool(tag_cfg.get("quick_gelu")) and not open_clip.get_model_config(name).get("quick_gelu")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=source, device=device, precision=self.precision, force_quick_gelu=quick_gelu
            )
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            what = f"checkpoint {self.checkpoint}" if self.checkpoint else f"pretrained {self.pretrained!r}"
            raise ModelError(f"cannot load CLIP {name!r} with {what}: {first_line(e)}; {enable_hint()}") from None
        model.eval()
        self._model, self._preprocess, self._tokenizer = model, preprocess, tokenizer
        self._torch_device = torch.device(device)
        return model

    @property
    def dim(self) -> int:
        model = self.load()
        proj = getattr(getattr(model, "visual", None), "output_dim", None)
        if proj:
            return int(proj)
        return int(self.encode_text(["x"]).shape[1])

    # ---------------------------------------------------------------- encoding
    def encode_frames(self, frames: Sequence[np.ndarray], progress: Progress | None = None) -> np.ndarray:
        """Frames (HxWx3 uint8 RGB) -> float32 [n, d], L2-normalized."""
        model = self.load()
        torch, image = require("torch"), require("PIL.Image")

        n = len(frames)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, n, self.batch_size):
            chunk = frames[start : start + self.batch_size]
            imgs = []
            for i, fr in enumerate(chunk):
                a = np.asarray(fr)
                if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                    raise InputError(
                        f"frame {start + i}: expected HxWx3 uint8 RGB, got shape {a.shape} dtype {a.dtype}"
                    )
                imgs.append(self._preprocess(image.fromarray(a)))
            batch = torch.stack(imgs).to(self._torch_device)
            with torch.inference_mode():
                emb = model.encode_image(batch, normalize=True)
            out.append(emb.float().cpu().numpy())
            if progress is not None:
                progress(min(start + self.batch_size, n), n, "visual")
        return l2_normalize(np.concatenate(out, axis=0)).astype(np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Query texts -> float32 [m, d], L2-normalized (open_clip's tokenizer truncates to its context)."""
        if isinstance(texts, str):
            texts = [texts]
        model = self.load()
        torch = require("torch")

        if len(texts) == 0:
            proj = getattr(getattr(model, "visual", None), "output_dim", 0)
            return np.zeros((0, int(proj)), dtype=np.float32)
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer([t or "" for t in texts[start : start + self.batch_size]])
            with torch.inference_mode():
                emb = model.encode_text(tokens.to(self._torch_device), normalize=True)
            out.append(emb.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0)).astype(np.float32)

    def __repr__(self) -> str:
        return f"ClipEncoder({json.dumps(self.spec)})"
