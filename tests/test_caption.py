"""The caption modality the way users run it: ``mmfuse index --modalities caption`` against a loopback
OpenAI-compatible server whose "model" names the colour of the images it is sent (so a caption is right only when the
client sent that segment's frames), then ``mmfuse search``; incremental runs, a changed model or prompt, a kill in the
middle of a run, server failures, and a tiny local vision-language model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from _fake_openai import COLOURS, FakeOpenAI, colour_caption

pytestmark = pytest.mark.slow

MMFUSE = str(Path(sys.executable).parent / "mmfuse")
CORPUS = Path(__file__).resolve().parents[1] / "examples" / "corpus"
# clip -> the colour of each of its 1-second segments
CLIPS = {"red": ["red", "red", "red"], "blue": ["blue", "blue", "blue"], "purple": ["purple", "purple", "purple"],
         "sunset": ["yellow", "yellow", "red"]}


def write_clips(folder: Path, clips: dict[str, list[str]] = CLIPS) -> Path:
    """One mp4 per clip: 8 frames a second of each segment's colour, with a small square moving along a row of its
    own (so no two segments look the same)."""
    from mmfuse.ingest.synth import write_media

    folder.mkdir(parents=True, exist_ok=True)
    for name, colours in clips.items():
        frames = []
        for k, c in enumerate(colours):
            for i in range(8):
                img = np.empty((48, 64, 3), np.uint8)
                img[:] = COLOURS[c]
                img[2 + 3 * k:6 + 3 * k, 4 + 4 * i:10 + 4 * i] = 128
                frames.append(img)
        write_media(folder / f"{name}.mp4", frames, size=(64, 48), fps=8)
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("caption-clips") / "videos")


@pytest.fixture(scope="module")
def server():
    with FakeOpenAI(vision=colour_caption, lifetime=1800) as srv:
        yield srv


@pytest.fixture()
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MMFUSE_LLM_", "MMFUSE_VLM_", "OPENAI_"))}
    e["MMFUSE_CACHE_DIR"] = str(tmp_path / "cache-home")  # nothing lands in the real ~/.cache
    return e


def _cli(env, *args, code=0):
    p = subprocess.run([MMFUSE, *map(str, args)], capture_output=True, text=True, timeout=600,
                       env=dict(env, COLUMNS="200"))
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == code, p.stdout + p.stderr
    return p


def _index(env, videos, index, server, *extra, code=0):
    return _cli(env, "index", videos, "--index", index, "--modalities", "caption", "--window", "1", "--frames", "2",
                "--vlm-base-url", server.url, *extra, code=code)


def _captions(index) -> dict[str, str]:
    from mmfuse.store.lance import IndexStore

    seg = IndexStore.open(index).segments()
    return dict(zip(seg["segment_id"].tolist(), seg["caption_text"].tolist()))


def _image_prompts(server, since: int) -> list[dict]:
    return [b for b in server.requests[since:] if any(p.get("type") == "image_url" for p in b["messages"][-1]["content"])]


def test_captions_are_indexed_with_their_spec_and_found_by_search(videos, server, env, tmp_path):
    index = tmp_path / "idx"
    before = len(server.requests)
    p = _index(env, videos, index, server, "--vlm-model", "fake-vlm")
    assert re.search(r"captions[\s│]+12[\s│]+12 model call\(s\) in [0-9.]+ s, 0 from the cache, 0 unusable", p.stdout), p.stdout
    sent = _image_prompts(server, before)
    assert len(sent) == 12 and {b["model"] for b in sent} == {"fake-vlm"}
    # one image per segment (its 2 frames tiled side by side: 2 x 336 px wide, the 64x48 frames' aspect kept)
    from PIL import Image
    import base64
    import io

    for b in sent:
        urls = [p["image_url"]["url"] for p in b["messages"][-1]["content"] if p.get("type") == "image_url"]
        assert len(urls) == 1
        assert Image.open(io.BytesIO(base64.b64decode(urls[0].split(",", 1)[1]))).size == (672, 252)
    template = resources.files("mmfuse.ingest").joinpath("templates", "caption.txt").read_text("utf-8")
    text = "".join(p.get("text", "") for p in sent[0]["messages"][-1]["content"])
    assert text == template.format(frames=2, seconds="1", layout="tiled left to right, top to bottom in one image").strip()

    # each segment's caption names the colour of that segment's own frames
    caps = _captions(index)
    assert sorted(caps) == sorted(f"{v}#{i}" for v, cs in CLIPS.items() for i in range(len(cs)))
    for seg, cap in caps.items():
        v, i = seg.split("#")
        assert f"plain {CLIPS[v][int(i)]} screen" in cap, (seg, cap)

    from mmfuse.store.lance import IndexStore

    specs = IndexStore.open(index).specs()
    assert specs["caption"]["spec"] == {
        "kind": "vlm-caption", "model": "fake-vlm", "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "input": "grid", "cell": 336, "max_tokens": 160}
    assert specs["caption_dense"]["spec"]["model"] == "bundled:all-MiniLM-L6-v2"

    # "yellow" is only in a caption (and only of the sunset clip's first segments): rank 1 through `mmfuse search`
    doc = json.loads(_cli(env, "search", "yellow screen", "--index", index, "--json").stdout)
    top = doc["hits"][0]
    assert top["video_id"] == "sunset"
    assert top["modalities"]["caption"]["rank"] == 1 and "yellow" in top["modalities"]["caption"]["text"]
    assert top["modalities"]["caption"]["segment_id"] in ("sunset#0", "sunset#1")

    # a second run captions nothing and asks the server nothing
    before = len(server.requests)
    p = _index(env, videos, index, server, "--vlm-model", "fake-vlm")
    assert re.search(r"skipped[\s│]+4[\s│]+4 unchanged", p.stdout) and len(server.requests) == before

    # another model, or another prompt, is refused before anything is asked or written: never a mix
    p = _index(env, videos, index, server, "--vlm-model", "other-vlm", code=2)
    assert p.stderr.count("\n") == 1 and "modality 'caption'" in p.stderr and "refusing to mix" in p.stderr
    mine = tmp_path / "prompt.txt"
    mine.write_text("Describe these {frames} frames in one sentence.")
    p = _index(env, videos, index, server, "--vlm-model", "fake-vlm", "--caption-template", mine, code=2)
    assert "refusing to mix" in p.stderr and len(server.requests) == before
    assert _captions(index) == caps


def test_mistakes_are_one_line_and_create_nothing(videos, server, env, tmp_path):
    index = tmp_path / "idx"
    p = _cli(env, "index", videos, "--index", index, "--modalities", "caption", code=2)
    assert "needs a vision-language model" in p.stderr and "--vlm-base-url" in p.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("Describe {clip}.")
    p = _index(env, videos, index, server, "--vlm-model", "m", "--caption-template", bad, code=2)
    assert "unknown placeholder {clip}" in p.stderr and str(bad) in p.stderr
    p = _index(env, videos, index, server, "--vlm-model", "m", "--caption-template", tmp_path / "nope.txt", code=2)
    assert "does not exist" in p.stderr
    p = _index(env, videos, index, server, "--vlm-model", "m", "--caption-input", "grids", code=2)
    assert "--caption-input" in p.stderr
    assert not index.exists()
    # the environment names the server and the model, as for the reranker
    e = dict(env, MMFUSE_VLM_BASE_URL=server.url, MMFUSE_VLM_MODEL="env-vlm")
    one = write_clips(tmp_path / "one", {"blue": ["blue"]})
    _cli(e, "index", one, "--index", index, "--modalities", "caption", "--frames", "1")
    assert list(_captions(index)) == ["blue#0"] and "plain blue screen" in _captions(index)["blue#0"]
    from mmfuse.store.lance import IndexStore

    assert IndexStore.open(index).specs()["caption"]["spec"]["model"] == "env-vlm"


def test_adding_captions_keeps_what_the_index_holds(server, tmp_path):
    # OCR first, then OCR and captions: the second run only captions; the OCR text stays searchable
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.retrievers import OcrRetriever
    from mmfuse.store.lance import IndexStore

    videos = tmp_path / "v"
    videos.mkdir()
    for name in ("v01_ball.mp4", "v02_squares.mp4"):
        shutil.copy(CORPUS / name, videos / name)
    index = tmp_path / "idx"
    first = index_folder(videos, index, IndexConfig(modalities=["ocr"], frames_per_segment=1))
    assert len(first.indexed) == 2
    ocr_before = IndexStore.open(index).segments()["ocr_text"].tolist()
    assert "VOLCANO" in " ".join(ocr_before)
    before = len(server.requests)
    vlm = dict(vlm_base_url=server.url, vlm_model="fake-vlm", vlm_cache=str(tmp_path / "cache"))
    second = index_folder(videos, index, IndexConfig(modalities=["ocr", "caption"], frames_per_segment=1, **vlm))
    assert sorted(v for v, *_ in second.indexed) == ["v01_ball", "v02_squares"]
    assert "ocr" not in second.timings and second.timings["caption"] > 0  # the OCR model loaded, and read nothing
    assert len(_image_prompts(server, before)) == second.segments == 2
    store = IndexStore.open(index)
    seg = store.segments()
    assert seg["ocr_text"].tolist() == ocr_before and all(seg["caption_text"])
    assert {r["modalities"] for r in store.video_states().values()} == {"caption,ocr"}
    assert OcrRetriever(store).search(["volcano"], k=5).query("0")[0][0] == "v02_squares"
    # captions alone, with a new file: the others hold captions already, the new one gets captions only
    shutil.copy(CORPUS / "v11_two_parts.mp4", videos / "v11_two_parts.mp4")
    third = index_folder(videos, index, IndexConfig(modalities=["caption"], frames_per_segment=1, **vlm))
    assert [v for v, *_ in third.indexed] == ["v11_two_parts"] and len(third.skipped) == 2
    states = IndexStore.open(index).video_states()
    assert states["v11_two_parts"]["modalities"] == "caption" and states["v01_ball"]["modalities"] == "caption,ocr"
    # another window cannot keep the other modalities: the files are refused, their entries left as they were
    fourth = index_folder(videos, index, IndexConfig(modalities=["caption", "meta"], window=2.0, frames_per_segment=1,
                                                     **vlm))
    assert fourth.indexed == [] and len(fourth.failed) == 3 and "--window" in fourth.failed[0][1]
    assert IndexStore.open(index).segments()["ocr_text"].tolist()[:2] == ocr_before


def test_a_killed_run_resumes_without_asking_again(server, tmp_path, monkeypatch):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.llm.http import OpenAIChat
    from mmfuse.store.lance import IndexStore

    clips = {"a": ["red", "blue", "red"], "long": ["purple", "green", "yellow", "white", "blue"] * 2}
    videos = write_clips(tmp_path / "v", clips)
    # one request at a time: segments are captioned 4 at a time (a batch), each batch's answers kept as it completes
    cfg = IndexConfig(modalities=["caption"], window=1.0, frames_per_segment=2, vlm_base_url=server.url,
                      vlm_model="fake-vlm", vlm_cache=str(tmp_path / "cache"), vlm_concurrency=1, batch_size=1,
                      batch_seconds=0, dense_text=False)
    real, answered = OpenAIChat.chat, []

    def chat(self, parts, max_tokens, temperature=0.0, **extra):
        if len(answered) == 8:  # the process dies in the second batch of the long file (a: 3, long: 4 + 1)
            raise KeyboardInterrupt
        answered.append(1)
        return real(self, parts, max_tokens, temperature, **extra)

    monkeypatch.setattr(OpenAIChat, "chat", chat)
    before = len(server.requests)
    with pytest.raises(KeyboardInterrupt):
        index_folder(videos, tmp_path / "idx", cfg)
    monkeypatch.undo()
    assert len(_image_prompts(server, before)) == 8
    assert sorted(IndexStore.open(tmp_path / "idx").video_states()) == ["a"]  # committed when it finished
    before = len(server.requests)
    summary = index_folder(videos, tmp_path / "idx", cfg)
    # a is current; of the long file, the first batch (committed to the cache) is not asked again; the segment
    # answered in the batch the kill interrupted is
    assert [v for v, *_ in summary.indexed] == ["long"] and summary.skipped == [("a.mp4", "unchanged")]
    assert len(_image_prompts(server, before)) == 6
    assert summary.captions.calls == 6 and summary.captions.cache_hits == 4
    caps = _captions(tmp_path / "idx")
    assert len(caps) == 13
    for seg, cap in caps.items():
        v, i = seg.split("#")
        assert f"plain {clips[v][int(i)]} screen" in cap, (seg, cap)


def test_server_failures_fail_the_file_and_lose_nothing(tmp_path):
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.store.lance import IndexStore

    videos = write_clips(tmp_path / "v", {"red": ["red", "red"], "blue": ["blue", "blue"], "green": ["green"]})
    cfg = dict(modalities=["caption"], window=1.0, frames_per_segment=1, vlm_model="fake-vlm", vlm_concurrency=1,
               vlm_retries=1, vlm_cache=str(tmp_path / "cache"), dense_text=False)
    # files in name order, one request at a time: both attempts for blue's first segment fail (HTTP 500), green's
    # answer is a refusal (stored as no caption)
    script = ["http500", "http500", "good", "garbage", "good", "good"]
    with FakeOpenAI(vision=colour_caption, script=script) as srv:
        s = index_folder(videos, tmp_path / "idx", IndexConfig(vlm_base_url=srv.url, **cfg))
        assert [f for f, _ in s.failed] == ["blue.mp4"]
        assert "blue#0" in s.failed[0][1] and "HTTP 500 after 2 attempt(s)" in s.failed[0][1]
        assert sorted(v for v, *_ in s.indexed) == ["green", "red"]
        assert s.captions.unusable == 1 and s.captions.calls == 3
        assert _captions(tmp_path / "idx")["green#0"] == ""
        # the server is back: only blue is captioned, and its second segment (answered before) is not asked again
        before = len(srv.requests)
        s = index_folder(videos, tmp_path / "idx", IndexConfig(vlm_base_url=srv.url, **cfg))
        assert [v for v, *_ in s.indexed] == ["blue"] and len(srv.requests) == before + 1
    with FakeOpenAI(vision=colour_caption, default="slow", slow_seconds=3) as srv:
        one = write_clips(tmp_path / "slow", {"red": ["red"]})
        s = index_folder(one, tmp_path / "idx2", IndexConfig(vlm_base_url=srv.url, vlm_timeout=0.5,
                                                             **dict(cfg, vlm_retries=0)))
        assert s.failed and "timed out after 1 attempt(s)" in s.failed[0][1]
    assert IndexStore.open(tmp_path / "idx").stats()["videos"] == 3


def test_a_local_vision_language_model_captions(tiny_vlm_dir, tmp_path):
    from mmfuse.encoders.base import weights_fingerprint
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.store.lance import IndexStore

    videos = write_clips(tmp_path / "v", {"red": ["red", "blue"]})
    cfg = IndexConfig(modalities=["caption"], window=1.0, frames_per_segment=1, vlm_model=str(tiny_vlm_dir),
                      caption_max_tokens=6, caption_cell=32, vlm_cache=None, dense_text=False)
    s = index_folder(videos, tmp_path / "idx", cfg)
    assert s.failed == [] and s.captions.calls == 2 and s.captions.completion_tokens > 0
    spec = IndexStore.open(tmp_path / "idx").specs()["caption"]["spec"]
    assert spec["model"] == str(tiny_vlm_dir) and spec["weights"] == weights_fingerprint(tiny_vlm_dir)
    assert spec["cell"] == 32 and spec["max_tokens"] == 6
    # random weights write random words; what matters is that each segment has its own answer, stored as one line
    assert all("\n" not in c for c in _captions(tmp_path / "idx").values())


def test_captions_from_a_config_file(videos, server, env, tmp_path):
    """``[retrievers.caption]`` in the pipeline config stands for the --vlm-* flags, ``mmfuse index --config``; the
    built-in retrievers the file turns off are not indexed."""
    cfg = tmp_path / "mmfuse.toml"
    off = "".join(f"[retrievers.{m}]\nenabled = false\n\n" for m in ("visual", "audio", "ocr", "asr", "meta"))
    cfg.write_text(f'''[index]
window = 1.0
frames_per_segment = 2

{off}
[retrievers.caption]
model = "cfg-vlm"
base_url = "{server.url}"
dense = false
''')
    index = tmp_path / "idx"
    before = len(server.requests)
    _cli(env, "index", videos, "--index", index, "--config", cfg)
    sent = _image_prompts(server, before)
    assert len(sent) == 12 and {b["model"] for b in sent} == {"cfg-vlm"}
    from mmfuse.store.lance import IndexStore

    specs = IndexStore.open(index).specs()
    assert sorted(specs) == ["caption"] and specs["caption"]["spec"]["model"] == "cfg-vlm"
    doc = json.loads(_cli(env, "search", "purple screen", "--index", index, "--json").stdout)
    assert doc["hits"][0]["video_id"] == "purple"
