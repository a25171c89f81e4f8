"""Opening a media file with PyAV, shared by probe, frames, audio and segments: the checks before FFmpeg sees the
file, stream selection, bad-packet accounting, truncation checks and the one-line :class:`MediaError`.

Private to :mod:`mmfuse.ingest`; ``MediaError`` and ``display_name`` are public through :mod:`mmfuse.ingest.probe`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmfuse.errors import InputError
from mmfuse.utils.lazy import require

EPS = 1e-6
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


def pyav() -> Any:
    """The ``av`` module; a missing PyAV is an :class:`InputError` naming the extra to install."""
    return require("av", error=InputError)


def ffmpeg_reason(err: BaseException) -> str:
    msg = getattr(err, "strerror", None) or str(err)
    msg = str(msg).strip().rstrip(".")
    # PyAV appends ": '<filename>'" to errors; the file is already named by MediaError.
    cut = msg.find(": '")
    if cut > 0:
        msg = msg[:cut]
    return msg


@contextlib.contextmanager
def media_errors(p: Path) -> Iterator[None]:
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


def check_file(path: str | os.PathLike) -> tuple[Path, int]:
    p = Path(os.fsdecode(path)) if isinstance(path, bytes) else Path(path)
    with media_errors(p):
        st = p.stat()
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    if st.st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p, st.st_size


class Opened:
    """An open container plus the file handle it reads from (when the name is not UTF-8)."""

    def __init__(self, path: str | os.PathLike):
        av = pyav()
        self.path, self.size = check_file(path)
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
                self.path, f"not a readable audio/video file (corrupt, truncated or wrong format: {ffmpeg_reason(e)})"
            ) from None
        except (OSError, ValueError) as e:
            fh.close()
            raise MediaError(self.path, f"cannot open: {ffmpeg_reason(e)}") from None
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
        av = pyav()
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
                f"({ffmpeg_reason(self.last_error)})",
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

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def decode_error(self, err: BaseException, what: str) -> MediaError:
        return MediaError(self.path, f"decoding {what} failed (corrupt or truncated file: {ffmpeg_reason(err)})")

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
        av = pyav()
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


def rotation_of(frame: Any) -> int:
    try:
        rot = frame.rotation
    except Exception:  # noqa: BLE001 - older PyAV without display-matrix support
        return 0
    if not rot:
        return 0
    return int(round(rot / 90.0)) % 4 * 90


def display_size(w: int, h: int, sar: Any) -> tuple[int, int]:
    """Square-pixel size of a coded w x h picture (anamorphic sources get their width stretched)."""
    if sar and sar.numerator > 0 and sar.denominator > 0 and sar != 1:
        w = max(1, int(round(w * float(sar))))
    return int(w), int(h)


def frame_time(frame: Any, o: Opened, tb: float | None, fallback: float) -> float:
    if frame.pts is None:
        return fallback
    ftb = frame.time_base
    if ftb is not None:
        return float(frame.pts * ftb) - o.t0
    if tb is not None:
        return frame.pts * tb - o.t0
    return fallback


def note_end(pkt: Any, o: Opened, ends: dict[int, float]) -> None:
    ts = pkt.pts if pkt.pts is not None else pkt.dts
    if ts is None or pkt.time_base is None:
        return
    end = float((ts + (pkt.duration or 0)) * pkt.time_base) - o.t0
    idx = pkt.stream.index
    if end > ends.get(idx, -math.inf):
        ends[idx] = end
