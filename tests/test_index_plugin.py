"""A third-party retriever installed as a real package (entry point group ``mmfuse.retrievers``) and used
from the CLI: ``mmfuse index --retriever myplugin`` then ``mmfuse search``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _solid_video(path: Path, rgb: tuple[int, int, int], seconds: float = 1.0, fps: int = 10) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        img = np.zeros((64, 64, 3), dtype=np.uint8)
        img[:] = rgb
        for _ in range(int(seconds * fps)):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install tests/plugin_pkg into a private target dir (the shared venv is left untouched)."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(REPO / "tests" / "plugin_pkg", src)  # builds write into the source tree
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(src)], check=True, capture_output=True, timeout=120)
    assert (site / "mmfuse_myplugin-0.1.0.dist-info" / "entry_points.txt").exists()
    return site


def _mmfuse(args, site: Path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "mmfuse.app.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_plugin_from_the_cli(plugin_site, tmp_path, monkeypatch, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    _solid_video(videos / "red_clip.mp4", (220, 20, 20))
    _solid_video(videos / "blue_clip.mp4", (20, 20, 220))
    index = tmp_path / "idx"
    r = _mmfuse(["index", str(videos), "--index", str(index), "--modalities", "none", "--retriever", "myplugin"], plugin_site)
    assert r.returncode == 0, r.stderr
    assert "color" in r.stdout and "indexed" in r.stdout
    # Searches run in-process (cheaper than a fresh interpreter); the plug-in is found the same way.
    monkeypatch.syspath_prepend(str(plugin_site))
    from mmfuse.app.cli import main

    for query, want in (("red", "red_clip"), ("blue", "blue_clip")):
        with pytest.raises(SystemExit) as e:
            main(["search", query, "--index", str(index), "--json"])
            raise SystemExit(0)
        out = capsys.readouterr()
        assert e.value.code == 0, out.err
        hits = json.loads(out.out)["hits"]
        assert hits[0]["video_id"] == want and "color" in hits[0]["modalities"]
    # The index remembers the plug-in; without it installed, search says so instead of crashing.
    r = subprocess.run([sys.executable, "-m", "mmfuse.app.cli", "search", "red", "--index", str(index)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert r.returncode != 0 and "plug-in color skipped" in r.stderr and "myplugin" in r.stderr


def test_unknown_plugin_lists_installed_ones(plugin_site, tmp_path):
    r = _mmfuse(["index", str(tmp_path), "--index", str(tmp_path / "idx"), "--retriever", "myplugn"], plugin_site)
    assert r.returncode == 2
    assert "did you mean 'myplugin'" in r.stderr and "mmfuse.retrievers" in r.stderr


class SegmentCount:
    """A plug-in that keeps its own index (``index(store)``) and only answers ``search``: longer videos first."""

    name, modality = "segcount", "custom"

    def __init__(self, counts: dict | None = None) -> None:
        self.counts = counts or {}

    @classmethod
    def from_index(cls, store):
        return cls(json.loads((store.path / "segcount.json").read_text()))

    def index(self, store) -> None:
        seg = store.segments()
        ids, n = np.unique(seg["video_id"], return_counts=True)
        (store.path / "segcount.json").write_text(json.dumps(dict(zip(ids.tolist(), n.tolist()))))

    def search(self, queries, k=100):
        from mmfuse import Run
        from mmfuse.retrievers import normalize_queries

        qids, _ = normalize_queries(queries)
        vids = sorted(self.counts)
        return Run.from_arrays(np.repeat(qids, len(vids)), np.tile(vids, len(qids)),
                               np.tile([float(self.counts[v]) for v in vids], len(qids)), name=self.name).cut(k)


def test_plugin_with_its_own_index_by_module_reference(tmp_path):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.pipeline import search_index

    videos = tmp_path / "v"
    videos.mkdir()
    for name in ("v01_ball.mp4", "v11_two_parts.mp4"):
        shutil.copy(REPO / "examples" / "corpus" / name, videos / name)
    ref = f"{__name__}:SegmentCount"
    summary = index_folder(videos, tmp_path / "idx", IndexConfig(modalities=[], retrievers=[ref]))
    assert summary.failed == [] and summary.modalities == ["segcount"]
    res = search_index(tmp_path / "idx", ["anything"], k=5, plugins=[ref])  # named again: it may be imported
    assert [r.name for r in res.runs] == ["segcount"]
    assert res.runs[0].query("0") == [("v11_two_parts", 2.0), ("v01_ball", 1.0)]  # the plug-in's own scores
    # fused on the fusion's scale even with one retriever (sef: z-scores of the list, 2 and 1 -> +1 and -1)
    assert res.fused.query("0") == [("v11_two_parts", 1.0), ("v01_ball", -1.0)]


EVIL = """
import pathlib, numpy as np
pathlib.Path({marker!r}).write_text("imported")

class Thing:
    name = modality = "thing"
    spec = {{"model": "thing"}}

    def encode_segments(self, segments):
        return np.ones((len(segments), 3), dtype=np.float32)

    def encode_queries(self, queries):
        return np.ones((len(queries), 3), dtype=np.float32)
"""


def test_an_index_never_makes_mmfuse_import_the_code_it_names(tmp_path):
    """A plug-in module named by an index is imported at search time only when the user names it again."""
    marker = tmp_path / "imported.txt"
    code = tmp_path / "code"
    code.mkdir()
    (code / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v01_ball.mp4", "v02_squares.mp4"):
        shutil.copy(REPO / "examples" / "corpus" / name, videos / name)
    shutil.copy(REPO / "examples" / "corpus" / "metadata.json", videos / "metadata.json")
    exe = Path(sys.executable).parent / "mmfuse"  # the installed console script, as users run it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code), str(REPO)]), COLUMNS="200")

    def mmfuse(*args):
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)

    index = tmp_path / "idx"
    r = mmfuse("index", str(videos), "--index", str(index), "--modalities", "meta", "--no-dense",
               "--retriever", "evilmod:Thing")
    assert r.returncode == 0, r.stderr
    assert marker.exists()  # named at index time: imported then
    marker.unlink()

    r = mmfuse("search", "walk", "--index", str(index), "--json")
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert "Traceback" not in r.stderr
    warning = [line for line in r.stderr.splitlines() if "plug-in thing skipped" in line]
    assert len(warning) == 1 and "--retriever evilmod:Thing" in warning[0] and "mmfuse.retrievers" in warning[0]
    hits = json.loads(r.stdout)["hits"]
    assert hits and all(set(h["modalities"]) == {"meta"} for h in hits)

    from mmfuse import Pipeline
    from mmfuse.pipeline import search_index

    res = search_index(index, ["walk"], k=5)
    assert not marker.exists() and [x.name for x in res.runs] == ["meta"]
    assert any("plug-in thing skipped" in w for w in res.warnings)
    assert not marker.exists()

    r = mmfuse("search", "walk", "--index", str(index), "--json", "--retriever", "evilmod:Thing")
    assert r.returncode == 0, r.stderr
    assert marker.exists() and "thing" in json.loads(r.stdout)["hits"][0]["modalities"]
    marker.unlink()
    sys.path.insert(0, str(code))
    try:
        run = Pipeline(index=str(index), retrievers=["evilmod:Thing"]).run(["walk"], k=5)
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("evilmod", None)
    assert marker.exists() and [x.name for x in run.runs] == ["thing"]
