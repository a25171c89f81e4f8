"""The index end to end on the committed sample corpus: real OCR/ASR/metadata, tiny random CLIP/CLAP,
incremental re-runs, bad files, interrupted runs, model-mixing refusal, locks and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mmfuse.errors import IndexError_, ModelError

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"

pytestmark = pytest.mark.slow


def _queries() -> dict[str, str]:
    return dict(line.rstrip("\n").split("\t", 1) for line in (CORPUS / "queries.tsv").read_text().splitlines() if line.strip())


def _qrels() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in (CORPUS / "qrels.txt").read_text().splitlines():
        if line.strip():
            q, _, d, rel = line.split()
            if int(rel) > 0:
                out.setdefault(q, set()).add(d)
    return out


def _query_modality() -> dict[str, str]:
    return json.loads((CORPUS / "query_modalities.json").read_text())


def _cli(argv, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from mmfuse.app.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, tiny_clip_checkpoint, tiny_clap_dir):
    """The sample corpus indexed once per session with every modality (tiny random CLIP/CLAP)."""
    if not CORPUS.is_dir():
        pytest.skip("examples/corpus is missing")
    from mmfuse.ingest import IndexConfig, index_folder

    path = tmp_path_factory.mktemp("corpus_index") / "idx"
    cfg = IndexConfig(clip_model=tiny_clip_checkpoint["local_dir"], clap_model=tiny_clap_dir, frames_per_segment=2, workers=2)
    calls = []
    summary = index_folder(CORPUS, path, cfg, progress=lambda done, total, label: calls.append((done, total, label)))
    assert calls[-1][:2] == (11, 11) and calls[-1][2].endswith("| 12 segments")
    return {"path": path, "summary": summary, "flags": ["--clip-model", tiny_clip_checkpoint["local_dir"],
                                                      "--clap-model", tiny_clap_dir, "--frames", "2"]}


def test_corpus_indexed_with_every_modality(corpus_index):
    from mmfuse.store.lance import IndexStore

    s = corpus_index["summary"]
    assert s.failed == [] and s.warnings == []
    assert s.modalities == ["visual", "audio", "ocr", "asr", "meta"]
    media = sorted(p.stem for p in CORPUS.iterdir() if p.suffix in (".mp4", ".webm", ".m4a"))
    assert sorted(v for v, _, _ in s.indexed) == media
    store = IndexStore.open(corpus_index["path"])
    specs = store.specs()
    assert {"visual", "audio", "ocr", "asr", "meta", "asr_dense", "meta_dense"} <= set(specs)
    assert specs["visual"]["spec"]["kind"] == "open_clip"
    cols, mat = store.vectors("visual")
    assert mat.shape[1] == 32 and len(cols["segment_id"]) == mat.shape[0] > 0
    # The audio-only file has no frames, so no visual rows, but it does have speech.
    assert "v06_podcast" not in set(cols["video_id"].tolist())
    # The transcript is kept with timestamps (subtitles for the reranker).
    subs = store.subtitles("v01_ball")
    assert subs and all({"start", "end", "text"} <= set(x) for x in subs)
    assert "tomatoes" in " ".join(x["text"] for x in subs).lower()


@pytest.mark.parametrize("modality", ["ocr", "asr", "meta"])
def test_single_modality_queries_hit_at_rank_1(corpus_index, modality):
    from mmfuse.retrievers import AsrRetriever, MetadataRetriever, OcrRetriever
    from mmfuse.store.lance import IndexStore

    cls = {"ocr": OcrRetriever, "asr": AsrRetriever, "meta": MetadataRetriever}[modality]
    qmod, qrels, queries = _query_modality(), _qrels(), _queries()
    mine = {q: queries[q] for q, m in qmod.items() if m == modality}
    assert mine
    run = cls(IndexStore.open(corpus_index["path"])).search(mine, k=5)
    for q in mine:
        hits = run.query(q)
        assert hits and hits[0][0] in qrels[q], (q, mine[q], hits[:3])


def test_embedding_retrievers_search_by_vector(corpus_index):
    # query expansion (HyDE) searches with vectors: the run for the vectors a retriever embeds equals its run for the
    # texts, and only a vector's direction counts
    from mmfuse.retrievers import EmbeddingRetriever, retrievers_for_index
    from mmfuse.store.lance import IndexStore

    rets = [r for r in retrievers_for_index(IndexStore.open(corpus_index["path"]))
            if isinstance(r, EmbeddingRetriever)]
    assert {r.name for r in rets} == {"visual", "audio", "asr_dense", "meta_dense"}
    texts = {"a": "a red triangle grows", "b": "birds singing in the morning"}
    for r in rets:
        by_text = r.search(texts, k=5)
        vectors = r.embed_queries(list(texts.values()))
        by_vector = r.search_embedded(list(texts), 3.0 * vectors, k=5)
        for q in texts:
            assert [d for d, _ in by_vector.query(q)] == [d for d, _ in by_text.query(q)], (r.name, q)
            assert [s for _, s in by_vector.query(q)] == pytest.approx([s for _, s in by_text.query(q)], abs=1e-6)


def test_fused_search_over_text_modalities(corpus_index):
    from mmfuse.pipeline import search_index

    qmod, qrels, queries = _query_modality(), _qrels(), _queries()
    mine = {q: queries[q] for q, m in qmod.items() if m in ("ocr", "asr", "ocr+asr")}
    # RRF: only ranks matter, so a weak partial n-gram match at the top of the OCR list cannot outvote
    # the transcript's exact hit (score-normalizing methods see every list's top as equally strong).
    res = search_index(corpus_index["path"], mine, k=3, modalities=["ocr", "asr"], fusion="rrf")
    assert {r.name for r in res.runs} == {"ocr", "asr", "asr_dense"}
    for q in mine:
        assert res.fused.query(q)[0][0] in qrels[q], (q, mine[q], res.fused.query(q))
    # Evidence survives: the best segment and its time span per hit.
    ocr = next(r for r in res.runs if r.name == "ocr")
    assert {"segment_id", "start", "end", "modality"} <= set(ocr.evidence)


def test_second_index_run_does_no_work(corpus_index, capsys):
    from mmfuse.store.lance import IndexStore

    path = corpus_index["path"]
    names = IndexStore.open(path).table_names()
    before = IndexStore.open(path).version_stamp(names)
    code, out, err = _cli(["index", str(CORPUS), "--index", str(path), "--workers", "2", *corpus_index["flags"]], capsys)
    assert code == 0, err
    assert "skipped" in out and " 11 " in out.split("skipped")[1].splitlines()[0]
    assert IndexStore.open(path).version_stamp(names) == before  # not a single commit


def test_cli_search_json_and_per_modality(corpus_index, capsys):
    code, out, err = _cli(["search", "lighthouse", "--index", str(corpus_index["path"]), "--k", "3", "--json",
                           "--per-modality", "--modalities", "ocr,asr,meta", "--fusion", "rrf"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    top = doc["hits"][0]
    assert top["video_id"] == "v01_ball" and top["rank"] == 1
    assert top["modalities"]["ocr"]["rank"] == 1 and top["modalities"]["ocr"]["segment_id"].startswith("v01_ball#")
    assert doc["per_modality"]["ocr"][0]["video_id"] == "v01_ball"
    code, out, err = _cli(["search", "grandmother grows tomatoes", "--index", str(corpus_index["path"]), "--per-modality"], capsys)
    assert code == 0, err
    assert "v01_ball" in out and "asr" in out and "visual" in out  # all modalities, tables printed


def test_mixing_models_in_one_column_is_refused(corpus_index, tiny_clip_checkpoint):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.store.lance import IndexStore

    path = corpus_index["path"]
    names = IndexStore.open(path).table_names()
    before = IndexStore.open(path).version_stamp(names)
    cfg = IndexConfig(modalities=["visual"], clip_model=tiny_clip_checkpoint["model"],
                      clip_checkpoint=tiny_clip_checkpoint["checkpoint"])
    with pytest.raises(ModelError) as e:
        index_folder(CORPUS, path, cfg)
    msg = str(e.value)
    assert "'visual'" in msg and "local-dir:" in msg and "tiny_clip.pt" in msg
    assert IndexStore.open(path).version_stamp(names) == before


def _bad_folder(root: Path) -> Path:
    d = root / "videos"
    d.mkdir()
    shutil.copy(CORPUS / "v01_ball.mp4", d / "good_ball.mp4")
    shutil.copy(CORPUS / "v02_squares.mp4", d / "good_squares.mp4")
    (d / "zero.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes((CORPUS / "v03_triangle.mp4").read_bytes()[:2000])
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    shutil.copy(CORPUS / "v06_podcast.m4a", d / "audio_in_mp4.mp4")  # an MP4 container without a video stream
    os.symlink(d / "does-not-exist.mp4", d / "broken_link.mp4")
    with open(os.path.join(os.fsencode(d), b"bad\xffname.mp4"), "wb") as fh:
        fh.write((CORPUS / "v04_stripes.mp4").read_bytes())
    (d / "readme.txt").write_text("ignored: not a media extension")
    return d


def test_bad_files_are_reported_and_skipped(tmp_path, capsys, tiny_clip_checkpoint):
    videos = _bad_folder(tmp_path)
    index = tmp_path / "idx"
    # A private copy of the CLIP dir, deleted after indexing, to check search's missing-model warning.
    clip_dir = tmp_path / "clip"
    shutil.copytree(tiny_clip_checkpoint["local_dir"], clip_dir)
    code, out, err = _cli(["index", str(videos), "--index", str(index), "--modalities", "ocr,visual",
                           "--clip-model", str(clip_dir), "--frames", "1"], capsys)
    assert code == 1
    text = " ".join(out.split())
    for name, reason in [("zero.mp4", "empty file"), ("truncated.mp4", ""), ("notes.mp4", ""),
                         ("audio_in_mp4.mp4", "no video stream"), ("broken_link.mp4", "no such file"),
                         ("bad\\xffname.mp4", "file name is not valid UTF-8")]:
        assert name in text, (name, out)
        if reason:
            assert f"{name}: {reason}" in text, (name, reason, out)
    assert "readme.txt" not in text
    from mmfuse.ingest import IndexConfig, index_folder

    summary = index_folder(videos, index, IndexConfig(modalities=["ocr", "visual"], clip_model=str(clip_dir), frames_per_segment=1))
    assert sorted(summary.skipped) == [("good_ball.mp4", "unchanged"), ("good_squares.mp4", "unchanged")]
    assert len(summary.failed) == 6 and all(reason for _, reason in summary.failed)
    shutil.rmtree(clip_dir)
    code, out, err = _cli(["search", "volcano", "--index", str(index), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["hits"][0]["video_id"] == "good_squares"
    warnings = [w for w in err.splitlines() if "warning" in w]
    assert len(warnings) == 1 and "visual" in warnings[0] and "--clip-checkpoint" in warnings[0]


def test_interrupted_run_leaves_no_half_written_video(tmp_path, monkeypatch):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.retrievers import OcrRetriever
    from mmfuse.store.lance import IndexStore

    videos = tmp_path / "v"
    videos.mkdir()
    for name in ("v01_ball.mp4", "v02_squares.mp4"):
        shutil.copy(CORPUS / name, videos / name)
    index = tmp_path / "idx"
    cfg = IndexConfig(modalities=["ocr"], frames_per_segment=1)
    real_write = IndexStore.write_videos

    def crash_before_visible(self, recs, specs=None):
        real_table = self._table

        def table(name, schema=None):
            t = real_table(name, schema)
            if name != "videos":
                return t

            class Crash:  # every other table is written; the process dies before the videos commit
                def __getattr__(self, attr):
                    return getattr(t, attr)

                def add(self, *a, **k):
                    raise KeyboardInterrupt

            return Crash()

        self._table = table
        try:
            real_write(self, recs, specs)
        finally:
            del self._table

    monkeypatch.setattr(IndexStore, "write_videos", crash_before_visible)
    with pytest.raises(KeyboardInterrupt):
        index_folder(videos, index, cfg)
    monkeypatch.undo()
    store = IndexStore.open(index)
    assert store.stats()["videos"] == 0 and store.stats()["segments"] == 0
    assert store.segment_count() > 0  # the orphan rows are there, but invisible
    assert OcrRetriever(store).search(["volcano"], k=5).query("0") == []
    summary = index_folder(videos, index, cfg)  # resumes: cleans the orphans and indexes both
    assert sorted(v for v, _, _ in summary.indexed) == ["v01_ball", "v02_squares"]
    store = IndexStore.open(index)
    assert store.segment_count() == store.stats()["segments"] == 2
    assert OcrRetriever(store).search(["volcano"], k=5).query("0")[0][0] == "v02_squares"


def test_changed_file_is_reindexed(tmp_path):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.retrievers import OcrRetriever
    from mmfuse.store.lance import IndexStore

    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(CORPUS / "v01_ball.mp4", videos / "clip.mp4")
    index = tmp_path / "idx"
    cfg = IndexConfig(modalities=["ocr"], frames_per_segment=1)
    index_folder(videos, index, cfg)
    shutil.copy(CORPUS / "v02_squares.mp4", videos / "clip.mp4")  # same name, new content
    summary = index_folder(videos, index, cfg)
    assert [v for v, _, _ in summary.indexed] == ["clip"]
    store = IndexStore.open(index)
    assert store.stats()["videos"] == 1 and store.segment_count() == 1
    assert OcrRetriever(store).search(["volcano", "lighthouse"], k=5).query("1") == []
    # Editing the sidecar re-indexes that video; an untouched sidecar entry does not.
    cfg = IndexConfig(modalities=["ocr", "meta"], frames_per_segment=1, dense_text=False)
    (videos / "metadata.json").write_text(json.dumps({"clip": {"title": "Volcano documentary"}}))
    assert [v for v, _, _ in index_folder(videos, index, cfg).indexed] == ["clip"]
    assert index_folder(videos, index, cfg).indexed == []
    (videos / "metadata.json").write_text(json.dumps({"clip": {"title": "Lava and ash"}}))
    assert [v for v, _, _ in index_folder(videos, index, cfg).indexed] == ["clip"]
    from mmfuse.retrievers import MetadataRetriever

    assert MetadataRetriever(IndexStore.open(index)).search(["ash"], k=5).query("0")[0][0] == "clip"
    (videos / "clip.mp4").unlink()
    assert index_folder(videos, index, cfg).removed == ["clip"]


def test_locked_and_missing_index(tmp_path, capsys):
    from mmfuse.store.lance import IndexStore

    with IndexStore.create(tmp_path / "idx"):
        with pytest.raises(IndexError_, match="is locked by another writer"):
            IndexStore.create(tmp_path / "idx")
        code, out, err = _cli(["index", str(CORPUS), "--index", str(tmp_path / "idx"), "--modalities", "ocr"], capsys)
        assert code == 2 and "locked" in err
    IndexStore.create(tmp_path / "idx").close()  # released
    code, out, err = _cli(["search", "x", "--index", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err and "mmfuse index" in err
    code, out, err = _cli(["index", str(tmp_path / "no-videos"), "--index", str(tmp_path / "i2")], capsys)
    assert code == 2 and "does not exist" in err
