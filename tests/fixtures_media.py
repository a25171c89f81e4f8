"""Session fixtures for media tests: the committed sample corpus, a folder of bad files, synthetic clips.

Other test modules (index, retrievers, CLI) reuse ``sample_corpus``, ``bad_media_dir`` and
``bad_media_cases``; ``make_video`` and ``frame_index`` build and read clips whose frames encode their
own index, so a test can tell exactly which frame a decoder returned.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"
_BITS = 12


def make_video(
    path: str | os.PathLike,
    seconds: float = 4.0,
    fps: int = 25,
    size: tuple[int, int] = (160, 120),
    *,
    times: Sequence[float] | None = None,
    gop: int | None = None,
    audio_rate: int | None = 44100,
    tone_hz: float = 440.0,
    rotation: int = 0,
    codec: str = "libx264",
    faststart: bool = True,
) -> Path:
    """Write a clip whose frame i shows i in binary (12 black/white blocks across the top half).

    ``times`` gives explicit presentation times in seconds (variable frame rate); otherwise frames are
    at i/fps. The audio track (when ``audio_rate``) is a stereo sine at ``tone_hz`` with amplitude 0.5,
    ``seconds`` long whatever ``times`` says. ``rotation`` is display metadata only: the frames are stored
    as drawn.
    """
    from mmfuse.ingest.synth import write_media

    w, h = size
    vfr = times is not None
    if times is None:
        times = [i / fps for i in range(int(round(seconds * fps)))]
    bw = w // _BITS

    def frames():
        for i in range(len(times)):
            img = np.zeros((h, w, 3), np.uint8)
            for b in range(_BITS):
                if (i >> b) & 1:
                    img[: h // 2, b * bw:(b + 1) * bw] = 255
            img[h // 2:, : w // 4] = (255, 0, 0)  # a red block at the bottom left shows orientation
            yield img

    audio = None
    if audio_rate:
        n = int(round(seconds * audio_rate))
        x = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(n) / audio_rate)).astype(np.float32)
        audio = np.stack([x, x])
    opts = {"preset": "ultrafast", "crf": "23"} if codec == "libx264" else {}
    return write_media(path, frames(), audio, times=times if vfr else None, upright=False, size=size, fps=fps,
                       rotation=rotation, video_codec=codec, video_options=opts, gop=gop,
                       audio_rate=audio_rate or None, audio_channels=2, audio_codec="aac", faststart=faststart)


def frame_index(img: np.ndarray) -> int:
    """Read back the index ``make_video`` drew into a frame (at any scale, rotation undone)."""
    h, w = img.shape[:2]
    bw = w / _BITS
    row = img[h // 4]
    return sum(1 << b for b in range(_BITS) if row[int((b + 0.5) * bw)].mean() > 127)


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    """The committed sample corpus (examples/corpus): clips, queries.tsv, qrels.txt, metadata.json, ..."""
    if not (CORPUS / "manifest.json").exists():
        pytest.skip(f"sample corpus missing at {CORPUS} (run examples/make_corpus.py)")
    return CORPUS


def _non_utf8_name() -> str:
    return os.fsdecode(b"caf\xe9_latin1.mp4")


@pytest.fixture(scope="session")
def bad_media_dir(tmp_path_factory, sample_corpus) -> Path:
    """A folder mixing good and bad media; see ``bad_media_cases`` for what each file should give.

    zero.mp4 (0 bytes), truncated.mp4 (first half of a faststart MP4), truncated_moov.mp4 (head of
    an MP4 whose index sits at the end), text.mp4 (plain text), garbled.mp4 (bytes overwritten in
    the middle), directory.mp4 (a folder), unreadable.mp4 (valid video, mode 000: root still reads it),
    audio_only.m4a, no_audio.mp4, a valid clip with a non-UTF-8 (Latin-1) name, and good.mp4.
    """
    d = tmp_path_factory.mktemp("bad_media")
    good = sample_corpus / "v01_ball.mp4"
    data = good.read_bytes()
    (d / "zero.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    moov_end = make_video(d / "_full_moov_end.mp4", seconds=3, faststart=False)
    full = moov_end.read_bytes()
    (d / "truncated_moov.mp4").write_bytes(full[: int(len(full) * 0.6)])
    moov_end.unlink()
    (d / "text.mp4").write_text("this is not a video, just text with a video extension\n")
    big = (sample_corpus / "v11_two_parts.mp4").read_bytes()
    garbled = bytearray(big)
    rng = np.random.default_rng(0)
    for i in range(20000, min(len(big) - 100, 90000), 400):
        garbled[i:i + 60] = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
    (d / "garbled.mp4").write_bytes(bytes(garbled))
    (d / "directory.mp4").mkdir()
    shutil.copy(good, d / "unreadable.mp4")
    os.chmod(d / "unreadable.mp4", 0)
    shutil.copy(sample_corpus / "v06_podcast.m4a", d / "audio_only.m4a")
    shutil.copy(sample_corpus / "v05_silent.mp4", d / "no_audio.mp4")
    try:
        shutil.copy(good, d / _non_utf8_name())
    except (OSError, UnicodeEncodeError):  # pragma: no cover - file systems that refuse such names
        pass
    shutil.copy(good, d / "good.mp4")
    return d


@pytest.fixture(scope="session")
def bad_media_cases(bad_media_dir) -> list[tuple[Path, str | None]]:
    """(path, expected error substring or None when the file must decode) for every file in bad_media_dir."""
    d = bad_media_dir
    unreadable = d / "unreadable.mp4"
    cases: list[tuple[Path, str | None]] = [
        (d / "zero.mp4", "empty file"),
        (d / "truncated.mp4", "truncated"),
        (d / "truncated_moov.mp4", "not a readable audio/video file"),
        (d / "text.mp4", "not a readable audio/video file"),
        (d / "garbled.mp4", "corrupt"),
        (d / "directory.mp4", "is a directory"),
        (unreadable, None if os.access(unreadable, os.R_OK) else "permission denied"),
        (d / "audio_only.m4a", None),
        (d / "no_audio.mp4", None),
        (d / "good.mp4", None),
    ]
    latin = d / _non_utf8_name()
    if latin.exists():
        cases.append((latin, None))
    return cases
