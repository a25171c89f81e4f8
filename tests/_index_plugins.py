"""Plug-ins for the engine tests, importable by reference (``_index_plugins:MeanColor``) in this process and in Ray
workers: one with a per-segment encoder, one that keeps its own index (``index(store)``)."""

from __future__ import annotations

import json

import numpy as np


class MeanColor:
    """Each segment's mean RGB (0..1) over its frames; zeros for a segment without frames."""

    name, modality = "meancolor", "custom"
    spec = {"model": "mean-rgb", "version": 1}

    def encode_segments(self, segments: list) -> np.ndarray:
        return np.asarray([np.mean([f.reshape(-1, 3).mean(axis=0) for f in s.frames], axis=0) / 255.0
                           if s.frames else np.zeros(3) for s in segments], dtype=np.float32)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return np.full((len(queries), 3), 1 / 3, dtype=np.float32)


class SegmentCount:
    """Keeps its own index: the number of committed segments per video, in ``segcount.json`` of the index folder."""

    name, modality = "segcount", "custom"

    def index(self, store) -> None:
        ids, n = np.unique(store.segments()["video_id"], return_counts=True)
        (store.path / "segcount.json").write_text(json.dumps(dict(zip(ids.tolist(), n.tolist())), sort_keys=True))

    def search(self, queries, k=100):  # pragma: no cover - searching is not what these tests check
        raise NotImplementedError
