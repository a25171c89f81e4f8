"""A tiny mmfuse retriever plug-in: embeds each segment by the mean colour of its frames.

It follows ``mmfuse.retrievers.SegmentEncoder``: ``mmfuse index --retriever myplugin`` calls
``encode_segments`` during the single decode pass and stores the vectors in the index;
``mmfuse search`` calls ``encode_queries`` (colour words -> RGB direction).
"""

from __future__ import annotations

import numpy as np

COLOURS = {
    "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0), "cyan": (0.0, 1.0, 1.0), "magenta": (1.0, 0.0, 1.0),
}


class ColorRetriever:
    name = "color"
    modality = "color"
    spec = {"model": "mean-rgb", "version": 1}

    def encode_segments(self, segments: list) -> np.ndarray:
        out = []
        for seg in segments:
            if seg.frames:
                rgb = np.mean([f.reshape(-1, 3).mean(axis=0) for f in seg.frames], axis=0) / 255.0
            else:
                rgb = np.zeros(3)
            out.append(rgb - rgb.mean())  # chroma only: grey levels carry no colour
        return np.asarray(out, dtype=np.float32)

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        out = []
        for q in queries:
            words = [COLOURS[w] for w in q.lower().split() if w in COLOURS]
            rgb = np.mean(words, axis=0) if words else np.full(3, 1 / 3)
            out.append(rgb - np.mean(rgb))
        return np.asarray(out, dtype=np.float32)
