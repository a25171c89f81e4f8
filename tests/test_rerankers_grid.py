"""S-Grid: layout, labels, placeholders, scene-aware sampling and the content-keyed disk cache, on real clips."""

import numpy as np
import pytest
from fixtures_vlm import cell_mean
from PIL import Image

from mmfuse.errors import ParameterError
from mmfuse.rerankers.grid import GridCache, GridSpec, build_grid, draw_label, parse_cell, parse_grid, placeholder

pytestmark = pytest.mark.slow  # decodes real video files


def test_grid_layout_and_colour(rerank_clips):
    spec = GridSpec(rows=2, cols=3, cell=(40, 30))
    img = build_grid(rerank_clips["blue"], spec)
    assert img.size == (120, 60)
    for r in range(2):
        for c in range(3):
            mean = cell_mean(img, spec, r, c)
            assert mean[2] > 150 and mean[0] < 80, (r, c, mean)


def test_label_and_placeholder():
    spec = GridSpec(cell=(64, 64))
    base = Image.new("RGB", spec.size, (0, 0, 255))
    lab = draw_label(base, "[3]")
    assert lab.size == base.size and base.getpixel((1, 1)) == (0, 0, 255)  # copy, original untouched
    assert lab.getpixel((1, 1)) == (255, 230, 0)
    ph = placeholder(spec, "video missing")
    assert ph.size == spec.size and ph.getpixel((0, 0)) == (96, 96, 96)


def test_scene_sampling_finds_the_cut(tmp_path):
    from fixtures_vlm import write_clip

    clip = write_clip(tmp_path / "cut.mp4", (220, 30, 30), seconds=2.0, cut_to=(30, 30, 220))
    spec = GridSpec(rows=1, cols=2, cell=(32, 32), sampling="scene")
    img = build_grid(clip, spec)
    left, right = cell_mean(img, spec, 0, 0), cell_mean(img, spec, 0, 1)
    assert left[0] > 150 > left[2] and right[2] > 150 > right[0]


def test_cache_hits_and_keys(rerank_clips, tmp_path):
    cache = GridCache(tmp_path / "cache")
    spec = GridSpec(cell=(32, 32))
    a = cache.get(rerank_clips["red"], spec)
    assert (cache.hits, cache.misses) == (0, 1)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    again = GridCache(tmp_path / "cache").get(rerank_clips["red"], spec)  # a fresh process reads the disk
    assert np.array_equal(np.asarray(a), np.asarray(again))
    import mmfuse.rerankers.grid

    def no_hashing(path):
        raise AssertionError("a known file must not be hashed again")

    mp = pytest.MonkeyPatch()
    mp.setattr(mmfuse.rerankers.grid, "content_hash", no_hashing)
    try:  # a third process: the (path, size, mtime) -> hash memo in hashes.jsonl spares re-reading the video
        assert GridCache(tmp_path / "cache").get(rerank_clips["red"], spec).size == a.size
    finally:
        mp.undo()
    cache.get(rerank_clips["red"], GridSpec(rows=1, cols=2, cell=(32, 32)))  # other params -> other entry
    assert cache.misses == 2 and len(list((tmp_path / "cache").rglob("*.npy"))) == 2
    cache.get(rerank_clips["red"], spec)
    assert cache.hits == 1
    # same content under another name shares the entry (keyed by content, not path)
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(rerank_clips["red"].read_bytes())
    cache.get(copy, spec)
    assert cache.hits == 2


def test_memory_cache(rerank_clips):
    cache = GridCache(None)
    spec = GridSpec(cell=(32, 32))
    cache.get(rerank_clips["green"], spec)
    cache.get(rerank_clips["green"], spec)
    assert (cache.hits, cache.misses) == (1, 1)


def test_grid_params():
    assert parse_grid("2x3") == (2, 3) and parse_cell("320x180") == (320, 180) and parse_cell("64") == (64, 64)
    for bad in ("2", "axb", "0x2", "9x9"):
        with pytest.raises(ParameterError):
            parse_grid(bad)
    with pytest.raises(ParameterError, match="did you mean"):
        GridSpec(sampling="scenes")
    with pytest.raises(ParameterError):
        GridSpec(cell=(8, 8))
