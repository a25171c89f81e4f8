"""Session fixtures for the reranker: a tiny random Qwen2-VL checkpoint and a few tiny colour clips."""

from __future__ import annotations

import pytest

CLIP_COLOURS = {
    "red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
    "yellow": (230, 220, 20), "white": (240, 240, 240), "purple": (140, 30, 160),
}


def write_clip(path, colour, *, seconds: float = 1.0, fps: int = 8, size=(64, 48), cut_to=None):
    """A short H.264 clip of one colour (switching to ``cut_to`` halfway, for scene-change tests)."""
    import av
    import numpy as np

    w, h = size
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            c = cut_to if (cut_to is not None and i >= n // 2) else colour
            img = np.empty((h, w, 3), np.uint8)
            img[:] = c
            img[: h // 4, : w // 4] = (i * 255 // max(n - 1, 1),) * 3  # a moving brightness patch
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    """A ~0.5 MB random Qwen2-VL saved like a hub checkpoint (config, weights, tokenizer, processor, template)."""
    pytest.importorskip("transformers")
    from mmfuse.rerankers.testing import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="session")
def rerank_clips(tmp_path_factory):
    """Six one-second colour clips named by colour: {stem: path}."""
    pytest.importorskip("av")
    d = tmp_path_factory.mktemp("rerank-clips")
    return {name: write_clip(d / f"{name}.mp4", rgb) for name, rgb in CLIP_COLOURS.items()}


def cell_mean(img, spec, r, c):
    """Mean RGB of one grid cell, ignoring its top-left third (label / moving patch)."""
    import numpy as np

    w, h = spec.cell
    a = np.asarray(img, dtype=np.float64)[r * h:(r + 1) * h, c * w:(c + 1) * w]
    return a[h // 3:, w // 3:].reshape(-1, 3).mean(axis=0)
