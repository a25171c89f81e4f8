"""PyAV media ingestion: probing, hashing, frame sampling, audio loading and one-pass segment streaming."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, ParameterError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "MediaInfo",
    "Segment",
    "content_hash",
    "display_name",
    "is_media_file",
    "iter_segments",
    "load_audio",
    "probe",
    "sample_frames",
    "segment_bounds",
]

_VIDEO_ONLY_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".wmv", ".flv", ".3gp", ".ogv", ".gif"}
)
AUDIO_EXTENSIONS = frozenset({".m4a", ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".aac", ".wma"})
# The indexer scans VIDEO_EXTENSIONS; audio-only files are included on purpose because they index
# as videos without frames (audio/ASR modalities only), which the issue asks us to support.
VIDEO_EXTENSIONS = _VIDEO_ONLY_EXTENSIONS | AUDIO_EXTENSIONS
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS

# Without a keyframe index, targets closer than this are reached by demuxing forward, not seeking.
_SEEK_GAP_S = 10.0
# Bound on compressed packets buffered per GOP in iter_segments before we give up skipping.
_MAX_GOP_BUFFER_BYTES = 64 << 20
_EPS = 1e-6
# Decoders skip a packet they reject (as the ffmpeg CLI does); more bad packets than this share of a
# stream (and at least _MIN_BAD of them) mean the file is corrupt rather than glitched.
_MAX_BAD_SHARE = 0.02
_MIN_BAD = 3
# Data that stops this long before the declared end of a stream means a truncated file.
_TRUNCATION_SLACK_S = 1.0


class MediaError(InputError):
    """A media file that cannot be opened or decoded; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{display_name(path)}: {reason}" if path is not None else reason)


def display_name(path: str | os.PathLike | bytes | None) -> str:
    """A printable form of a path: undecodable bytes of non-UTF-8 names become ``\\xNN`` escapes."""
    if path is None:
        return "<unknown>"
    if isinstance(path, bytes):
        return path.decode("utf-8", "backslashreplace")
    s = os.fspath(path)
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    return os.fsencode(s).decode("utf-8", "backslashreplace")


def is_media_file(path: str | os.PathLike) -> bool:
    """True when the file name has an extension the indexer picks up (case-insensitive)."""
    return Path(os.fsdecode(path)).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class MediaInfo:
    """What ``probe`` learns about a file.

    ``width``/``height`` are the displayed size (square pixels, rotation applied); ``rotation`` is how
    far (degrees, counter-clockwise: 0/90/180/270) the display matrix turns the stored picture, which
    every frame this module returns already has applied. ``fps`` is the average rate (variable frame
    rate files included); ``n_frames`` is None when the container does not say.
    """

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotation: int = 0
    n_frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    format_name: str | None = None
    size_bytes: int = 0


@dataclass
class Segment:
    """One time window of a file with its sampled frames and its audio at every requested rate."""

    video_id: str
    index: int
    start: float
    end: float
    frames: list[np.ndarray] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    audio: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def segment_id(self) -> str:
        return f"{self.video_id}#{self.index}"

    @property
    def duration(self) -> float:
        return self.end - self.start


# ---------------------------------------------------------------------------------------------- opening


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError("PyAV is not installed: pip install 'mmfuse[video]'") from e
    return av


def _ffmpeg_reason(err: BaseException) -> str:
    msg = getattr(err, "strerror", None) or str(err)
    msg = str(msg).strip().rstrip(".")
    # PyAV appends ": '<filename>'" to errors; the file is already named by MediaError.
    cut = msg.find(": '")
    if cut > 0:
        msg = msg[:cut]
    return msg


@contextlib.contextmanager
def _as_media_errors(p: Path) -> Iterator[None]:
    """Turn the OS errors of reading ``p`` into one-line MediaErrors that name the file."""
    try:
        yield
    except FileNotFoundError:
        raise MediaError(p, "no such file") from None
    except PermissionError:
        raise MediaError(p, "permission denied") from None
    except IsADirectoryError:
        raise MediaError(p, "is a directory, not a media file") from None
    except OSError as e:
        raise MediaError(p, f"cannot read: {e.strerror}") from None


def _check_file(path: str | os.PathLike) -> tuple[Path, int]:
    p = Path(os.fsdecode(path)) if isinstance(path, bytes) else Path(path)
    with _as_media_errors(p):
        st = p.stat()
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    if st.st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p, st.st_size


