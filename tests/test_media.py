"""Tests for mmfuse.ingest (probe, frames, audio, segments) on the committed corpus, synthetic clips whose frames
encode their index, and bad files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmfuse.errors import InputError, ParameterError
from mmfuse.ingest.audio import load_audio
from mmfuse.ingest.frames import sample_frames
from mmfuse.ingest.probe import VIDEO_EXTENSIONS, MediaError, content_hash, display_name, is_media_file, probe
from mmfuse.ingest.segments import iter_segments, segment_bounds

try:  # the same module object conftest loaded as a plugin (tests/ is on sys.path, not a package)
    from fixtures_media import frame_index, make_video
except ImportError:
    from tests.fixtures_media import frame_index, make_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media_clips")
    vfr_times = []
    t, k = 0.0, 0
    while t < 6.0:
        vfr_times.append(round(t, 3))
        t += (0.02, 0.1, 0.04, 0.3)[k % 4]
        k += 1
    return {
        "long_gop": make_video(d / "long_gop.mp4", seconds=12, fps=30, gop=300),
        "short_gop": make_video(d / "short_gop.mp4", seconds=12, fps=30, gop=15),
        "vfr": make_video(d / "vfr.mp4", seconds=6, times=vfr_times),
        "vfr_times": np.array(vfr_times),
        "rotated": make_video(d / "rot.mp4", seconds=1, size=(160, 96), rotation=-90),
        "odd": make_video(d / "odd.mp4", seconds=1, size=(321, 243)),
        "short": make_video(d / "short.mp4", seconds=0.4, fps=25, audio_rate=None),
        "noaudio_mkv": make_video(d / "noaudio.mkv", seconds=2, audio_rate=None),
        # MPEG-TS keeps 33-bit timestamps: the AAC priming makes the first audio pts wrap around.
        "ts": make_video(d / "wrapped.ts", seconds=3, fps=30),
        # 2 s of video over 30 s of audio (a short picture track on a long recording).
        "short_video_long_audio": make_video(d / "still.mp4", seconds=30, times=[i / 25 for i in range(50)]),
    }


def expected_index(times, t):
    """The frame on screen at t: the last frame with pts <= t (the first one before any frame)."""
    return max(int(np.searchsorted(times, t + 1e-6, side="right")) - 1, 0)


# ---------------------------------------------------------------------------------------------- corpus


def test_import_is_light():
    code = "import mmfuse.ingest.probe, mmfuse.ingest.frames, mmfuse.ingest.audio, mmfuse.ingest.segments, sys; assert 'av' not in sys.modules and 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_probe_corpus_matches_manifest(sample_corpus):
    manifest = json.loads((sample_corpus / "manifest.json").read_text())
    assert len(manifest) >= 10
    for m in manifest:
        info = probe(sample_corpus / m["file"])
        assert info.has_video == m["has_video"], m["file"]
        assert info.has_audio == m["has_audio"], m["file"]
        assert info.duration == pytest.approx(m["duration"], abs=0.05), m["file"]
        assert info.rotation == m["rotation"] % 360, m["file"]
        if m["has_video"]:
            assert [info.width, info.height] == m["display_size"], m["file"]
            if m["fps"]:
                assert info.fps == pytest.approx(m["fps"])
        else:
            assert info.width is None and info.fps is None
        assert info.size_bytes == (sample_corpus / m["file"]).stat().st_size
        assert is_media_file(m["file"])


@pytest.mark.slow
def test_corpus_segments_audio_and_frames(sample_corpus):
    manifest = {m["video_id"]: m for m in json.loads((sample_corpus / "manifest.json").read_text())}
    # The 12 s clip splits into a 10 s window and a 2 s tail; the on-screen word changes at 10 s.
    segs = list(iter_segments(sample_corpus / "v11_two_parts.mp4", audio_rates=(16000, 48000), frame_size=160))
    assert [(s.index, s.start, s.end) for s in segs] == [(0, 0.0, 10.0), (1, 10.0, 12.0)]
    assert segs[0].frame_times == pytest.approx([1.25, 3.75, 6.25, 8.75])
    assert segs[1].frame_times == pytest.approx([10.25, 10.75, 11.25, 11.75])
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for s in segs for f in s.frames)
    assert [s.audio[16000].size for s in segs] == [160000, 32000]
    assert [s.audio[48000].size for s in segs] == [480000, 96000]
    assert segs[0].segment_id == "v11_two_parts#0" and segs[1].video_id == "v11_two_parts"
    # Background is maroon before 10 s and olive after (the generator's scene).
    assert segs[0].frames[0][100, 5, 1] < 60 and segs[1].frames[0][100, 5, 1] > 90
    # Speech lies where the manifest says: loud inside, near silent before it starts.
    m = manifest["v11_two_parts"]
    a = segs[0].audio[16000]
    s0, s1 = int(m["speech_start"] * 16000), int(m["speech_end"] * 16000)
    assert np.abs(a[s0:s1]).max() > 0.2
    assert np.abs(a[: s0 - 1600]).max() < 0.02

    # Audio-only file: no frames, audio in every segment; silent video: frames, empty audio.
    (pod,) = iter_segments(sample_corpus / "v06_podcast.m4a", audio_rates=(16000,))
    assert pod.frames == [] and pod.frame_times == [] and pod.audio[16000].size == 6 * 16000
    (silent,) = iter_segments(sample_corpus / "v05_silent.mp4", audio_rates=(16000, 48000))
    assert len(silent.frames) == 4 and silent.audio[16000].size == 0 and silent.audio[48000].dtype == np.float32
    assert sample_frames(sample_corpus / "v06_podcast.m4a", n=3) == []
    assert load_audio(sample_corpus / "v05_silent.mp4", 16000).size == 0


@pytest.mark.slow
def test_corpus_rotation_applied(sample_corpus):
    # The portrait clip is stored 320x240 with a 90 degree display matrix; its text panel is at the top.
    (img,) = sample_frames(sample_corpus / "v08_portrait.mp4", times=[1.0])
    assert img.shape == (320, 240, 3)
    top = img[12:60].mean()
    left = img[:, :40].mean()
    assert img[20:50, :].mean() < 140  # black panel with white letters across the top rows
    assert top != pytest.approx(left, abs=5)
    (small,) = sample_frames(sample_corpus / "v08_portrait.mp4", times=[1.0], size=64)
    assert small.shape == (64, 48, 3)


@pytest.mark.slow
def test_corpus_odd_resolution_and_vfr(sample_corpus):
    frames = sample_frames(sample_corpus / "v09_odd.webm", n=3)
    assert [f.shape for f in frames] == [(243, 321, 3)] * 3
    (seg,) = iter_segments(sample_corpus / "v09_odd.webm", frames_per_segment=2, frame_size=100)
    assert [f.shape for f in seg.frames] == [(76, 100, 3)] * 2
    (vfr,) = iter_segments(sample_corpus / "v10_vfr.mp4", frames_per_segment=5)
    assert len(vfr.frames) == 5 and vfr.end == pytest.approx(7.0)


# ---------------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("name", ["long_gop", "short_gop"])
def test_sample_frames_exact(clips, name):
    path = clips[name]
    times = np.arange(360) / 30
    ts = [0.0, 0.01, 11.99, 5.5, 5.5, 1.0, 1.0334, 3.3, 20.0, 9.999, 10.0]
    frames = sample_frames(path, times=ts)
    assert [frame_index(f) for f in frames] == [expected_index(times, t) for t in ts]
    uniform = sample_frames(path, n=6, size=80)
    assert [f.shape for f in uniform] == [(60, 80, 3)] * 6
    # n uniform samples sit at the centres of n equal spans: 1, 3, 5, 7, 9, 11 s.
    assert [frame_index(f) for f in uniform] == [30, 90, 150, 210, 270, 330]


def test_iter_segments_matches_seek_sampling(clips):
    """The one-pass GOP sampler and the seek-based sampler are independent paths: they must agree."""
    for name in ("long_gop", "short_gop", "vfr"):
        path = clips[name]
        segs = list(iter_segments(path, window=2.5, frames_per_segment=3, audio_rates=()))
        times = [t for s in segs for t in s.frame_times]
        via_seek = sample_frames(path, times=times)
        got = [frame_index(f) for s in segs for f in s.frames]
        assert got == [frame_index(f) for f in via_seek], name
        pts = clips["vfr_times"] if name == "vfr" else np.arange(360) / 30
        assert got == [expected_index(pts, t) for t in times], name
        assert all(s.audio == {} for s in segs)


def test_iter_segments_windows_and_frame_rate(clips):
    segs = list(iter_segments(clips["long_gop"], window=5, frame_rate=1.0, audio_rates=(8000,)))
    # 12 s in 5 s windows: 0-5, 5-10, 10-12.
    assert [(s.start, s.end) for s in segs] == [(0, 5), (5, 10), (10, 12)]
    assert [len(s.frames) for s in segs] == [5, 5, 2]
    assert segs[1].frame_times == pytest.approx([5.5, 6.5, 7.5, 8.5, 9.5])
    assert [frame_index(f) for f in segs[2].frames] == [315, 345]
    whole = load_audio(clips["long_gop"], 8000)
    joined = np.concatenate([s.audio[8000] for s in segs])
    assert joined.size == 12 * 8000
    np.testing.assert_array_equal(joined, whole[: joined.size])
    # No frames requested: the video stream is not decoded at all, audio still streams.
    segs = list(iter_segments(clips["long_gop"], window=None, frames_per_segment=0))
    assert len(segs) == 1 and segs[0].frames == [] and segs[0].audio[16000].size == 12 * 16000


def test_segment_bounds():
    assert segment_bounds(4.0, 10.0) == [(0.0, 4.0)]
    assert segment_bounds(10.0, 10.0) == [(0.0, 10.0)]
    assert segment_bounds(25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert segment_bounds(20.5, 10.0) == [(0.0, 10.0), (10.0, 20.5)]  # 0.5 s tail joins
    assert segment_bounds(7.0, None) == [(0.0, 7.0)]
    with pytest.raises(ParameterError, match="window"):
        segment_bounds(7.0, 0)


def test_rotation_odd_size_short_clip(clips):
    info = probe(clips["rotated"])
    assert (info.rotation, info.width, info.height) == (270, 96, 160)
    (img,) = sample_frames(clips["rotated"], times=[0.5])
    assert img.shape == (160, 96, 3)
    # Stored picture: red block bottom-left; turned 270 degrees counter-clockwise (90 clockwise) it
    # lands top-left, and the index blocks read top to bottom down the right half.
    assert img[5, 5, 0] > 200 and img[5, 5, 1] < 60
    assert frame_index(np.ascontiguousarray(np.rot90(img, k=1))) == 12

    (same,) = sample_frames(clips["rotated"], times=[0.5], size=4000)
    assert same.shape == img.shape  # size caps, it never upscales

    odd = probe(clips["odd"])
    assert (odd.width, odd.height) == (321, 243)
    frames = sample_frames(clips["odd"], n=2, size=100)
    assert [f.shape for f in frames] == [(76, 100, 3)] * 2

    short = probe(clips["short"])
    assert short.duration == pytest.approx(0.4, abs=0.01) and not short.has_audio and short.n_frames == 10
    (seg,) = iter_segments(clips["short"], frames_per_segment=4)
    assert (seg.start, seg.end) == (0.0, pytest.approx(0.4))
    assert [frame_index(f) for f in seg.frames] == [1, 3, 6, 8]
    assert seg.audio[16000].size == 0
    (mkv,) = iter_segments(clips["noaudio_mkv"], frames_per_segment=2, audio_rates=(16000,))
    assert [frame_index(f) for f in mkv.frames] == [12, 37]


def test_load_audio_resamples_to_mono(clips):
    info = probe(clips["short_gop"])
    assert (info.sample_rate, info.channels) == (44100, 2)
    for rate in (16000, 48000):
        a = load_audio(clips["short_gop"], rate)
        assert a.dtype == np.float32 and a.ndim == 1
        assert abs(a.size - 12 * rate) <= 2048 * rate / 44100 + 1
        spec = np.abs(np.fft.rfft(a[rate:3 * rate]))
        assert np.argmax(spec) * 0.5 == pytest.approx(440, abs=1)  # 2 s window: 0.5 Hz bins
        # A stereo sine of amplitude 0.5 in both channels stays a sine of amplitude ~0.5 in mono.
        assert np.abs(a[rate:3 * rate]).max() == pytest.approx(0.5, abs=0.05)


# ---------------------------------------------------------------------------------------------- bad input


def test_content_hash(sample_corpus, bad_media_dir, tmp_path):
    p = sample_corpus / "v03_triangle.mp4"
    assert content_hash(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert content_hash(p, chunk_size=1000) == content_hash(p)
    assert content_hash(bad_media_dir / "zero.mp4") == hashlib.sha256(b"").hexdigest()
    with pytest.raises(MediaError, match="missing.mp4: no such file"):
        content_hash(tmp_path / "missing.mp4")


def test_bad_files_name_file_and_reason(bad_media_cases):
    for path, expected in bad_media_cases:
        if expected is None:
            info = probe(path)
            assert info.has_video or info.has_audio
            segs = list(iter_segments(path, audio_rates=(16000,)))
            assert segs and segs[0].end == pytest.approx(info.duration)
            continue
        with pytest.raises(MediaError) as err:
            probe(path)
            list(iter_segments(path))  # some damage only shows when decoding
        msg = str(err.value)
        assert expected in msg, (path, msg)
        assert display_name(path.name) in msg and "\n" not in msg
        assert isinstance(err.value, InputError) and err.value.path is not None
        if expected != "corrupt":
            for fn in (sample_frames, lambda p: load_audio(p, 16000)):
                with pytest.raises(MediaError, match=expected):
                    fn(path)


def test_non_utf8_name_is_printable(bad_media_cases):
    latin = [p for p, _ in bad_media_cases if "latin1" in p.name]
    if not latin:
        pytest.skip("file system refused a non-UTF-8 file name")
    (path,) = latin
    assert display_name(path).endswith("caf\\xe9_latin1.mp4")
    assert len(sample_frames(path, n=2)) == 2
    err = MediaError(path, "example")
    str(err).encode("utf-8")  # no lone surrogates: safe to print on any UTF-8 terminal


def test_permission_denied(bad_media_dir, monkeypatch):
    path = bad_media_dir / "unreadable.mp4"
    if not os.access(path, os.R_OK):
        with pytest.raises(MediaError, match="unreadable.mp4: permission denied"):
            probe(path)

    def deny(*args, **kwargs):  # root reads mode-000 files: simulate the ordinary user's view
        raise PermissionError(13, "Permission denied")

    from mmfuse.ingest import _opener
    from mmfuse.ingest import probe as probe_module

    for module in (_opener, probe_module):  # opening for decoding, and reading for the hash
        monkeypatch.setattr(module, "open", deny, raising=False)
    with pytest.raises(MediaError, match="unreadable.mp4: permission denied"):
        probe(path)
    with pytest.raises(MediaError, match="unreadable.mp4: permission denied"):
        content_hash(path)


def test_missing_file_and_bad_parameters(tmp_path, sample_corpus):
    with pytest.raises(MediaError, match="nope.mp4: no such file"):
        probe(tmp_path / "nope.mp4")
    p = sample_corpus / "v01_ball.mp4"
    with pytest.raises(ParameterError):
        sample_frames(p, n=2, times=[1.0])
    with pytest.raises(ParameterError):
        sample_frames(p, n=-1)
    with pytest.raises(ParameterError, match="size"):
        sample_frames(p, n=1, size=1)
    with pytest.raises(ParameterError, match="rate"):
        load_audio(p, 0)
    with pytest.raises(ParameterError, match="audio_rates"):
        iter_segments(p, audio_rates=(16000, -1))
    with pytest.raises(ParameterError, match="window"):
        list(iter_segments(p, window=-2))
    assert sample_frames(p, times=[]) == [] and sample_frames(p, n=0) == []
    assert ".m4a" in VIDEO_EXTENSIONS and ".mp4" in VIDEO_EXTENSIONS
    assert not is_media_file("notes.txt") and is_media_file("CLIP.MP4")


def test_wrapped_timestamps_mpegts(clips):
    info = probe(clips["ts"])
    assert info.duration == pytest.approx(3.0, abs=0.05)  # not the 26.5 h a wrapped pts implies
    segs = list(iter_segments(clips["ts"], window=2, frames_per_segment=2))
    assert [(s.start, s.end) for s in segs] == [(0.0, 2.0), (2.0, pytest.approx(3.0, abs=0.05))]
    # The muxer delays video by the 2090-tick audio priming (23 ms): frame i shows from i/30 + 0.023 s.
    assert [frame_index(f) for s in segs for f in s.frames] == [14, 44, 67, 82]
    assert segs[0].audio[16000].size == 32000 and np.abs(segs[0].audio[16000][8000:]).max() > 0.4


def test_video_track_shorter_than_audio(clips):
    path = clips["short_video_long_audio"]
    assert probe(path).duration == pytest.approx(30.0, abs=0.1)
    it = iter_segments(path, window=5, frames_per_segment=2, audio_rates=(16000,))
    first = next(it)
    assert [frame_index(f) for f in first.frames] == [31, 49]  # 1.25 s -> frame 31; 3.75 s -> last frame
    rest = list(it)
    assert len(rest) == 5 and all(frame_index(f) == 49 for s in rest for f in s.frames)
    assert all(s.audio[16000].size == 80000 for s in [first, *rest])


def test_cover_art_is_not_video(tmp_path):
    import av

    path = tmp_path / "song.mp3"
    c = av.open(str(path), "w")
    a = c.add_stream("libmp3lame", rate=44100)
    a.layout = "mono"
    v = c.add_stream("mjpeg", rate=1)
    v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
    v.disposition = av.stream.Disposition.attached_pic
    cover = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24").reformat(format="yuvj420p")
    for p in [*v.encode(cover), *v.encode(None)]:
        c.mux(p)
    x = (0.3 * np.sin(np.arange(88200) * 2 * np.pi * 440 / 44100) * 32767).astype(np.int16)
    fs = a.codec_context.frame_size
    for pos in range(0, x.size, fs):
        f = av.AudioFrame.from_ndarray(x[None, pos:pos + fs], format="s16p", layout="mono")
        f.sample_rate, f.pts = 44100, pos
        for p in a.encode(f):
            c.mux(p)
    for p in a.encode(None):
        c.mux(p)
    c.close()
    info = probe(path)
    assert not info.has_video and info.has_audio and info.duration == pytest.approx(2.0, abs=0.1)
    (seg,) = iter_segments(path)
    assert seg.frames == [] and seg.audio[16000].size == pytest.approx(32000, abs=1200)


def test_seek_without_index_lands_late_and_retries(tmp_path):
    """MPEG-TS has no keyframe index and seeks by timestamp search, which can land after the target;
    a stream cut mid-GOP also starts with undecodable packets. Seek sampling must still match the
    one-pass sampler frame for frame."""
    src = make_video(tmp_path / "src.ts", seconds=40, fps=30, gop=60, audio_rate=None)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(src.read_bytes()[188 * 300:])  # whole 188-byte TS packets, mid-GOP
    segs = list(iter_segments(cut, window=12, frames_per_segment=1, audio_rates=()))
    times = [0.0, *(t for s in segs for t in s.frame_times), 39.0]
    one_pass = [frame_index(f) for s in segs for f in s.frames]
    seeked = [frame_index(f) for f in sample_frames(cut, times=times)]
    assert seeked[1:-1] == one_pass
    assert seeked[0] < one_pass[0] < seeked[-1]
    assert all(b - a > 300 for a, b in zip(one_pass, one_pass[1:]))  # 12 s apart at 30 fps
