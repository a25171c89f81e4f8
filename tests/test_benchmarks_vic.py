"""The ViC release's folder layout, read as it is: ``Similarity_Matrices/<Model>_<dataset>.npy`` beside
``Groud_Truth/descs_ret_test_<dataset>.csv``, one dataset per suffix present in both; the flat layout still works.

The release tree is built here, small, in the release's own names and CSV headers (MSR-VTT's ``key,vid_key,video_id,
sentence``, DiDeMo's ``video_id,sentence``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmfuse
from mmfuse.benchmarks.datasets import load_dataset, load_datasets, release_datasets
from mmfuse.errors import InputError, ParameterError

MSR_VIDS = ["video9770", "video9771", "video9772", "video9773", "video9774"]
DIDEMO_VIDS = ["26292851@N04_42", "51035693821@N01_70", "8716@N03_11", "1234@N05_99"]


def _matrices(folder: Path, dataset: str, vids: list[str], models: tuple[str, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = np.eye(len(vids))
    for i, m in enumerate(models):
        np.save(folder / f"{m}_{dataset}.npy", (rng.normal(size=gt.shape) + (1 + i) * gt).astype(np.float32))


def _release(root: Path) -> Path:
    sims, truth = root / "Similarity_Matrices", root / "Groud_Truth"
    sims.mkdir(parents=True)
    truth.mkdir()
    (root / "Scripts").mkdir()
    (root / "README.md").write_text("# ViC\n")
    _matrices(sims, "msrvtt", MSR_VIDS, ("clip4clip", "GRAM", "InternVideo2", "VAST"), seed=1)
    _matrices(sims, "didemo", DIDEMO_VIDS, ("GRAM", "VAST"), seed=2)
    _matrices(sims, "activitynet", ["a", "b", "c"], ("GRAM",), seed=3)  # matrices without a CSV: not a dataset
    (truth / "descs_ret_test_msrvtt.csv").write_text("key,vid_key,video_id,sentence\n" + "".join(
        f"ret{i},msr{v[5:]},{v},caption {i}\n" for i, v in enumerate(MSR_VIDS)))
    (truth / "descs_ret_test_didemo.csv").write_text("video_id,sentence\n" + "".join(
        f"{v},someone does thing {i}\n" for i, v in enumerate(DIDEMO_VIDS)))
    (truth / "descs_ret_test_vatex.csv").write_text("video,video_id,sentence,subtitle\nx.mkv,x,s,t\n")  # no matrices
    return root


@pytest.fixture()
def release(tmp_path):
    return _release(tmp_path / "ViC")


def _flat(release: Path, dataset: str, dest: Path) -> Path:
    """The flat layout of one dataset (as in ../shared/data/msrvtt-1ka): its matrices and CSV in one folder."""
    dest.mkdir()
    for f in (release / "Similarity_Matrices").glob(f"*_{dataset}.npy"):
        shutil.copy(f, dest / f.name)
    shutil.copy(release / "Groud_Truth" / f"descs_ret_test_{dataset}.csv", dest)
    return dest


def _same(a, b) -> None:
    assert a.retrievers == b.retrievers
    assert a.qrels.to_dict() == b.qrels.to_dict()
    for name in a.retrievers:
        assert a.runs[name].to_dict() == b.runs[name].to_dict()


@pytest.mark.parametrize("where", ["root", "Similarity_Matrices"])
def test_release_gives_one_dataset_per_suffix_with_matrices_and_csv(release, tmp_path, where):
    path = release if where == "root" else release / "Similarity_Matrices"
    assert sorted(release_datasets(path)) == ["didemo", "msrvtt"]
    got = load_datasets(path)
    assert [d.name for d in got] == ["didemo", "msrvtt"]
    msr = got[1]
    assert msr.retrievers == ["GRAM", "InternVideo2", "VAST", "clip4clip"]
    assert msr.n_queries == 5 and msr.qrels["ret3"] == {"video9773": 1}  # the CSV's key column names the queries
    assert got[0].retrievers == ["GRAM", "VAST"] and got[0].qrels["q1"] == {"51035693821@N01_70": 1}
    # the same numbers as the flat layout of each dataset
    _same(msr, load_dataset(_flat(release, "msrvtt", tmp_path / f"msrvtt-{where}")))
    _same(got[0], load_dataset(_flat(release, "didemo", tmp_path / f"didemo-{where}")))


def test_release_names_pick_datasets(release):
    assert [d.name for d in load_datasets(release, names=["msrvtt"])] == ["msrvtt"]
    assert load_dataset(release, name="didemo").retrievers == ["GRAM", "VAST"]
    v2t = load_dataset(release, name="msrvtt", mode="v2t", retrievers=["VAST"])
    assert v2t.retrievers == ["VAST"] and v2t.qrels["video9770"] == {"ret0": 1}
    with pytest.raises(ParameterError, match="holds the datasets didemo, msrvtt; name one"):
        load_dataset(release)
    with pytest.raises(ParameterError, match=r"unknown dataset 'msrvt' \(did you mean 'msrvtt'\?\)"):
        load_datasets(release, names=["msrvt"])
    with pytest.raises(InputError, match=r"unknown retriever in .*\(dataset didemo\) 'clip4clip'"):
        load_datasets(release, retrievers=["clip4clip"])


def test_release_layout_errors_name_the_folder(tmp_path, release):
    shutil.rmtree(release / "Groud_Truth")
    with pytest.raises(InputError, match="has Similarity_Matrices/ but no Groud_Truth/"):
        load_datasets(release)
    other = _release(tmp_path / "other")
    for f in (other / "Groud_Truth").glob("*.csv"):
        f.rename(f.with_name(f.stem + "_old.txt"))
    with pytest.raises(InputError, match="no dataset has both"):
        load_datasets(other)
    flat = tmp_path / "flat"
    flat.mkdir()
    np.save(flat / "A_x.npy", np.eye(2))
    (flat / "q.csv").write_text("video_id\nv1\nv2\n")
    with pytest.raises(ParameterError, match="pick among the datasets of a ViC release"):
        load_datasets([flat], names=["x"])
    assert [d.name for d in load_datasets([flat])] == ["flat"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("mmfuse")
    exe = [str(script)] if script.exists() else [shutil.which("mmfuse") or "mmfuse"]
    root = str(Path(mmfuse.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_bench_reads_the_release_as_it_is(release, tmp_path):
    res = _cli("bench", str(release), "--subsets", "all", "--methods", "combsum,rrf", "--json", "out.json",
               cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert set(json.loads((tmp_path / "out.json").read_text())["datasets"]) == {"didemo", "msrvtt"}
    res = _cli("bench", str(release / "Similarity_Matrices"), "--dataset", "msrvtt", "--subsets", "all",
               "--methods", "combsum", "--json", "one.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "one.json").read_text())["datasets"]
    assert list(data) == ["msrvtt"] and data["msrvtt"]["n_queries"] == 5
    res = _cli("bench", str(release), "--dataset", "msrvt", "--json", "bad.json", cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "did you mean 'msrvtt'" in lines[0], res.stderr
    assert not (tmp_path / "bad.json").exists()
    # an output that is one of the release's files is refused before anything runs
    csv = release / "Groud_Truth" / "descs_ret_test_msrvtt.csv"
    before = csv.read_bytes()
    res = _cli("bench", str(release), "--report", str(csv), cwd=tmp_path)
    assert res.returncode == 2 and "is also an input" in res.stderr and csv.read_bytes() == before