class _Opened:
    """An open container plus the file handle it reads from (when the name is not UTF-8)."""

    def __init__(self, path: str | os.PathLike):
        av = _av()
        self.path, self.size = _check_file(path)
        self._fh = None
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except PermissionError:
            raise MediaError(self.path, "permission denied") from None
        except OSError as e:
            raise MediaError(self.path, f"cannot read: {e.strerror}") from None
        name = os.fspath(self.path)
        try:
            os.fsencode(name).decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        try:
            if utf8:
                fh.close()
                self.container = av.open(name, mode="r")
            else:
                # FFmpeg takes UTF-8 names only; a Python file object reads any name.
                self._fh = fh
                self.container = av.open(fh, mode="r", buffer_size=1 << 20)
        except PermissionError:
            fh.close()
            raise MediaError(self.path, "permission denied") from None
        except av.error.FFmpegError as e:
            fh.close()
            raise MediaError(
                self.path, f"not a readable audio/video file (corrupt, truncated or wrong format: {_ffmpeg_reason(e)})"
            ) from None
        except (OSError, ValueError) as e:
            fh.close()
            raise MediaError(self.path, f"cannot open: {_ffmpeg_reason(e)}") from None
        c = self.container
        self.video = None
        self.audio = None
        for s in c.streams.video:
            if s.disposition & av.stream.Disposition.attached_pic:
                continue  # cover art in audio files is not video
            if s.codec_context is None or not s.codec_context.width:
                continue
            self.video = s
            break
        for s in c.streams.audio:
            if s.codec_context is not None and s.codec_context.sample_rate:
                self.audio = s
                break
        if self.video is None and self.audio is None:
            self.close()
            raise MediaError(self.path, "no audio or video stream")
        self.t0 = c.start_time / 1_000_000 if c.start_time is not None else 0.0
        self.bad = 0
        self.packets = 0
        self._duration: float | None = None
        self.last_error: BaseException | None = None
        self._started: set[int] = set()
        self._check_index()
        if self.video is not None:
            cc = self.video.codec_context
            cc.thread_type = "AUTO"
            cc.thread_count = 0

    def _check_index(self) -> None:
        """Containers with a sample index (MP4/MOV) name where every packet lies: catch truncation early."""
        end = 0
        for s in (self.video, self.audio):
            if s is None:
                continue
            try:
                entries = s.index_entries
            except Exception:  # noqa: BLE001 - not every demuxer keeps an index
                continue
            if not entries:
                continue
            n = len(entries)
            for e in (entries[i] for i in range(max(0, n - 64), n)):
                if e.pos >= 0 and e.size > 0:
                    end = max(end, e.pos + e.size)
        if end > self.size:
            self.close()
            raise MediaError(
                self.path, f"truncated file: its index points to byte {end:,} but the file has {self.size:,} bytes"
            )

    def decode(self, stream: Any, pkt: Any) -> list:
        """Decode one packet (None drains); a packet the decoder rejects is counted and skipped."""
        av = _av()
        self.packets += 1
        try:
            frames = stream.codec_context.decode(pkt)
        except av.error.EOFError:
            return []
        except av.error.FFmpegError as e:
            # Packets before a stream's first picture (a clip cut between keyframes) fail normally.
            if stream.index in self._started:
                self.bad += 1
                self.last_error = e
            return []
        if frames:
            self._started.add(stream.index)
        return frames

    def check_decoded(self, what: str) -> None:
        if self.bad >= _MIN_BAD and self.bad > _MAX_BAD_SHARE * self.packets:
            raise MediaError(
                self.path,
                f"corrupt {what}: {self.bad} of {self.packets} packets could not be decoded "
                f"({_ffmpeg_reason(self.last_error)})",
            )

    def stream_end(self, s: Any) -> float | None:
        """Where a stream's header says it ends (seconds from the file start), None if unknown or bogus."""
        if s is None or not s.duration or s.time_base is None:
            return None
        start = float(s.start_time * s.time_base) - self.t0 if s.start_time is not None else 0.0
        end = start + float(s.duration * s.time_base)
        return end if -5.0 <= start and end <= 1.5 * self.duration() + 5.0 else None

    def check_complete(self, ends: dict[int, float]) -> None:
        """``ends``: stream index -> time the demuxed data reached; compare with each stream's header."""
        for s in (self.video, self.audio):
            declared = self.stream_end(s)
            if declared is None or s.index not in ends:
                continue  # no header, or one that disagrees with the file (wrapped timestamps)
            if ends[s.index] < declared - max(_TRUNCATION_SLACK_S, 0.02 * declared):
                raise MediaError(
                    self.path,
                    f"truncated file: {s.type} data ends at {ends[s.index]:.1f} s of {declared:.1f} s",
                )

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a broken container must not mask the real error
            pass
        if self._fh is not None:
            self._fh.close()

    def __enter__(self) -> _Opened:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def decode_error(self, err: BaseException, what: str) -> MediaError:
        return MediaError(self.path, f"decoding {what} failed (corrupt or truncated file: {_ffmpeg_reason(err)})")

    def duration(self) -> float:
        if self._duration is None:
            self._duration = self._find_duration()
        return self._duration

    def _find_duration(self) -> float:
        c = self.container
        whole = c.duration / 1_000_000 if c.duration is not None and c.duration > 0 else 0.0
        streams = 0.0
        for s in (self.video, self.audio):
            if s is not None and s.duration and s.time_base is not None:
                streams = max(streams, float(s.duration * s.time_base))
        # A container duration far beyond every stream's comes from a wrapped timestamp (MPEG-TS
        # stores 33-bit ones): trust the streams then.
        if whole > 0 and (streams <= 0 or whole <= 1.5 * streams + 5.0):
            return whole
        if streams > 0:
            return streams
        return self._scan_duration()

    def _scan_duration(self) -> float:
        """Duration from packet timestamps (containers without a duration header): demux, no decode."""
        av = _av()
        end = 0.0
        streams = [s for s in (self.video, self.audio) if s is not None]
        try:
            for pkt in self.container.demux(streams):
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is None or pkt.time_base is None:
                    continue
                dur = pkt.duration or 0
                end = max(end, float((ts + dur) * pkt.time_base) - self.t0)
        except av.error.FFmpegError as e:
            raise self.decode_error(e, "packets") from None
        try:
            self.container.seek(0)
        except av.error.FFmpegError:
            pass
        return end


