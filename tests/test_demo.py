"""`mmfuse demo` end to end on the sample corpus, and its HTML report checked in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from _pipeline_helpers import CORPUS, demo_cache

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run as a library call (it builds the shared corpus index unless a test before built it)."""
    from mmfuse.app.demo import DemoOptions, run_demo

    if not (CORPUS / "queries.tsv").exists():
        pytest.skip(f"sample corpus missing at {CORPUS}")
    labels = []
    out = tmp_path_factory.mktemp("demo") / "report"
    res = run_demo(DemoOptions(cache=demo_cache(tmp_path_factory), out=out),
                   progress=lambda d, t, label: labels.append((d, t, label)))
    return res, labels


def test_demo_evaluates_each_modality_and_fusion(demo):
    from mmfuse import Qrels

    res, labels = demo
    assert {"ocr", "asr", "meta"} <= set(res.singles) and set(res.metrics) == {*res.singles, "fused"}
    qrels = Qrels.read(CORPUS / "qrels.txt").to_dict()
    # R@1 by hand from the per-query lists (one relevant video per sample query)
    for name in res.metrics:
        hits = [v.lists[name][:1] and v.lists[name][0][0] in qrels[v.qid] for v in res.queries]
        assert res.metrics[name]["R@1"] == pytest.approx(sum(map(bool, hits)) / len(res.queries))
    best = max(res.metrics[s]["nDCG@10"] for s in res.singles)
    assert res.metrics[res.best_single]["nDCG@10"] == best
    assert res.gain["R@1"] == pytest.approx(res.metrics["fused"]["R@1"] - res.metrics[res.best_single]["R@1"])
    # the point of the demo: each query is answered by a different modality, so fusion beats every single one
    assert res.gain["R@1"] >= 0.2 and res.metrics["fused"]["R@1"] >= 0.75
    assert {label.split(":")[0] for _, _, label in labels} >= {"index", "search", "report"}
    from mmfuse.ingest.plan import walk

    assert res.n_videos == len(walk(CORPUS).jobs) and res.report.name == "index.html" and res.report.exists()


def test_demo_lists_missing_models_with_the_flag_that_enables_each(demo):
    res, _ = demo
    by = {m.part: m.enable for m in res.missing}
    assert "--clip-model ViT-B-32 --clip-pretrained openai" in by["visual (CLIP)"] and "--clip-checkpoint" in by["visual (CLIP)"]
    assert "--clap-model" in by["audio (CLAP)"]
    assert "--vlm-base-url URL --vlm-model NAME" in by["VLM reranker"]


def test_cli_demo_reuses_the_index_and_reranks_with_a_vlm_server(demo, tmp_path_factory, capsys, monkeypatch):
    pytest.importorskip("httpx")
    from _fake_openai import FakeOpenAI

    from mmfuse.app.cli import main

    for var in ("MMFUSE_VLM_MODEL", "MMFUSE_VLM_BASE_URL", "MMFUSE_CLIP_MODEL", "MMFUSE_CLAP_MODEL"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path_factory.mktemp("cli") / "demo-report"
    with FakeOpenAI() as srv:
        main(["demo", "--cache", str(demo_cache(tmp_path_factory)), "--out", str(out), "--vlm-base-url", srv.url,
              "--vlm-model", "fake-vlm", "--rerank-top", "3"])
    cap = capsys.readouterr()
    text = re.sub(r"\s+", " ", cap.out)
    assert "Traceback" not in cap.out + cap.err and srv.requests
    assert "(best single)" in text and "gain over" in text and "reranked" in text
    assert "(reused)" in text and "report:" in text and "index.html" in text
    page = (out / "index.html").read_text()
    assert "<tr class='reranked'>" in page and "<tr class='fused'>" in page


def test_cli_demo_bad_corpus_is_one_line(tmp_path, capsys):
    from mmfuse.app.cli import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--corpus", str(tmp_path), "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "queries.tsv: missing" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _browser(args: list[str], url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = _chromium()
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", *args, url],
            capture_output=True, text=True, timeout=timeout)


def test_report_in_headless_chromium(demo, tmp_path):
    if _chromium() is None:
        pytest.skip("chromium not installed: run `bash scripts/setup-system.sh` (apt-get install chromium)")
    from PIL import Image

    res, _ = demo
    report = Path(res.report)
    url = report.resolve().as_uri()
    dom = _browser(["--dump-dom"], url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # the page's own script counted the images that decoded (complete and naturalWidth > 0)
    m = re.search(r'<body[^>]*data-images="(\d+)/(\d+)"', html)
    assert m, "the load handler did not run"
    loaded, total = map(int, m.groups())
    assert total >= 1 + len(res.queries) and loaded == total
    assert re.search(r"<table id=\"results\">.*?<td>fused</td>", html, re.S)
    for name in res.metrics:
        assert f"<td>{name}" in html
    for src in re.findall(r'<img[^>]+src="([^"]+)"', html):
        with Image.open(report.parent / src) as im:
            im.verify()  # a real PNG file where the page points
    shot = tmp_path / "report.png"
    r = _browser([f"--screenshot={shot}", "--window-size=1280,2000"], url)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    import numpy as np

    with Image.open(shot) as im:
        px = np.asarray(im.convert("L"), dtype=np.float64)
    assert px.shape == (2000, 1280) and px.std() > 20  # rendered content, not a blank page
