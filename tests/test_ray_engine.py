"""Tests for mmfuse.ingest.ray_engine: the Ray Data pipeline writes the same index as the local engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
lancedb = pytest.importorskip("lancedb")

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
# A clip with on-screen text and the audio-only file (both with metadata), plus a broken file: small, as OCR is slow.
FILES = ["v01_ball.mp4", "v06_podcast.m4a"]


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
    return root, videos


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_index_equals_local_index(corpus, local_ray):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.ingest.ray_engine import index_with_ray

    root, videos = corpus
    cfg = IndexConfig(modalities=["ocr", "meta"], frames_per_segment=1, frame_size=480)
    local = index_folder(videos, root / "local", cfg)
    calls = []
    # Fractional CPUs: two actor pools of 0.5 CPU leave room for the decode/assemble tasks on a 2-CPU Ray.
    rs = index_with_ray(videos, root / "ray", config=cfg, num_cpus=0.5, task_cpus=0.25,
                        progress=lambda d, t, label: calls.append((d, t)))
    assert sorted(v for v, *_ in rs.indexed) == sorted(v for v, *_ in local.indexed) == \
        ["v01_ball", "v06_podcast"]
    assert rs.failed == sorted(local.failed) and rs.failed[0][0] == "broken.mp4"
    assert rs.modalities == local.modalities == ["ocr", "meta"]
    assert calls[-1] == (3, 3)

    a, b = _tables(root / "local"), _tables(root / "ray")
    assert sorted(a) == sorted(b)
    assert any(r["ocr_text"] for r in a["segments"])  # the comparison covers real OCR output
    for name in a:
        if name == "videos":
            for r in a[name] + b[name]:
                r.pop("path")
        if name.startswith("vec_"):
            va = np.asarray([r.pop("vector") for r in a[name]])
            vb = np.asarray([r.pop("vector") for r in b[name]])
            np.testing.assert_allclose(va, vb, atol=1e-6)
        assert a[name] == b[name], name

    # A second run over the same folder does no work: every file is unchanged (meta only: no OCR actor to start).
    again = index_with_ray(videos, root / "ray", ["meta"], config=cfg, num_cpus=0.5, task_cpus=0.25)
    assert again.indexed == [] and len(again.skipped) == 2 and all(r == "unchanged" for _, r in again.skipped)


def test_bad_folder_is_refused_before_starting_ray(tmp_path):
    from mmfuse.errors import InputError
    from mmfuse.ingest.ray_engine import index_with_ray

    with pytest.raises(InputError, match="nope: video folder does not exist"):
        index_with_ray(tmp_path / "nope", tmp_path / "idx", ["ocr"])
