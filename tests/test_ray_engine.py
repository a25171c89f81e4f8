"""Tests for mmfuse.ingest.ray_engine: the Ray Data pipeline writes the same index as the local engine."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from _fake_openai import FakeOpenAI, colour_caption

ray = pytest.importorskip("ray")
lancedb = pytest.importorskip("lancedb")

TESTS = Path(__file__).resolve().parent
CORPUS = TESTS.parent / "examples" / "corpus"
# Clips with on-screen text and speech (one of two windows' worth), the audio-only file, all with metadata; plus a
# broken file and a hidden one. Small, as OCR and ASR are slow.
FILES = ["v01_ball.mp4", "v06_podcast.m4a", "v11_two_parts.mp4"]


def _tables(index_dir: Path) -> dict[str, list[dict]]:
    db = lancedb.connect(str(index_dir))
    out = {}
    for name in db.list_tables().tables if hasattr(db.list_tables(), "tables") else db.list_tables():
        rows = db.open_table(name).to_arrow().to_pylist()
        for r in rows:
            r.pop("indexed_at", None)  # a timestamp
            for k, v in r.items():
                if isinstance(v, float) and v != v:
                    r[k] = "nan"  # NaN != NaN would hide equal rows
        key = ("video_id", "segment_id", "modality")
        rows.sort(key=lambda r: tuple(str(r.get(k, "")) for k in key))
        out[name] = rows
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("raycorpus")
    videos = root / "videos"
    videos.mkdir()
    for f in FILES:
        shutil.copy(CORPUS / f, videos / f)
    meta = json.loads((CORPUS / "metadata.json").read_text())
    (videos / "metadata.json").write_text(json.dumps(meta))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    shutil.copy(CORPUS / FILES[0], videos / ".hidden_copy.mp4")
    return root, videos


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    # Ray's workers import the plug-ins by reference, like this process does.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def _run_both(videos: Path, root: Path, cfg) -> tuple:
    from mmfuse.ingest import index_folder, index_with_ray

    local = index_folder(videos, root / "local", cfg)
    calls = []
    # Fractional CPUs: five actor pools of 0.25 CPU leave room for the decode/assemble tasks on a 2-CPU Ray.
    rs = index_with_ray(videos, root / "ray", config=cfg, num_cpus=0.25, task_cpus=0.25,
                        progress=lambda d, t, label: calls.append((d, t)))
    assert calls[-1] == (len(FILES) + 1, len(FILES) + 1)  # every file reported, the broken one too
    return local, rs


def _assert_same_index(root: Path) -> dict:
    a, b = _tables(root / "local"), _tables(root / "ray")
    assert sorted(a) == sorted(b)
    for name in a:
        if name == "videos":
            for r in a[name] + b[name]:
                r.pop("path")
        if name.startswith("vec_"):
            va = np.asarray([r.pop("vector") for r in a[name]])
            vb = np.asarray([r.pop("vector") for r in b[name]])
            np.testing.assert_allclose(va, vb, atol=1e-6)
        assert a[name] == b[name], name
    assert (root / "local" / "segcount.json").read_text() == (root / "ray" / "segcount.json").read_text()
    return a


@pytest.mark.slow
def test_ray_index_equals_local_index(corpus, local_ray, tmp_path):
    """Both engines, the same folder: the same tables, after the first run, after a sidecar entry changes and after
    captions are added (Ray's actors ask the same loopback server)."""
    from mmfuse.ingest import IndexConfig, index_with_ray

    root, videos = corpus
    cfg = IndexConfig(modalities=["ocr", "asr", "meta"], window=5.0, frames_per_segment=1, frame_size=480,
                      retrievers=["_index_plugins:MeanColor", "_index_plugins:SegmentCount"])
    local, rs = _run_both(videos, root, cfg)
    ids = sorted(Path(f).stem for f in FILES)
    assert sorted(v for v, *_ in rs.indexed) == sorted(v for v, *_ in local.indexed) == ids
    assert rs.failed == sorted(local.failed) and [f for f, _ in rs.failed] == ["broken.mp4"]
    assert rs.skipped == local.skipped and [f for f, _ in rs.skipped] == [".hidden_copy.mp4"]
    assert rs.modalities == local.modalities == ["ocr", "asr", "meta", "meancolor", "segcount"]
    assert rs.segments == local.segments == 7  # 5 s windows: 6 s -> 2, 6 s -> 2, 12 s -> 3
    a = _assert_same_index(root)
    # the comparison covers real output of every rule: OCR text, transcripts by window, metadata, plug-in vectors
    segs = a["segments"]
    assert any(r["ocr_text"] for r in segs) and any(r["asr_text"] for r in segs)
    assert any(not r["asr_text"] for r in segs if r["video_id"] == "v11_two_parts")  # speech only in the first window
    assert {r["asr_lang"] for r in segs if r["asr_text"]} == {"en"} and not any(r["asr_lang"] for r in segs
                                                                                if not r["asr_text"])
    assert {r["video_id"] for r in a["meta"]} == set(ids) and len(a["vec_meancolor"]) == 7
    assert len(a["vec_asr_dense"]) == sum(bool(r["asr_text"]) for r in segs)

    # Captions added to the same folder: both engines caption only (the other modalities are carried over), through
    # the same functions; the local run fills the answer cache, which Ray's actors then read
    with FakeOpenAI(vision=colour_caption) as srv:
        cap = dataclasses.replace(cfg, modalities=("ocr", "asr", "meta", "caption"), vlm_base_url=srv.url,
                                  vlm_model="fake-vlm", vlm_cache=str(tmp_path / "vlm-cache"))
        local, rs = _run_both(videos, root, cap)
        assert len(srv.requests) == 5  # one per segment with frames (the audio-only file has none)
    assert sorted(v for v, *_ in rs.indexed) == sorted(v for v, *_ in local.indexed) == ids
    assert local.captions.calls == 5 and rs.captions.cache_hits == 5
    a = _assert_same_index(root)
    assert sum(bool(r["caption_text"]) for r in a["segments"]) == 5 and len(a["vec_caption_dense"]) == 5
    assert [r["ocr_text"] for r in a["segments"]] == [r["ocr_text"] for r in segs]

    # A changed sidecar entry re-indexes that video (and only it) in both engines; the plug-in's own index follows.
    meta = json.loads((videos / "metadata.json").read_text())
    entry = next(m for m in meta if m["video_id"] == "v01_ball")
    entry["title"] = "Lighthouse at dusk"
    (videos / "metadata.json").write_text(json.dumps(meta))
    local, rs = _run_both(videos, root, cfg)
    assert [v for v, *_ in local.indexed] == [v for v, *_ in rs.indexed] == ["v01_ball"]
    assert sorted(local.skipped) == sorted(rs.skipped)
    assert sorted(f for f, why in rs.skipped if why == "unchanged") == ["v06_podcast.m4a", "v11_two_parts.mp4"]
    a = _assert_same_index(root)
    assert next(r for r in a["meta"] if r["video_id"] == "v01_ball")["title"] == "Lighthouse at dusk"

    # A run with nothing new does no work (meta only: no encoder actor to start).
    again = index_with_ray(videos, root / "ray", ["meta"], config=dataclasses.replace(cfg, retrievers=()),
                           num_cpus=0.25, task_cpus=0.25)
    assert again.indexed == [] and [why for _, why in again.skipped].count("unchanged") == len(FILES)


def test_bad_folder_is_refused_before_starting_ray(tmp_path):
    from mmfuse.errors import InputError
    from mmfuse.ingest.ray_engine import index_with_ray

    with pytest.raises(InputError, match="nope: video folder does not exist"):
        index_with_ray(tmp_path / "nope", tmp_path / "idx", ["ocr"])
