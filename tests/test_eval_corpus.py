"""The committed evaluation corpus (examples/eval-corpus) is what examples/make_eval_corpus.py describes: its design
check passes, the query, judgement and metadata files match the generator's tables, and every clip has the streams,
duration and geometry its manifest records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "eval-corpus"
GENERATOR = REPO / "examples" / "make_eval_corpus.py"


@pytest.fixture(scope="module")
def gen():
    if not (CORPUS / "manifest.json").exists():
        pytest.skip(f"evaluation corpus missing at {CORPUS} (run examples/make_eval_corpus.py)")
    spec = importlib.util.spec_from_file_location("make_eval_corpus", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_eval_corpus"] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def test_design_check_passes(gen):
    info = gen.check_design()
    assert len(gen.CLIPS) >= 40 and len(gen.QUERIES) >= 80
    assert json.loads((CORPUS / "query_design.json").read_text(encoding="utf-8")) == json.loads(json.dumps(info))


def test_text_files_match_the_generator(gen):
    queries = [line.split("\t") for line in (CORPUS / "queries.tsv").read_text(encoding="utf-8").splitlines()]
    assert queries == [[q.qid, q.text] for q in gen.QUERIES]
    qrels = [line.split() for line in (CORPUS / "qrels.txt").read_text(encoding="utf-8").splitlines()]
    assert qrels == [[q.qid, "0", q.rel, "1"] for q in gen.QUERIES]
    mods = json.loads((CORPUS / "query_modalities.json").read_text(encoding="utf-8"))
    assert mods == {q.qid: q.mods for q in gen.QUERIES}
    meta = json.loads((CORPUS / "metadata.json").read_text(encoding="utf-8"))
    assert {m["video_id"]: (m["title"], m["description"], tuple(m["tags"])) for m in meta} == {
        c.id: (c.meta.title, c.meta.description, c.meta.tags) for c in gen.CLIPS if c.meta}
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    assert [m["video_id"] for m in manifest] == [c.id for c in gen.CLIPS]
    for m, c in zip(manifest, gen.CLIPS):
        assert [x["text"] for x in m["screen_text"]] == [x.text for x in c.caps]
        assert (m["speech"] or {}).get("text") == (c.speech.text if c.speech else None)
    files = {p.name for p in CORPUS.iterdir() if p.suffix in (".mp4", ".webm", ".mkv", ".m4a")}
    assert files == {m["file"] for m in manifest}


@pytest.mark.slow
def test_clips_match_the_manifest(gen):
    pytest.importorskip("av")
    from mmfuse.ingest.probe import probe

    for m in json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8")):
        info = probe(CORPUS / m["file"])
        assert (info.has_video, info.has_audio) == (m["has_video"], m["has_audio"]), m["file"]
        assert info.duration == pytest.approx(m["duration"], abs=0.06), m["file"]
        assert info.rotation == m["rotation"] % 360, m["file"]
        if m["has_video"]:
            assert [info.width, info.height] == m["display_size"], m["file"]
        for cap in m["screen_text"]:
            assert 0 <= cap["start"] < cap["end"] <= m["duration"] + 1e-9, (m["file"], cap["text"])