# ---------------------------------------------------------------------------------------------- probe / hash


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read stream headers (and the first video frame, for its rotation) without decoding the file."""
    with _Opened(path) as o:
        duration = o.duration()
        width = height = None
        fps = None
        rotation = 0
        n_frames = None
        vcodec = acodec = None
        rate = channels = None
        if o.video is not None:
            vs = o.video
            cc = vs.codec_context
            width, height = _display_size(cc.width, cc.height, vs.sample_aspect_ratio)
            rate_q = vs.average_rate or vs.guessed_rate or vs.base_rate
            fps = float(rate_q) if rate_q else None
            n_frames = int(vs.frames) if vs.frames else None
            vcodec = cc.name
            rotation = _first_frame_rotation(o)
            if rotation % 180:
                width, height = height, width
        if o.audio is not None:
            ac = o.audio.codec_context
            rate = int(ac.sample_rate)
            channels = int(ac.channels) if getattr(ac, "channels", None) else None
            acodec = ac.name
        return MediaInfo(
            path=os.fspath(o.path),
            duration=float(duration),
            has_video=o.video is not None,
            has_audio=o.audio is not None,
            width=width,
            height=height,
            fps=fps,
            rotation=rotation,
            n_frames=n_frames,
            sample_rate=rate,
            channels=channels,
            video_codec=vcodec,
            audio_codec=acodec,
            format_name=o.container.format.name if o.container.format else None,
            size_bytes=o.size,
        )


def _first_frame_rotation(o: _Opened) -> int:
    av = _av()
    try:
        for pkt in o.container.demux(o.video):
            for frame in o.decode(o.video, pkt):
                return _rotation_of(frame)
            if o.bad > 8:
                break
    except av.error.FFmpegError as e:
        raise o.decode_error(e, "the first video frame") from None
    raise MediaError(o.path, "no video frame could be decoded")


def _rotation_of(frame: Any) -> int:
    try:
        rot = frame.rotation
    except Exception:  # noqa: BLE001 - older PyAV without display-matrix support
        return 0
    if not rot:
        return 0
    return int(round(rot / 90.0)) % 4 * 90


def content_hash(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read in chunks (flat memory for any file size)."""
    p = Path(os.fsdecode(path)) if isinstance(path, bytes) else Path(path)
    h = hashlib.sha256()
    with _as_media_errors(p), open(p, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- frames


def _display_size(w: int, h: int, sar: Any) -> tuple[int, int]:
    """Square-pixel size of a coded w x h picture (anamorphic sources get their width stretched)."""
    if sar and sar.numerator > 0 and sar.denominator > 0 and sar != 1:
        w = max(1, int(round(w * float(sar))))
    return int(w), int(h)


class _FrameConverter:
    """Turns decoded frames into RGB uint8 arrays of the requested max side, rotation applied."""

    def __init__(self, stream: Any, size: int | None):
        if size is not None and (not isinstance(size, (int, np.integer)) or size < 2):
            raise ParameterError(f"size must be an integer >= 2 (max side in pixels), got {size!r}")
        self.size = None if size is None else int(size)
        self.sar = stream.sample_aspect_ratio
        self._cache: dict[tuple[int, int], tuple[int, int]] = {}

    def _target(self, w: int, h: int) -> tuple[int, int]:
        key = (w, h)
        if key not in self._cache:
            dw, dh = _display_size(w, h, self.sar)
            if self.size is not None and max(dw, dh) > self.size:
                # A cap, not a target: upscaling adds pixels but no detail, and costs every consumer.
                scale = self.size / max(dw, dh)
                dw, dh = max(1, int(round(dw * scale))), max(1, int(round(dh * scale)))
            self._cache[key] = (dw, dh)
        return self._cache[key]

    def __call__(self, frame: Any) -> np.ndarray:
        w, h = self._target(frame.width, frame.height)
        if (w, h) == (frame.width, frame.height):
            rgb = frame.to_ndarray(format="rgb24")
        else:
            interp = "AREA" if w < frame.width else "BICUBIC"
            rgb = frame.reformat(width=w, height=h, format="rgb24", interpolation=interp).to_ndarray()
        k = _rotation_of(frame) // 90
        if k:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
        return rgb


def _frame_time(frame: Any, o: _Opened, tb: float | None, fallback: float) -> float:
    if frame.pts is None:
        return fallback
    ftb = frame.time_base
    if ftb is not None:
        return float(frame.pts * ftb) - o.t0
    if tb is not None:
        return frame.pts * tb - o.t0
    return fallback


def _note_end(pkt: Any, o: _Opened, ends: dict[int, float]) -> None:
    ts = pkt.pts if pkt.pts is not None else pkt.dts
    if ts is None or pkt.time_base is None:
        return
    end = float((ts + (pkt.duration or 0)) * pkt.time_base) - o.t0
    idx = pkt.stream.index
    if end > ends.get(idx, -math.inf):
        ends[idx] = end


def _uniform_times(start: float, end: float, n: int) -> list[float]:
    step = (end - start) / n
    return [start + (i + 0.5) * step for i in range(n)]


def _keyframe_times(o: _Opened) -> np.ndarray | None:
    vs = o.video
    try:
        entries = vs.index_entries
    except Exception:  # noqa: BLE001 - not every demuxer keeps an index
        return None
    if not entries:
        return None
    tb = float(vs.time_base)
    ks = [e.timestamp for e in entries if e.is_keyframe]
    if not ks:
        return None
    return np.sort(np.asarray(ks, dtype=np.float64) * tb - o.t0)


def sample_frames(
    path: str | os.PathLike,
    n: int | None = None,
    times: Sequence[float] | None = None,
    size: int | None = None,
) -> list[np.ndarray]:
    """Frames at ``times`` (seconds) or at ``n`` uniform times (centres of n equal spans; default 8).

    Each frame is the one on screen at that time (last frame with pts <= t), as HxWx3 uint8 RGB with
    the display rotation applied; ``size`` caps the longer side at ``size`` pixels
    (downscaling only; smaller pictures keep their size). Seeks to the
    keyframe before each target instead of decoding everything between far-apart targets. Audio-only
    files give ``[]``.
    """
    if n is not None and times is not None:
        raise ParameterError("sample_frames: give n or times, not both")
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 0):
        raise ParameterError(f"sample_frames: n must be a non-negative integer, got {n!r}")
    av = _av()
    with _Opened(path) as o:
        if o.video is None:
            return []
        if times is None:
            count = 8 if n is None else int(n)
            if count == 0:
                return []
            times = _uniform_times(0.0, o.duration(), count)
        targets = [float(t) for t in times]
        if not targets:
            return []
        if any(not math.isfinite(t) for t in targets):
            raise ParameterError("sample_frames: times must be finite numbers")
        convert = _FrameConverter(o.video, size)
        order = sorted(range(len(targets)), key=targets.__getitem__)
        out: list[np.ndarray | None] = [None] * len(targets)
        try:
            _seek_sample(o, [targets[i] for i in order], order, out, convert)
        except av.error.FFmpegError as e:
            raise o.decode_error(e, "video frames") from None
        o.check_decoded("video")
        if all(f is None for f in out):
            raise MediaError(o.path, "no video frame could be decoded")
        last = None
        for i in order:
            if out[i] is None:
                out[i] = last
            last = out[i]
        # Targets before the first decodable frame take the first one.
        first = next(out[i] for i in order if out[i] is not None)
        return [f if f is not None else first for f in out]


