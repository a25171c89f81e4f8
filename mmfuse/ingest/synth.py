"""Synthetic media: encode frames and audio to a file, synthesize speech, draw text on frames.

This module owns the one writer of generated test media in the project: the sample corpus
(``examples/make_corpus.py``), the evaluation corpus (``examples/make_eval_corpus.py``), the test fixtures
(``tests/fixtures_media.py``) and the speed benchmarks (``benchmarks/index_speed.py``) all build their
clips with it. It lives in the library rather than in one of those folders because all three use it
(scripts in ``examples/`` and ``benchmarks/`` cannot import from ``tests/``), and because users building a
small labelled corpus of their own need exactly the same three pieces:

- :class:`MediaWriter` / :func:`write_media`: PyAV encoding of RGB frames and float audio to mp4, webm,
  mkv, mov, ts or an audio-only file (m4a, ...), at a constant or variable frame rate, with optional
  display-rotation metadata;
- :func:`speak`: espeak-ng text-to-speech (voice, speed, word gap, amplitude, pitch) as a float32 array;
- :func:`find_font`, :func:`list_fonts`, :func:`fit_font` and :func:`draw_text`: TrueType lookup and
  captions on a frame (position, size, colours, on a panel or plain).

Heavy imports (``av``, ``PIL``) happen inside the functions, so ``import mmfuse`` never loads them.
"""

from __future__ import annotations

import fractions
import functools
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelError, ParameterError, suggest

__all__ = [
    "AUDIO_RATE",
    "COMPACT_VIDEO_OPTIONS",
    "FONT_DIRS",
    "MediaWriter",
    "draw_text",
    "find_font",
    "fit_font",
    "list_fonts",
    "resample",
    "speak",
    "write_media",
]

AUDIO_RATE = 22050  # espeak-ng's native sample rate
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
# Tried in order by find_font() when no font is named: bold sans faces that OCR reads well.
_DEFAULT_FONTS = ("DejaVuSans-Bold", "LiberationSans-Bold", "DejaVuSans", "LiberationSans")

# Encoder options that keep short synthetic clips small (the committed corpora use them): constant
# quality, a keyframe at least every 2 s at 25 fps.
COMPACT_VIDEO_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "30", "preset": "medium", "g": "50", "keyint_min": "25"},
    "libvpx-vp9": {"crf": "40", "b": "0", "deadline": "good", "cpu-used": "4", "g": "50"},
}

_VIDEO_CODECS = {".webm": "libvpx-vp9"}  # everything else: libx264
_AUDIO_CODECS = {".webm": "libopus", ".ogg": "libopus", ".opus": "libopus", ".mp3": "libmp3lame",
                 ".flac": "flac", ".wav": "pcm_s16le"}  # everything else: aac
