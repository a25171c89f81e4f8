"""mmfuse.ingest.synth: the shared writer of synthetic media (containers, frame rates, rotation, speech, captions)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("PIL")

from mmfuse.errors import InputError, ModelError, ParameterError  # noqa: E402
from mmfuse.ingest import synth  # noqa: E402
from mmfuse.ingest.audio import load_audio  # noqa: E402
from mmfuse.ingest.frames import sample_frames  # noqa: E402
from mmfuse.ingest.probe import probe  # noqa: E402


def _tone(seconds: float, rate: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _frames(n: int, size=(64, 48)):
    w, h = size
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : (i * 7) % w] = 200
        yield img


@pytest.mark.parametrize(
    "name, vcodec, acodec",
    [("a.mp4", "h264", "aac"), ("a.webm", "vp9", "opus"), ("a.mkv", "h264", "aac"), ("a.mov", "h264", "aac")],
)
def test_containers_round_trip(tmp_path, name, vcodec, acodec):
    p = synth.write_media(tmp_path / name, _frames(50), _tone(2.0, 22050), size=(64, 48), fps=25, audio_rate=22050,
                          metadata={"title": "round trip"})
    info = probe(p)
    assert info.has_video and info.has_audio and (info.width, info.height) == (64, 48)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    with av.open(str(p)) as c:
        assert c.streams.video[0].codec_context.name == vcodec
        assert c.streams.audio[0].codec_context.name == acodec
        assert c.metadata.get("title", c.metadata.get("TITLE")) == "round trip"


def test_audio_only(tmp_path):
    p = synth.write_media(tmp_path / "voice.m4a", None, _tone(1.5, 16000), audio_rate=16000)
    info = probe(p)
    assert not info.has_video and info.has_audio
    assert load_audio(p, 16000).size == pytest.approx(24000, abs=2048)
    with pytest.raises(ParameterError, match="audio-only"):
        synth.MediaWriter(tmp_path / "x.m4a", size=(64, 48), audio_rate=16000)


def test_variable_frame_rate_times_kept(tmp_path):
    times = [0.0, 0.02, 0.06, 0.18, 0.24, 0.5, 0.52, 1.0]
    p = synth.write_media(tmp_path / "vfr.mp4", _frames(len(times)), times=times, size=(64, 48))
    with av.open(str(p)) as c:
        got = [round(float(f.time), 3) for f in c.decode(video=0)]
    assert got == times


def test_rotation_stores_inverse_of_upright_picture(tmp_path):
    # An upright portrait picture (48 wide, 64 high) with a red top edge, stored as 64x48 plus 90-degree metadata.
    img = np.zeros((64, 48, 3), np.uint8)
    img[:8] = (255, 0, 0)
    p = synth.write_media(tmp_path / "rot.mp4", [img] * 5, size=(64, 48), rotation=90)
    info = probe(p)
    assert info.rotation == 90
    (shown,) = sample_frames(p, times=[0.05])
    assert shown.shape[:2] == (64, 48)  # displayed upright again
    assert shown[:6, :, 0].mean() > 180 and shown[20:, :, 0].mean() < 40


def test_frame_checks(tmp_path):
    with synth.MediaWriter(tmp_path / "c.mp4", size=(64, 48)) as w:
        with pytest.raises(InputError, match="64x48"):
            w.frame(np.zeros((10, 10, 3), np.uint8))
        w.frame(np.zeros((48, 64, 3), np.uint8))
    with synth.MediaWriter(tmp_path / "v.mp4", size=(64, 48), vfr=True) as w:
        with pytest.raises(ParameterError, match="time"):
            w.frame(np.zeros((48, 64, 3), np.uint8))
        w.frame(np.zeros((48, 64, 3), np.uint8), 0.0)


def test_draw_text_panel_and_plain():
    from PIL import Image

    img = Image.new("RGB", (320, 240), (40, 120, 40))
    box = synth.draw_text(img, "HARBOUR", position="top")
    a = np.asarray(img)
    assert box[0] == 0 and box[2] == 320 and box[1] == 12
    panel = a[box[1]:box[3]]
    assert (panel == 255).all(axis=2).any() and (panel == 0).all(axis=2).any()  # white text on black
    img2 = Image.new("RGB", (320, 240), (40, 120, 40))
    box2 = synth.draw_text(img2, "late", size=30, panel=None, position=(0.1, 0.6), fill=(250, 250, 0))
    b = np.asarray(img2)
    assert box2[0] >= 32 and box2[1] >= 144
    assert (b == (250, 250, 0)).all(axis=2).sum() > 50 and not (b == 0).all(axis=2).any()


def test_fonts():
    fonts = synth.list_fonts()
    if not fonts:
        pytest.skip("no TrueType fonts installed")
    f = synth.find_font(20, fonts[0].stem)
    assert f.size == 20
    with pytest.raises(InputError, match="not found"):
        synth.find_font(20, "NoSuchFontFamily-Bold")
    small, box = synth.fit_font("A FAIRLY LONG CAPTION", 250, 60, max_size=56)
    assert box[2] - box[0] <= 250 and small.size < 56


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_speak_voices_and_speed():
    slow = synth.speak("the ferry is late", voice="en-gb", speed=100)
    fast = synth.speak("the ferry is late", voice="en-us", speed=180)
    assert slow.dtype == np.float32 and np.abs(slow).max() <= 1.0
    assert len(slow) > 1.3 * len(fast) > 0
    assert len(synth.speak("hello", rate=16000)) < len(synth.speak("hello"))


def test_speak_without_espeak(monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(ModelError, match="espeak-ng not found"):
        synth.speak("hello")


def test_import_mmfuse_stays_light():
    code = ("import sys, mmfuse, mmfuse.ingest.synth; "
            "print(sorted(m for m in ('av', 'PIL', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["d.mkv", "d.webm", "d.mp4"])
def test_bitexact_single_thread_is_reproducible(tmp_path, name):
    codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    opts = synth.COMPACT_VIDEO_OPTIONS[codec]
    paths = []
    for k in range(2):
        p = tmp_path / str(k) / name
        p.parent.mkdir()
        paths.append(synth.write_media(p, _frames(30), _tone(1.2, 22050), size=(64, 48), audio_rate=22050,
                                       video_options=opts, threads=1, bitexact=True))
    assert paths[0].read_bytes() == paths[1].read_bytes()