def _seek_sample(o: _Opened, targets: list[float], order: list[int], out: list, convert) -> None:
    """Resolve sorted ``targets`` with the GOP sampler, seeking when a keyframe lies between the
    demuxer's position and the next target (so far-apart targets never read the bytes between)."""
    sampler = _GopSampler(o, targets, convert)
    keys = _keyframe_times(o)
    n = len(targets)
    pkts = None
    pos = -math.inf

    def should_seek(t: float) -> bool:
        if keys is not None:
            k = int(np.searchsorted(keys, t + _EPS, side="right")) - 1
            return k >= 0 and keys[k] > pos + _EPS
        return t - pos > _SEEK_GAP_S

    back = 0.0  # how far before the target the last seek aimed
    retry = False
    retries = 0
    while sampler.resolved < n:
        j = sampler.resolved
        if pkts is None or retry or should_seek(targets[j]):
            seek_at = max(targets[j] - back, 0.0)
            _seek(o, seek_at, float(o.video.time_base))
            sampler.reset()
            pkts = iter(o.container.demux(o.video))
            pos = -math.inf
            retry = False
        for pkt in pkts:
            if pkt.size == 0 and pkt.dts is None:
                continue
            pt = sampler._pkt_time(pkt)
            if pt is not None and pt > pos:
                pos = pt
            before = sampler.resolved
            sampler.packet(pkt)
            late, sampler.late = sampler.late, None
            if late is not None and late == j and seek_at > 0 and retries < 8:
                # Timestamp-searched formats (MPEG-TS, no index) can land after the target the seek
                # aimed at: the frame on screen then was missed, so seek earlier and try again.
                retries += 1
                sampler.unresolve(late)
                back = max(1.0, 2 * back)
                retry = True
                break
            if sampler.resolved >= n:
                break
            if sampler.resolved > before:
                back, retries = 0.0, 0
                if should_seek(targets[sampler.resolved]):
                    break
        else:
            break  # end of stream: finish() resolves what is left with the last frame
    sampler.finish()
    for j, f in enumerate(sampler.frames):
        out[order[j]] = f