_AUDIO_ONLY = frozenset({".m4a", ".aac", ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus"})
_FASTSTART = frozenset({".mp4", ".mov", ".m4a"})
_OPUS_RATE = 48000


# ---------------------------------------------------------------------------------------------- audio


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Linear-interpolation resampling of mono float audio (good enough for synthetic speech and tones)."""
    x = np.asarray(x, dtype=np.float32)
    if rate_in == rate_out or x.size == 0:
        return x
    n = int(round(len(x) * rate_out / rate_in))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


def speak(
    text: str,
    *,
    voice: str = "en",
    speed: int = 120,
    gap: int = 4,
    amplitude: int = 160,
    pitch: int | None = None,
    rate: int = AUDIO_RATE,
) -> np.ndarray:
    """Synthesize ``text`` with espeak-ng; mono float32 in [-1, 1] at ``rate`` Hz.

    ``voice`` is any name ``espeak-ng --voices`` lists (``en``, ``en-us``, ``en-gb-scotland``, a variant
    such as ``en+f3``), ``speed`` words per minute, ``gap`` extra pause between words in units of 10 ms,
    ``amplitude`` 0-200, ``pitch`` 0-99 (espeak-ng's default when None). The defaults (120 wpm, 40 ms gaps)
    are slow enough that whisper tiny.en transcribes ordinary sentences word for word.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ModelError("espeak-ng not found on PATH: install it (apt-get install -y espeak-ng) to synthesize speech")
    if not text or not text.strip():
        raise ParameterError("speak: text is empty")
    cmd = [exe, "-v", voice, "-s", str(int(speed)), "-g", str(int(gap)), "-a", str(int(amplitude))]
    if pitch is not None:
        cmd += ["-p", str(int(pitch))]
    with tempfile.TemporaryDirectory(prefix="mmfuse-speak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        # "--" so that a sentence starting with "-" is not read as an option.
        res = subprocess.run([*cmd, "-w", str(wav), "--", text], capture_output=True, text=True)
        if res.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
            err = (res.stderr or res.stdout or "").strip().splitlines()
            why = err[0] if err else f"exit code {res.returncode}"
            raise ModelError(f"espeak-ng failed for voice {voice!r}: {why}")
        with wave.open(str(wav)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ModelError(f"espeak-ng wrote {w.getnchannels()} channel(s) of {8 * w.getsampwidth()}-bit "
                                 "samples; expected 16-bit mono")
            src_rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return resample(x, src_rate, rate)


# ---------------------------------------------------------------------------------------------- fonts and text


def list_fonts(dirs: Sequence[str | os.PathLike] = FONT_DIRS) -> list[Path]:
    """Every TrueType/OpenType font file under ``dirs`` (recursively), sorted by file name then path."""
    return list(_scan_fonts(tuple(str(d) for d in dirs)))


@functools.lru_cache(maxsize=8)
def _scan_fonts(dirs: tuple[str, ...]) -> tuple[Path, ...]:
    out: list[Path] = []
    for d in dirs:
        root = Path(d).expanduser()
        if root.is_dir():
            out.extend(p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf") and p.is_file())
    return tuple(sorted(set(out), key=lambda p: (p.name.lower(), str(p))))


def _font_path(name: str | os.PathLike | None) -> Path | None:
    if name is not None and (os.sep in str(name) or Path(name).suffix.lower() in (".ttf", ".otf")):
        p = Path(name).expanduser()
        if not p.is_file():
            raise InputError(f"font file not found: {p}")
        return p
    wanted = [str(name)] if name is not None else list(_DEFAULT_FONTS)
    by_stem: dict[str, Path] = {}
    for p in list_fonts():
        by_stem.setdefault(p.stem.lower(), p)
    for w in wanted:
        if w.lower() in by_stem:
            return by_stem[w.lower()]
    if name is not None:
        raise InputError(f"font {name!r} not found under {', '.join(FONT_DIRS)}{suggest(str(name), by_stem)}")
    return None


def find_font(size: int, name: str | os.PathLike | None = None):
    """A PIL font of ``size`` px: ``name`` is a file path or a font file's stem (``DejaVuSerif-Bold``).

    Without a name the first available of DejaVu Sans Bold, Liberation Sans Bold, ... is used, and Pillow's
    built-in font when none is installed. A name that matches no installed font raises ``InputError``.
    """
    return _load_font(int(size), None if name is None else str(name))


@functools.lru_cache(maxsize=256)
def _load_font(size: int, name: str | None):
    from PIL import ImageFont

    path = _font_path(name)
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)


def fit_font(
    text: str,
    max_width: float,
    max_height: float,
    *,
    font: str | os.PathLike | None = None,
    max_size: int = 56,
    min_size: int = 12,
    step: int = 2,
    spacing: int = 4,
):
    """The largest font (``max_size`` down by ``step``) whose box for ``text`` fits ``max_width`` x ``max_height``.

    Returns ``(font, bbox)`` where bbox is ``ImageDraw.textbbox`` at the origin. When nothing fits, the
    smallest size tried above ``min_size`` is returned.
    """
    from PIL import Image, ImageDraw

    d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = int(max_size)
    f = box = None
    while size > min_size or f is None:
        f = find_font(size, font)
        box = d.textbbox((0, 0), text, font=f, spacing=spacing)
        if box[2] - box[0] <= max_width and box[3] - box[1] <= max_height:
            break
        size -= step
    return f, box


def draw_text(
    img,
    text: str,
    *,
    font: str | os.PathLike | None = None,
    size: int | None = None,
    max_size: int = 56,
    min_size: int = 12,
    max_width: float | None = None,
    max_height: float | None = None,
    position: str | tuple[float, float] = "top",
    align: str = "center",
    margin: int = 12,
    pad: int = 12,
    fill: tuple[int, int, int] = (255, 255, 255),
    panel: tuple[int, int, int] | None = (0, 0, 0),
    full_width: bool = True,
    stroke_width: int = 0,
    stroke_fill: tuple[int, int, int] | None = None,
    spacing: int = 4,
) -> tuple[int, int, int, int]:
    """Draw ``text`` (may hold ``\\n``) on the PIL image ``img`` in place; returns the panel box (or text box).

    Size: ``size`` px, or (None) the largest size from ``max_size`` down that fits ``max_width`` (default
    image width - 30) and ``max_height`` (default a quarter of the image height). Placement: ``position``
    ``"top"``, ``"middle"`` or ``"bottom"`` (``margin`` px from that edge) with ``align`` ``"left"``,
    ``"center"`` or ``"right"``; or an ``(x, y)`` pixel position of the panel's top-left corner (fractions
    in [0, 1) are taken as fractions of the image size). ``panel`` is the colour of a box drawn behind the
    text, ``pad`` px around it, spanning the whole width when ``full_width``; ``panel=None`` draws plain text
    (give it a ``stroke_width`` to keep it readable over a busy picture).
    """
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    w, h = img.size
    if size is not None:
        f = find_font(size, font)
        box = d.textbbox((0, 0), text, font=f, spacing=spacing)
    else:
        f, box = fit_font(text, w - 30 if max_width is None else max_width,
                          h * 0.25 if max_height is None else max_height,
                          font=font, max_size=max_size, min_size=min_size, spacing=spacing)
    tw, th = box[2] - box[0], box[3] - box[1]
    bw, bh = tw + 2 * pad, th + 2 * pad
    if isinstance(position, str):
        tops = {"top": margin, "middle": (h - bh) // 2, "bottom": h - margin - bh}
        lefts = {"left": margin, "center": (w - bw) // 2, "right": w - margin - bw}
        if position not in tops or align not in lefts:
            raise ParameterError("draw_text: position must be top/middle/bottom or (x, y) and align "
                                 f"left/center/right, got {position!r}, {align!r}")
        top, left = tops[position], lefts[align]
    else:
        x, y = position
        left = int(round(x * w)) if 0 <= x < 1 and isinstance(x, float) else int(x)
        top = int(round(y * h)) if 0 <= y < 1 and isinstance(y, float) else int(y)
    if panel is not None:
        d.rectangle([0, top, w, top + bh] if full_width else [left, top, left + bw, top + bh], fill=tuple(panel))
    if full_width and isinstance(position, str) and align == "center":
        tx = (w - tw) // 2  # centred on the image, as the band is
    else:
        tx = left + pad
    d.text((tx - box[0], top + pad - box[1]), text, font=f, fill=tuple(fill), spacing=spacing,
           stroke_width=stroke_width, stroke_fill=None if stroke_fill is None else tuple(stroke_fill))
    if panel is not None:
        return (0, top, w, top + bh) if full_width else (left, top, left + bw, top + bh)
    return (tx, top + pad, tx + tw, top + pad + th)


# ---------------------------------------------------------------------------------------------- encoding


class MediaWriter:
    """Encode RGB frames and float audio to ``path`` with PyAV, one frame / one audio block at a time.

    ``size`` is the coded (stored) ``(width, height)``; ``None`` writes an audio-only file. ``fps`` is the
    nominal frame rate; with ``vfr=True`` every frame needs its own time ``t`` (seconds, millisecond time
    base). ``rotation`` (degrees) is stored as display-matrix metadata: :meth:`frame` takes the picture as a
    player should show it and stores it turned back, so the player's rotation brings it upright
    (``upright=False`` stores a frame as given). Codecs default by extension: VP9 + Opus in ``.webm``, H.264
    + AAC otherwise; ``video_options``/``audio_codec``/``audio_bit_rate`` override them (FFmpeg's defaults
    apply to anything not given; :data:`COMPACT_VIDEO_OPTIONS` holds small-file settings). Audio is given at
    ``audio_rate`` Hz, mono ``(n,)`` or ``(channels, n)``, and resampled when the codec needs another rate
    (Opus: 48 kHz). ``bitexact=True`` keeps the muxer from writing random ids and version strings; with a
    single-threaded video encoder (``threads=1``) the same input then gives the same bytes.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        size: tuple[int, int] | None = (320, 240),
        fps: int = 25,
        vfr: bool = False,
        rotation: int = 0,
        video_codec: str | None = None,
        video_options: Mapping[str, str] | None = None,
        gop: int | None = None,
        pix_fmt: str | None = None,
        threads: int | None = None,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        audio_codec: str | None = None,
        audio_bit_rate: int | None = None,
        faststart: bool = True,
        bitexact: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        import av

        self.path = Path(path)
        ext = self.path.suffix.lower()
        if size is None and audio_rate is None:
            raise ParameterError("MediaWriter: nothing to write (no video size and no audio rate)")
        if size is not None and ext in _AUDIO_ONLY:
            raise ParameterError(f"MediaWriter: {self.path.name} is an audio-only container; pass size=None")
        if audio_channels not in (1, 2):
            raise ParameterError(f"MediaWriter: audio_channels must be 1 or 2, got {audio_channels}")
        self.fps, self.vfr, self.rotation = int(fps), bool(vfr), int(rotation) % 360
        if self.rotation % 90:
            raise ParameterError(f"MediaWriter: rotation must be a multiple of 90 degrees, got {rotation}")
        opts = {"movflags": "+faststart"} if faststart and ext in _FASTSTART else {}
        if bitexact:  # no random Matroska segment UID, no library version strings: same input, same bytes
            opts["fflags"] = "+bitexact"
        self._c = av.open(str(self.path), "w", options=opts)
        self._av = av
        for k, v in (metadata or {}).items():
            self._c.metadata[k] = str(v)
        self.video = None
        self._n_frames = 0
        self._vtb = fractions.Fraction(1, 1000) if self.vfr else fractions.Fraction(1, self.fps)
        if size is not None:
            codec = video_codec or _VIDEO_CODECS.get(ext, "libx264")
            w, h = int(size[0]), int(size[1])
            vs = self._c.add_stream(codec, rate=self.fps)
            o = dict(video_options or {})
            if gop:
                o["g"] = str(gop)
            vs.options = o
            if threads is not None:
                vs.codec_context.thread_count = int(threads)
            vs.width, vs.height = w, h
            # libx264 cannot store 4:2:0 chroma for odd sizes.
            vs.pix_fmt = pix_fmt or ("yuv444p" if (w % 2 or h % 2) and codec == "libx264" else "yuv420p")
            if self.vfr:
                vs.codec_context.time_base = self._vtb
            if rotation:
                vs.set_display_rotation(rotation)
            self.video = vs
            self.size = (w, h)
        self.audio = None
        self.audio_rate = audio_rate
        self._apts = 0
        if audio_rate is not None:
            codec = audio_codec or _AUDIO_CODECS.get(ext, "aac")
            rate = _OPUS_RATE if codec == "libopus" else int(audio_rate)
            a = self._c.add_stream(codec, rate=rate)
            if audio_bit_rate:
                a.bit_rate = int(audio_bit_rate)
            a.layout = "mono" if audio_channels == 1 else "stereo"
            self.audio = a
            self.audio_channels = audio_channels
        self._video_done = self._audio_done = False

    # -- video
    def frame(self, image: Any, t: float | None = None, *, upright: bool = True) -> None:
        """Encode one RGB frame (HxWx3 uint8 array or PIL image) shown at ``t`` s (vfr) or after the previous one."""
        if self.video is None or self._video_done:
            raise ParameterError(f"MediaWriter {self.path.name}: no open video stream to write a frame to")
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise InputError(f"MediaWriter: expected an HxWx3 uint8 RGB frame, got shape {arr.shape} dtype {arr.dtype}")
        if upright and self.rotation:
            # The player turns the picture `rotation` degrees counter-clockwise; store the inverse.
            arr = np.rot90(arr, k=-(self.rotation // 90))
        arr = np.ascontiguousarray(arr)
        if (arr.shape[1], arr.shape[0]) != self.size:
            turned = " (after undoing the rotation)" if upright and self.rotation else ""
            raise InputError(f"MediaWriter {self.path.name}: frame is {arr.shape[1]}x{arr.shape[0]}, stream is "
                             f"{self.size[0]}x{self.size[1]}{turned}")
        f = self._av.VideoFrame.from_ndarray(arr, format="rgb24")
        if self.vfr:
            if t is None:
                raise ParameterError("MediaWriter: a variable-frame-rate stream needs each frame's time t")
            f.pts = int(round(t * 1000))
        else:
            f.pts = self._n_frames
        f.time_base = self._vtb
        self._n_frames += 1
        for pkt in self.video.encode(f):
            self._c.mux(pkt)

    def end_video(self) -> None:
        """Flush the video encoder (done by :meth:`close` when not called)."""
        if self.video is not None and not self._video_done:
            for pkt in self.video.encode(None):
                self._c.mux(pkt)
            self._video_done = True

    # -- audio
    def write_audio(self, samples: np.ndarray, block: int = 1024) -> None:
        """Encode float audio at ``audio_rate`` (mono ``(n,)`` or ``(channels, n)``), appended after earlier calls."""
        if self.audio is None or self._audio_done:
            raise ParameterError(f"MediaWriter {self.path.name}: no open audio stream to write to")
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[0] not in (1, self.audio_channels):
            raise InputError(f"MediaWriter: audio must be (n,) or ({self.audio_channels}, n), got shape {x.shape}")
        if x.shape[0] != self.audio_channels:
            x = np.repeat(x, self.audio_channels, axis=0)
        rate = self.audio.codec_context.sample_rate
        if rate != self.audio_rate:
            x = np.stack([resample(ch, self.audio_rate, rate) for ch in x])
        layout = "mono" if self.audio_channels == 1 else "stereo"
        for pos in range(0, x.shape[1], block):
            chunk = np.ascontiguousarray(x[:, pos:pos + block])
            f = self._av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            f.sample_rate = rate
            f.pts = self._apts
            f.time_base = fractions.Fraction(1, rate)
            self._apts += chunk.shape[1]
            for pkt in self.audio.encode(f):
                self._c.mux(pkt)

    def end_audio(self) -> None:
        """Flush the audio encoder (done by :meth:`close` when not called)."""
        if self.audio is not None and not self._audio_done:
            for pkt in self.audio.encode(None):
                self._c.mux(pkt)
            self._audio_done = True

    def close(self) -> None:
        if self._c is None:
            return
        try:
            self.end_video()
            self.end_audio()
        finally:
            self._c.close()
            self._c = None

    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(self, exc_type, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # do not flush encoders after a failure; just release the file
            try:
                self._c.close()
            finally:
                self._c = None


def write_media(
    path: str | os.PathLike,
    frames: Iterable[Any] | None = None,
    audio: np.ndarray | None = None,
    *,
    times: Sequence[float] | None = None,
    upright: bool = True,
    **options: Any,
) -> Path:
    """Write a whole clip: every frame of ``frames`` (then the encoder is flushed), then ``audio``.

    ``times`` (seconds, one per frame) makes the stream variable-frame-rate; otherwise frames follow each
    other at ``fps``. ``upright=False`` stores frames as given under a ``rotation`` (see :meth:`MediaWriter.frame`).
    ``frames=None`` (or ``size=None``) writes audio only. Other keywords go to
    :class:`MediaWriter` (``size``, ``fps``, ``rotation``, ``video_options``, ``audio_rate``, ...); pass
    ``audio_rate`` with ``audio``. Returns the path.
    """
    if frames is None:
        options["size"] = None
    if times is not None:
        options["vfr"] = True
    if audio is not None and options.get("audio_rate") is None:
        raise ParameterError("write_media: give audio_rate with audio")
    with MediaWriter(path, **options) as w:
        if frames is not None and w.video is not None:
            ts = iter(times) if times is not None else None
            for img in frames:
                w.frame(img, next(ts) if ts is not None else None, upright=upright)
            w.end_video()
        if audio is not None:
            w.write_audio(audio)
    return Path(path)
