"""Damaged indexes, through the installed console script: a deleted table folder, a lost manifest, a truncated or
missing data file, an unreadable catalog give one error line (exit 2, no traceback) naming the damage and the repair
command; `mmfuse index --repair` repairs them and search gives the undamaged index's results again. A damaged BM25
cache is not an error: it is rebuilt from the tables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "mmfuse_myplugin:ColorRetriever"  # a vector modality that needs no model (tests/plugin_pkg)

pytestmark = pytest.mark.slow


def _mmfuse(*args: str) -> subprocess.CompletedProcess:
    """The installed console script in a subprocess, as users run it."""
    exe = Path(sys.executable).parent / "mmfuse"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "plugin_pkg"), str(REPO)]), COLUMNS="200")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def cli(capsys, monkeypatch):
    """The same CLI in-process (no interpreter start-up) for the steps that are not about the error line."""
    from mmfuse.app.cli import main

    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugin_pkg"))

    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def _index_args(videos: Path, index: Path) -> list[str]:
    return ["index", str(videos), "--index", str(index), "--modalities", "meta", "--no-dense", "--retriever", PLUGIN]


def _search_args(index: Path) -> list[str]:
    return ["search", "quiet walk", "--index", str(index), "--json", "--k", "5", "--retriever", PLUGIN]


def _hits(r: subprocess.CompletedProcess) -> list:
    assert r.returncode == 0, r.stderr
    return [(h["video_id"], round(h["score"], 6), sorted(h["modalities"])) for h in json.loads(r.stdout)["hits"]]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    videos = root / "videos"
    videos.mkdir()
    for name in ("v01_ball.mp4", "v02_squares.mp4", "v04_stripes.mp4"):
        shutil.copy(REPO / "examples" / "corpus" / name, videos / name)
    shutil.copy(REPO / "examples" / "corpus" / "metadata.json", videos / "metadata.json")
    index = root / "idx"
    r = _mmfuse(*_index_args(videos, index))
    assert r.returncode == 0, r.stderr
    hits = _hits(_mmfuse(*_search_args(index)))  # also writes the BM25 cache
    assert {m for _, _, mods in hits for m in mods} == {"meta", "color"}
    assert (index / "bm25" / "meta").is_dir() and (index / "vec_color.lance").is_dir()
    return {"videos": videos, "index": index, "hits": hits}


def _newest_data_file(table: Path) -> Path:
    return max((table / "data").glob("*.lance"), key=lambda p: p.stat().st_mtime_ns)


def _truncate(p: Path) -> None:
    os.truncate(p, p.stat().st_size // 2)


DAMAGE = {
    "segments folder deleted": ("segments", lambda d: shutil.rmtree(d / "segments.lance")),
    "vector table folder deleted": ("vec_color", lambda d: shutil.rmtree(d / "vec_color.lance")),
    "videos folder deleted": ("videos", lambda d: shutil.rmtree(d / "videos.lance")),
    "modalities manifests deleted": ("modalities", lambda d: shutil.rmtree(d / "modalities.lance" / "_versions")),
    "segments data file truncated": ("segments", lambda d: _truncate(_newest_data_file(d / "segments.lance"))),
    "vector data file deleted": ("vec_color", lambda d: _newest_data_file(d / "vec_color.lance").unlink()),
    "meta data file emptied": ("meta", lambda d: os.truncate(_newest_data_file(d / "meta.lance"), 0)),
    "catalog unreadable": ("tables.json", lambda d: (d / "tables.json").write_text("{")),
}
# `mmfuse index` without --repair refuses these too (one of each kind: found on open, found on read)
WRITER_REFUSES = ("segments folder deleted", "segments data file truncated", "catalog unreadable")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_is_one_clear_error_and_repair_restores_the_results(pristine, tmp_path, case, cli):
    what, damage = DAMAGE[case]
    index = tmp_path / "idx"
    shutil.copytree(pristine["index"], index)
    damage(index)
    runs = [_mmfuse(*_search_args(index))]
    if case in WRITER_REFUSES:
        runs.append(_mmfuse(*_index_args(pristine["videos"], index)))
    for r in runs:
        assert r.returncode == 2, (case, r.stdout, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("error: index ") and " is damaged: " in lines[0], lines[0]
        assert repr(what) in lines[0] or what in lines[0], lines[0]
        assert f"mmfuse index VIDEO_DIR --index {index} --repair" in lines[0]
    r = cli(*_index_args(pristine["videos"], index), "--repair")
    assert r.returncode == 0, r.stderr
    assert "repair: " in r.stderr
    assert _hits(cli(*_search_args(index))) == pristine["hits"]


@pytest.mark.parametrize("damage", [
    lambda d: shutil.rmtree(d / "bm25"),
    lambda d: (d / "bm25" / "meta" / "mmfuse_bm25.json").unlink(),
    lambda d: [_truncate(p) for p in (d / "bm25" / "meta").glob("*.npy")],
], ids=["folder deleted", "metadata deleted", "arrays truncated"])
def test_a_damaged_bm25_cache_is_rebuilt(pristine, tmp_path, damage, cli):
    index = tmp_path / "idx"
    shutil.copytree(pristine["index"], index)
    damage(index)
    assert _hits(cli(*_search_args(index))) == pristine["hits"]
    assert (index / "bm25" / "meta" / "mmfuse_bm25.json").is_file()  # and saved again


def test_repair_of_a_sound_index_changes_nothing(pristine, tmp_path, cli):
    index = tmp_path / "idx"
    shutil.copytree(pristine["index"], index)
    r = cli(*_index_args(pristine["videos"], index), "--repair")
    assert r.returncode == 0, r.stderr
    assert "repair: BM25 caches removed" in r.stderr and "skipped" in r.stdout and "forgot" not in r.stderr
    assert _hits(cli(*_search_args(index))) == pristine["hits"]