def _seek(o: _Opened, t: float, tb: float) -> None:
    ts = int(math.floor((t + o.t0) / tb))
    o.container.seek(ts, stream=o.video, backward=True, any_frame=False)


# ---------------------------------------------------------------------------------------------- audio


def _resampler(av: Any, rate: int) -> Any:
    # rematrix_maxval=1 makes the downmix an average of the channels (FFmpeg's default gain of 0.707
    # per channel would push full-scale stereo past 1.0).
    try:
        return av.AudioResampler(format="flt", layout="mono", rate=rate, options={"rematrix_maxval": "1.0"})
    except TypeError:  # PyAV without resampler options
        return av.AudioResampler(format="flt", layout="mono", rate=rate)


class _AudioSink:
    """Resamples decoded audio to mono float32 at several rates; hands out spans by time."""

    def __init__(self, rates: Sequence[int], duration: float):
        av = _av()
        self.rates = [int(r) for r in rates]
        self.duration = duration
        self.res = {r: _resampler(av, r) for r in self.rates}
        self.chunks: dict[int, list[np.ndarray]] = {r: [] for r in self.rates}
        self.base: dict[int, int] = {r: 0 for r in self.rates}  # sample index of chunks[r][0][0]
        self.total: dict[int, int] = {r: 0 for r in self.rates}  # samples received (incl. padding)
        self.started = False
        self.done = False

    def push(self, frame: Any, start_time: float) -> None:
        if not self.started:
            self.started = True
            if not -1.0 <= start_time <= self.duration:
                start_time = 0.0  # a wrapped or bogus first timestamp: the samples start the file
            # Sample 0 is time 0: pad a late start with silence, drop pre-roll before time 0.
            for r in self.rates:
                lead = int(round(start_time * r))
                if lead > 0:
                    self._append(r, np.zeros(lead, np.float32))
                elif lead < 0:
                    self.base[r] = lead  # negative base: samples before 0 are trimmed on take()
                    self.total[r] = lead
        for r in self.rates:
            for out in self.res[r].resample(frame):
                self._append(r, out.to_ndarray().reshape(-1).astype(np.float32, copy=False))

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if not self.started:
            return
        for r in self.rates:
            for out in self.res[r].resample(None):
                self._append(r, out.to_ndarray().reshape(-1).astype(np.float32, copy=False))

    def _append(self, r: int, a: np.ndarray) -> None:
        if a.size:
            self.chunks[r].append(a)
            self.total[r] += a.size

    def ready(self, end: float) -> bool:
        if self.done:
            return True
        return all(self.total[r] >= int(round(end * r)) for r in self.rates)

    def take(self, start: float, end: float) -> dict[int, np.ndarray]:
        """Samples in [start, end); everything before ``end`` is released."""
        out = {}
        for r in self.rates:
            a, b = int(round(start * r)), int(round(end * r))
            buf = np.concatenate(self.chunks[r]) if len(self.chunks[r]) > 1 else (
                self.chunks[r][0] if self.chunks[r] else np.zeros(0, np.float32))
            base = self.base[r]
            lo, hi = max(a - base, 0), max(min(b - base, buf.size), 0)
            seg = buf[lo:hi] if hi > lo else np.zeros(0, np.float32)
            out[r] = np.ascontiguousarray(seg, dtype=np.float32)
            rest = buf[max(b - base, 0):]
            self.chunks[r] = [rest] if rest.size else []
            self.base[r] = max(b, base)
        return out


