"""Tests for mmfuse.ingest.plan and the checks of `mmfuse index`: settings checked when built, hidden entries reported,
the skip-if-unchanged rule, and user mistakes that end in one line (exit 2) without creating the index folder."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmfuse.errors import InputError, ParameterError
from mmfuse.ingest import IndexConfig
from mmfuse.ingest.plan import Job, Plan, walk

CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
MMFUSE = shutil.which("mmfuse", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


@pytest.mark.parametrize("kwargs, message", [
    ({"modalities": ["ocr", "visual", "foo"]}, "unknown modality 'foo'"),
    ({"modalities": "ocr,vidual"}, "unknown modality 'vidual' (did you mean 'visual'?)"),
    ({"modalities": []}, "nothing to index"),
    ({"modalities": " , "}, "nothing to index"),
    ({"frames_per_segment": 0}, "frames_per_segment (--frames) must be an integer >= 1, got 0"),
    ({"frames_per_segment": -3}, "got -3"),
    ({"frames_per_segment": 2.5}, "got 2.5"),
    ({"frames_per_segment": True}, "got True"),
    ({"window": 0}, "window (--window) must be a positive number of seconds, got 0"),
    ({"window": -10.0}, "got -10.0"),
    ({"window": math.nan}, "got nan"),
    ({"window": math.inf}, "got inf"),
    ({"window": "10"}, "got '10'"),
    ({"workers": 0}, "workers (--workers) must be an integer >= 1"),
    ({"frame_size": 1}, "frame_size (--frame-size) must be None or an integer >= 2"),
    ({"asr_chunk": 0.0}, "asr_chunk"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_seconds": -1}, "batch_seconds"),
])
def test_config_mistakes_are_one_clear_error(kwargs, message):
    with pytest.raises(ParameterError) as e:
        IndexConfig(**kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_normalizes_names():
    cfg = IndexConfig(modalities="ocr, meta,ocr", retrievers="pkg.mod:Thing", window=None)
    assert cfg.modalities == ("ocr", "meta") and cfg.retrievers == ("pkg.mod:Thing",) and cfg.window is None
    assert IndexConfig(modalities=[], retrievers=["x:Y"]).modalities == ()  # plug-ins only


def test_walk_reports_hidden_entries(tmp_path):
    for rel in ("b.mp4", "a/c.MKV", ".hidden.mp4", "._b.mp4", ".cache/d.mp4", "a/.e.webm", "notes.txt", ".DS_Store"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = walk(tmp_path)
    assert [j.rel for j in found.jobs] == ["b.mp4", "a/c.MKV"]
    assert [j.video_id for j in found.jobs] == ["b", "a/c"]
    assert found.failed == []
    hidden_file = "hidden file (name starts with '.'): not indexed; rename it to index it"
    assert found.skipped == [
        (".cache/", "hidden folder (name starts with '.'): not searched"),
        ("._b.mp4", hidden_file), (".hidden.mp4", hidden_file), ("a/.e.webm", hidden_file),
    ]


def test_unchanged_means_same_bytes_modalities_and_sidecar_entry():
    job = Job(Path("v.mp4"), "v.mp4", "v")
    state = {"v": {"content_hash": "h1", "modalities": "ocr,meta"}}
    plan = Plan([job], ("ocr", "meta"), {"v": {"text": "Title"}}, state, {"v": "Title"})
    assert plan.unchanged(job, "h1")
    assert not plan.unchanged(job, "h2")  # new bytes
    assert not Plan([job], ("ocr", "meta", "asr"), plan.meta, state, plan.old_meta).unchanged(job, "h1")
    assert not Plan([job], plan.enabled, {"v": {"text": "New title"}}, state, plan.old_meta).unchanged(job, "h1")
    assert not Plan([job], plan.enabled, {}, state, plan.old_meta).unchanged(job, "h1")  # entry removed
    # without the meta modality the sidecar does not matter
    assert Plan([job], ("ocr",), {"v": {"text": "New title"}}, state, {}).unchanged(job, "h1")
    assert not Plan([job], ("ocr",), {}, {}, {}).unchanged(job, "h1")  # never indexed


def test_bad_sidecar_and_folder_change_nothing(tmp_path):
    from mmfuse.ingest import index_folder

    videos = tmp_path / "v"
    videos.mkdir()
    (videos / "metadata.json").write_text("{not json")
    with pytest.raises(InputError, match="metadata.json: line 1: invalid JSON"):
        index_folder(videos, tmp_path / "idx", IndexConfig(modalities=["meta"]))
    with pytest.raises(ParameterError, match="cannot import module 'no_such_module_xyz'"):
        index_folder(videos, tmp_path / "idx", IndexConfig(modalities=["ocr"], retrievers=["no_such_module_xyz:X"]))
    with pytest.raises(InputError, match="video folder does not exist"):
        index_folder(tmp_path / "missing", tmp_path / "idx", IndexConfig(modalities=["ocr"]))
    assert not (tmp_path / "idx").exists()


# ------------------------------------------------------------------------------ the installed console script
def _mmfuse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([MMFUSE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.mark.skipif(MMFUSE is None, reason="the mmfuse console script is not installed")
def test_index_mistakes_exit_2_with_one_line_and_create_nothing(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (tmp_path / "bad.json").write_text('{"v": 1')
    cases = [
        (["--modalities", "foo"], "unknown modality 'foo'"),
        (["--modalities", "ocr,visual,foo"], "unknown modality 'foo'"),
        (["--modalities", ""], "'--modalities': '' names nothing"),
        (["--modalities", "ocr", "--retriever", "no_such_module_xyz:Thing"], "no_such_module_xyz"),
        (["--modalities", "ocr", "--retriever", "nosuchplugin"], "nosuchplugin"),
        (["--modalities", "meta", "--metadata", str(tmp_path / "missing.json")], "missing.json: cannot read metadata"),
        (["--modalities", "meta", "--metadata", str(tmp_path / "bad.json")], "bad.json: line 1: invalid JSON"),
        # the CLI's option types answer first (the library's IndexConfig checks the same for Python callers)
        (["--modalities", "ocr", "--frames", "0"], "'--frames': 0 is too small: at least 1"),
        (["--modalities", "ocr", "--frames", "-2"], "'--frames': -2 is too small"),
        (["--modalities", "ocr", "--window", "0"], "'--window': 0 is out of range: must be > 0"),
        (["--modalities", "ocr", "--window", "-5"], "'--window': -5 is out of range"),
        (["--modalities", "ocr", "--workers", "0"], "'--workers': 0 is too small: at least 1"),
    ]
    for extra, message in cases:
        r = _mmfuse("index", str(videos), "--index", "idx", *extra, cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (extra, r.returncode, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (extra, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        assert not (tmp_path / "idx").exists(), extra


@pytest.mark.skipif(MMFUSE is None, reason="the mmfuse console script is not installed")
def test_index_reports_hidden_files_as_skipped(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(CORPUS / "v05_silent.mp4", videos / "clip.mp4")
    shutil.copy(CORPUS / "v05_silent.mp4", videos / ".clip_copy.mp4")
    (videos / "metadata.json").write_text(json.dumps({"clip": {"title": "A quiet clip"}}))
    r = _mmfuse("index", str(videos), "--index", "idx", "--modalities", "meta", "--no-dense", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert ".clip_copy.mp4: hidden file (name starts with '.'): not indexed" in out
    r = _mmfuse("index", str(videos), "--index", "idx", "--modalities", "meta", "--no-dense", cwd=tmp_path)
    out = " ".join(r.stdout.split())
    assert r.returncode == 0 and "1 unchanged since the last run" in out and ".clip_copy.mp4: hidden file" in out


def test_frame_size_is_recorded_with_the_frame_models_and_never_mixed(tmp_path):
    """``--frame-size`` (or ``[index] frame_size``) decodes frames at that size and is part of the OCR spec, so a
    second run at another size is refused in one line and the index keeps what it had."""
    from mmfuse.store.lance import IndexStore

    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(CORPUS / "v01_ball.mp4", videos)
    idx = tmp_path / "idx"

    def run(*args, code=0):
        p = subprocess.run([MMFUSE, "index", str(videos), "--index", str(idx), "--modalities", "ocr", "--frames", "1",
                            *args], capture_output=True, text=True, timeout=600, env=dict(os.environ, COLUMNS="200"))
        assert "Traceback" not in p.stderr and p.returncode == code, p.stdout + p.stderr
        return p

    run("--frame-size", "480")
    spec = IndexStore.open(idx).specs()["ocr"]["spec"]
    assert spec["frame_size"] == 480
    before = IndexStore.open(idx).segments()["ocr_text"].tolist()
    assert any("LIGHTHOUSE" in t.upper() for t in before)  # the word is read at 480 px too

    (videos / "v01_copy.mp4").write_bytes((videos / "v01_ball.mp4").read_bytes() + b"\0")  # a new file to index
    p = run(code=2)  # the default size is another spec
    assert p.stderr.strip().count("\n") == 0 and "refusing to mix" in p.stderr and '"frame_size": 480' in p.stderr
    assert IndexStore.open(idx).segments()["ocr_text"].tolist() == before

    cfg = tmp_path / "c.toml"
    cfg.write_text("[index]\nframe_size = 480\n")
    run("--config", str(cfg))  # the config's size is the recorded one: the new file is indexed
    assert len(IndexStore.open(idx).segments()["ocr_text"]) == 2 * len(before)

    p = run("--frame-size", "16", code=2)
    assert p.stderr.strip().count("\n") == 0 and "--frame-size" in p.stderr
