"""The library pieces the CLI stands on: the S-Grid size limits, ``build_reranker`` checking before it loads a model,
output checks, unique row names, and the demo report's grid files (one per video id)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmfuse.errors import InputError, ParameterError
from mmfuse.rerankers import build_reranker
from mmfuse.rerankers.grid import MAX_PIXELS, MAX_SIDE, GridSpec, parse_cell, parse_grid
from mmfuse.utils.files import check_writable, distinct_names, refuse_input_overwrite


@pytest.mark.parametrize("rows, cols, cell", [(2, 2, (20000, 20000)), (8, 8, (4000, 4000)), (1, 1, (8193, 16)),
                                              (4, 4, (1100, 1100)), (1, 8, (1025, 1024))])
def test_grid_size_limits(rows, cols, cell):
    with pytest.raises(ParameterError, match=f"at most {MAX_SIDE} px a side and {MAX_PIXELS} px in all"):
        GridSpec(rows=rows, cols=cols, cell=cell)


def test_grid_sizes_within_the_limits():
    assert GridSpec(rows=1, cols=1, cell=(MAX_SIDE, 16)).size == (MAX_SIDE, 16)
    assert GridSpec(rows=8, cols=8, cell=(512, 512)).size == (4096, 4096)  # exactly MAX_PIXELS
    assert GridSpec(rows=2, cols=2, cell=(224, 224)).size == (448, 448)


@pytest.mark.parametrize("text", ["1_000", "１２", "-5", "12x", "x12", "1x2x3", "", "2.5"])
def test_cell_and_grid_parse_ascii_integers_only(text):
    with pytest.raises(ParameterError):
        parse_cell(text)
    with pytest.raises(ParameterError):
        parse_grid(text)


def test_build_reranker_checks_the_grid_and_subtitles_before_the_model(tmp_path):
    # a model path that does not exist: reaching the backend would be a ModelError, not these
    missing_model = str(tmp_path / "no-model")
    with pytest.raises(ParameterError, match="at most 8192 px a side"):
        build_reranker("transformers", missing_model, cell=20000)
    with pytest.raises(ParameterError, match="did you mean 'scene'"):
        build_reranker("transformers", missing_model, sampling="scenes")
    with pytest.raises(InputError, match="subtitles file does not exist"):
        build_reranker("transformers", missing_model, subtitles=tmp_path / "nope.json")
    with pytest.raises(ParameterError, match="did you mean 'openai'"):
        build_reranker("opneai", "m")
    with pytest.raises(ParameterError, match="unknown backend option"):
        build_reranker("openai", "m", base_url="http://127.0.0.1:9/v1", devcie="cpu")


def test_build_reranker_passes_each_backend_its_own_options(tmp_path):
    pytest.importorskip("httpx")
    rr = build_reranker("openai", "m", base_url="http://127.0.0.1:9/v1", concurrency=3, retries=0, device="cuda",
                        top=5, window=4, step=2, grid="1x2", cell="32x24", subtitles={"v": "hello"})
    assert rr.backend.concurrency == 3 and rr.backend.retries == 0 and rr.backend.base_url == "http://127.0.0.1:9/v1"
    assert (rr.top, rr.window, rr.step) == (5, 4, 2) and rr.spec.size == (64, 24) and rr.subtitles == {"v": "hello"}


def test_refuse_input_overwrite(tmp_path):
    a = tmp_path / "a.trec"
    a.write_text("x")
    (tmp_path / "sub").mkdir()
    os.link(a, tmp_path / "hard.trec")
    (tmp_path / "sym.trec").symlink_to(a)
    for out in (a, tmp_path / "sub" / ".." / "a.trec", tmp_path / "hard.trec", tmp_path / "sym.trec"):
        with pytest.raises(InputError, match="is also an input"):
            refuse_input_overwrite(out, [tmp_path / "b.trec", a], force=False)
        refuse_input_overwrite(out, [a], force=True)
    refuse_input_overwrite(tmp_path / "new.trec", [a])  # a new file cannot be an input
    refuse_input_overwrite("/dev/null", ["/dev/null"])  # devices are written through, never replaced


def test_check_writable(tmp_path):
    check_writable(tmp_path / "f.txt")
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "no" / "f.txt")
    check_writable(tmp_path / "new" / "deeper", folder=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        check_writable(tmp_path / "file", folder=True)
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_distinct_names():
    assert distinct_names(["x/run.trec", "y/run.trec", "c.trec"]) == ["x/run.trec", "y/run.trec", "c.trec"]
    assert distinct_names(["a/x/r.t", "b/x/r.t"]) == ["a/x/r.t", "b/x/r.t"]
    assert distinct_names(["r.t", "./r.t"]) == ["r.t", "r.t#2"]  # the same file twice


def test_demo_report_writes_one_grid_file_per_video_id(tmp_path):
    pytest.importorskip("PIL")
    pytest.importorskip("matplotlib")
    import re

    from mmfuse.app.demo import DemoResult, QueryView
    from mmfuse.app.report import write_report

    ids = ["a b", "a_b", "a/b", "a?b"]  # the same once unsafe characters are replaced
    metrics = {n: {"R@1": 0.5, "nDCG@10": 0.5, "MRR@10": 0.5} for n in ("ocr", "fused")}
    res = DemoResult(corpus=tmp_path, index=tmp_path / "idx", report=tmp_path / "out" / "index.html", n_videos=4,
                     modalities=["ocr"], missing=[], metrics=metrics, singles=["ocr"], best_single="ocr",
                     gain={k: 0.0 for k in metrics["ocr"]}, fusion="rrf", reranked=False,
                     queries=[QueryView("q1", "text", [], {"fused": [(i, 1.0) for i in ids]}, {})], thumbs=4)
    page = write_report(res, {}, tmp_path / "cache").read_text()
    srcs = re.findall(r"<img src='(grids/[^']+)'", page)
    assert len(srcs) == len(set(srcs)) == 4
    assert all((tmp_path / "out" / s).is_file() for s in srcs)
    assert sorted(p.name for p in (tmp_path / "out" / "grids").iterdir()) == sorted(Path(s).name for s in srcs)