def load_audio(path: str | os.PathLike, rate: int = 16000) -> np.ndarray:
    """The whole audio track as mono float32 at ``rate`` Hz (PyAV's resampler); empty if no audio stream.

    Sample 0 is time 0 of the file (a late audio start is padded with silence).
    """
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ParameterError(f"load_audio: rate must be a positive integer (Hz), got {rate!r}")
    av = _av()
    with _Opened(path) as o:
        if o.audio is None:
            return np.zeros(0, np.float32)
        sink = _AudioSink([int(rate)], o.duration())
        ends: dict[int, float] = {}
        try:
            for pkt in o.container.demux(o.audio):
                _note_end(pkt, o, ends)
                for frame in o.decode(o.audio, pkt):
                    sink.push(frame, _frame_time(frame, o, None, 0.0))
        except av.error.FFmpegError as e:
            raise o.decode_error(e, "audio") from None
        o.check_decoded("audio")
        o.check_complete(ends)
        sink.finish()
        chunks = sink.chunks[int(rate)]
        a = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if sink.base[int(rate)] < 0:
            a = a[-sink.base[int(rate)]:]
        return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- segments


def segment_bounds(duration: float, window: float | None = 10.0, min_tail: float = 1.0) -> list[tuple[float, float]]:
    """Fixed windows over [0, duration]; a file no longer than one window is one segment and a tail
    shorter than ``min_tail`` seconds joins the previous window."""
    if window is not None and (not math.isfinite(window) or window <= 0):
        raise ParameterError(f"window must be a positive number of seconds or None, got {window!r}")
    duration = max(float(duration), 0.0)
    if window is None or duration <= window + _EPS:
        return [(0.0, duration)]
    n = int(math.ceil(duration / window - 1e-9))
    if n > 1 and duration - (n - 1) * window < min_tail:
        n -= 1
    bounds = [(i * window, (i + 1) * window) for i in range(n)]
    bounds[-1] = (bounds[-1][0], duration)
    return bounds


def iter_segments(
    path: str | os.PathLike,
    window: float | None = 10.0,
    frames_per_segment: int = 4,
    audio_rates: Sequence[int] = (16000,),
    frame_size: int | None = None,
    *,
    frame_rate: float | None = None,
    video_id: str | None = None,
    min_tail: float = 1.0,
) -> Iterator[Segment]:
    """Stream a file as fixed time windows in ONE demux pass feeding every modality.

    Each segment carries ``frames_per_segment`` frames at uniform times inside the window (or one
    every ``1/frame_rate`` s when ``frame_rate`` is given; ``frame_size`` caps the longer side, as
    ``size`` in :func:`sample_frames`) and the window's audio as mono float32 at each rate in
    ``audio_rates``. Packets of GOPs that hold no sampled time are demuxed but never
    decoded. Memory is bounded by one window of audio plus one GOP of compressed video, whatever the
    file length. ``video_id`` defaults to the file stem (``\\xNN`` escapes for non-UTF-8 bytes).
    Files without video give empty ``frames``; files without audio give empty arrays per rate.

    Some damage only shows while decoding (truncated data, many undecodable packets): then
    ``MediaError`` is raised after earlier segments were yielded; treat the whole file as failed.
    """
    if not isinstance(frames_per_segment, (int, np.integer)) or frames_per_segment < 0:
        raise ParameterError(f"frames_per_segment must be a non-negative integer, got {frames_per_segment!r}")
    if frame_rate is not None and (not math.isfinite(frame_rate) or frame_rate <= 0):
        raise ParameterError(f"frame_rate must be a positive number of frames per second, got {frame_rate!r}")
    rates = []
    for r in audio_rates:
        if not isinstance(r, (int, np.integer)) or r <= 0:
            raise ParameterError(f"audio_rates must be positive integers (Hz), got {r!r}")
        if int(r) not in rates:
            rates.append(int(r))
    return _iter_segments(path, window, int(frames_per_segment), rates, frame_size, frame_rate, video_id, min_tail)


def _iter_segments(path, window, n_frames, rates, frame_size, frame_rate, video_id, min_tail) -> Iterator[Segment]:
    av = _av()
    with _Opened(path) as o:
        vid = video_id if video_id is not None else display_name(o.path.stem)
        bounds = segment_bounds(o.duration(), window, min_tail)
        want_video = o.video is not None and (n_frames > 0 or frame_rate is not None)
        want_audio = o.audio is not None and bool(rates)
        seg_times: list[list[float]] = []
        for s, e in bounds:
            if not want_video:
                seg_times.append([])
            elif frame_rate is not None:
                k = max(1, int(math.floor((e - s) * frame_rate + 1e-9)))
                seg_times.append([s + (i + 0.5) / frame_rate for i in range(k)])
            else:
                seg_times.append(_uniform_times(s, e, n_frames))
        flat = [t for ts in seg_times for t in ts]
        video = _GopSampler(o, flat, _FrameConverter(o.video, frame_size)) if want_video else None
        sink = _AudioSink(rates, bounds[-1][1]) if want_audio else None
        streams = [s for s, w in ((o.video, want_video), (o.audio, want_audio)) if w]
        next_seg = 0
        offset = 0  # index into flat of next_seg's first frame

        def complete() -> Iterator[Segment]:
            nonlocal next_seg, offset
            while next_seg < len(bounds):
                s, e = bounds[next_seg]
                k = len(seg_times[next_seg])
                if video is not None and video.resolved < offset + k:
                    return
                if sink is not None and not sink.ready(e):
                    return
                frames = video.frames[offset:offset + k] if video is not None else []
                if video is not None:
                    video.release(offset + k)
                audio = sink.take(s, e) if sink is not None else {r: np.zeros(0, np.float32) for r in rates}
                yield Segment(vid, next_seg, float(s), float(e), list(frames), list(seg_times[next_seg]), audio)
                offset += k
                next_seg += 1

        ends: dict[int, float] = {}
        # A video track that stops long before the audio (a still picture over a long recording)
        # must not hold back every later window's audio until the end of the file.
        v_end = o.stream_end(o.video) if want_video and want_audio else None
        v_idx = o.video.index if want_video else -1
        try:
            if streams:
                for pkt in o.container.demux(streams):
                    if pkt.size == 0 and pkt.dts is None:
                        continue  # demuxer flush packet; decoders are drained below
                    _note_end(pkt, o, ends)
                    if pkt.stream is o.audio:
                        for frame in o.decode(o.audio, pkt):
                            sink.push(frame, _frame_time(frame, o, None, 0.0))
                        if (v_end is not None and ends.get(v_idx, -math.inf) >= v_end - 1.0
                                and ends[pkt.stream.index] > v_end + 1.0):
                            video.finish()  # every remaining target shows the last frame
                            v_end = None
                    elif video is not None:
                        video.packet(pkt)
                    yield from complete()
            o.check_decoded("stream")
            o.check_complete(ends)
            if sink is not None:
                for frame in o.decode(o.audio, None):
                    sink.push(frame, _frame_time(frame, o, None, 0.0))
                sink.finish()
            if video is not None:
                video.finish()
            o.check_decoded("stream")
        except av.error.FFmpegError as e:
            raise o.decode_error(e, "the stream") from None
        yield from complete()
        if next_seg < len(bounds):  # pragma: no cover - defensive: every target resolves at finish()
            raise MediaError(o.path, "decoding ended before every segment was complete")


class _GopSampler:
    """Decodes only the GOPs that contain sampled times; frames in presentation order pick targets.

    The frame for a target time t is the last frame with pts <= t. Packets are buffered from each
    keyframe; a GOP is decoded when a packet at or past the next target arrives or when the next
    keyframe shows the target fell inside it, and is otherwise dropped without decoding.
    """

    def __init__(self, o: _Opened, targets: list[float], convert):
        self.o = o
        self.targets = targets
        self.convert = convert
        self.frames: list[np.ndarray | None] = [None] * len(targets)
        self.resolved = 0
        self.released = 0
        self.cc = o.video.codec_context
        self.tb = float(o.video.time_base)
        self.gop: list[Any] = []
        self.gop_bytes = 0
        self.prev = None
        self.prev_t = -math.inf
        self.prev_rgb = None
        self.fed = False  # decoder has packets since the last flush
        self.last_rgb = None
        self.skip = "DEFAULT"
        self.cc.skip_frame = "DEFAULT"
        self.late: int | None = None  # first target resolved with a frame shown after it

    # -- frame side
    def _on_frame(self, frame: Any) -> None:
        t = _frame_time(frame, self.o, self.tb, self.prev_t + 1e-3 if self.prev_t > -math.inf else 0.0)
        while self.resolved < len(self.targets) and t > self.targets[self.resolved] + _EPS:
            if self.prev is None and self.late is None:
                self.late = self.resolved
            self._assign(self.prev if self.prev is not None else frame)
        self.prev, self.prev_t, self.prev_rgb = frame, t, None

    def _assign(self, frame: Any) -> None:
        if frame is self.prev:
            if self.prev_rgb is None:
                self.prev_rgb = self.convert(frame)
            rgb = self.prev_rgb
        else:
            rgb = self.convert(frame)
        self.frames[self.resolved] = rgb
        self.last_rgb = rgb
        self.resolved += 1

    def _decode(self, pkt: Any) -> None:
        self.fed = True
        for frame in self.o.decode(self.o.video, pkt):
            self._on_frame(frame)

    def _drain(self) -> None:
        if self.skip != "DEFAULT":
            self.cc.skip_frame = self.skip = "DEFAULT"
        if self.fed:
            for frame in self.o.decode(self.o.video, None):
                self._on_frame(frame)
            self.cc.flush_buffers()
            self.fed = False

    def unresolve(self, j: int) -> None:
        """Forget the frames chosen for targets ``j`` and later (before seeking back for them)."""
        for i in range(j, self.resolved):
            self.frames[i] = None
        self.resolved = min(self.resolved, j)
        self.late = None

    def reset(self) -> None:
        """After a seek: forget the GOP and the decoder state, keep the resolved targets."""
        self.cc.flush_buffers()
        self.fed = False
        self.gop, self.gop_bytes = [], 0
        self.prev, self.prev_t, self.prev_rgb = None, -math.inf, None
        self.late = None

    def release(self, upto: int) -> None:
        for i in range(self.released, upto):
            self.frames[i] = None
        self.released = max(self.released, upto)

    # -- packet side
    def _pkt_time(self, pkt: Any) -> float | None:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        if ts is None:
            return None
        return ts * self.tb - self.o.t0

    def _feed(self) -> None:
        gop, self.gop, self.gop_bytes = self.gop, [], 0
        if not gop:
            return
        nxt = self.targets[self.resolved] if self.resolved < len(self.targets) else math.inf
        times = [self._pkt_time(p) for p in gop]
        # A frame shown before another known frame that is still at or before the next target is
        # never on screen at any pending target, so the decoder may drop it if nothing references it
        # (skip_frame=NONREF: B-frames, a third to a half of typical H.264). Exact, unlike a margin.
        latest = max((x for x in times if x is not None and x <= nxt + _EPS), default=-math.inf)
        for p, x in zip(gop, times):
            skip = "NONREF" if x is not None and x < latest - _EPS else "DEFAULT"
            if skip != self.skip:
                self.cc.skip_frame = self.skip = skip
            self._decode(p)

    def packet(self, pkt: Any) -> None:
        if self.resolved >= len(self.targets):
            return  # every target has its frame: the rest is demuxed for audio only
        t = self._pkt_time(pkt)
        if pkt.is_keyframe and t is not None:
            if t > self.targets[self.resolved] + _EPS:
                # The pending target lies before this keyframe: its frame is in the GOP we hold.
                self._feed()
                self._drain()
                while self.resolved < len(self.targets) and self.targets[self.resolved] + _EPS < t:
                    if self.prev is None:
                        break  # nothing shown before it (start of file or seek): this keyframe's frame will do
                    self._assign(self.prev)
                if self.resolved >= len(self.targets):
                    return
            else:
                # No sampled time before this keyframe: the rest of the old GOP is never decoded.
                if self.fed:
                    self.cc.flush_buffers()
                    self.fed = False
                self.gop, self.gop_bytes = [], 0
                self.prev, self.prev_t, self.prev_rgb = None, -math.inf, None
        self.gop.append(pkt)
        self.gop_bytes += pkt.size
        # Feed the decoder only up to the packet that reaches the next sampled time; the decoder keeps
        # its state, so a later target in the same GOP continues from here.
        if t is None or t + _EPS >= self.targets[self.resolved] or self.gop_bytes > _MAX_GOP_BUFFER_BYTES:
            self._feed()

    def _skip_unresolvable(self) -> None:
        # No frame decoded at all before this target (e.g. a broken GOP): reuse the last good frame.
        if self.late is None:
            self.late = self.resolved
        self.frames[self.resolved] = self.last_rgb
        self.resolved += 1

    def finish(self) -> None:
        if self.resolved < len(self.targets):
            self._feed()
            self._drain()
        self.gop = []
        while self.resolved < len(self.targets):
            if self.prev is not None:
                self._assign(self.prev)
            else:
                self._skip_unresolvable()
        if any(f is None for f in self.frames[self.released:]):
            first = next((f for f in self.frames[self.released:] if f is not None), None)
            if first is None and self.last_rgb is None:
                raise MediaError(self.o.path, "no video frame could be decoded")
            fill = first if first is not None else self.last_rgb
            # Leading targets with no earlier frame take the first decoded one.
            for i in range(self.released, len(self.frames)):
                if self.frames[i] is None:
                    self.frames[i] = fill
                else:
                    break
