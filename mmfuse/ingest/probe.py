"""What a media file is before decoding it: the extensions the indexer picks up, :func:`probe` (stream headers as a
:class:`MediaInfo`), :func:`content_hash` (the identity incremental indexing compares) and :class:`MediaError`, the
one-line error every media function raises for a file it cannot read."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ._opener import MediaError, Opened, display_name, display_size, media_errors, pyav, rotation_of

__all__ = [
    "AUDIO_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "MediaInfo",
    "content_hash",
    "display_name",
    "is_media_file",
    "probe",
]

_VIDEO_ONLY_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
     ".wmv", ".flv", ".3gp", ".ogv", ".gif"}
)
AUDIO_EXTENSIONS = frozenset({".m4a", ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".aac", ".wma"})
# The indexer scans VIDEO_EXTENSIONS; audio-only files are included on purpose because they index
# as videos without frames (audio/ASR modalities only).
VIDEO_EXTENSIONS = _VIDEO_ONLY_EXTENSIONS | AUDIO_EXTENSIONS


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


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read stream headers (and the first video frame, for its rotation) without decoding the file."""
    with Opened(path) as o:
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
            width, height = display_size(cc.width, cc.height, vs.sample_aspect_ratio)
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


def _first_frame_rotation(o: Opened) -> int:
    av = pyav()
    try:
        for pkt in o.container.demux(o.video):
            for frame in o.decode(o.video, pkt):
                return rotation_of(frame)
            if o.bad > 8:
                break
    except av.error.FFmpegError as e:
        raise o.decode_error(e, "the first video frame") from None
    raise MediaError(o.path, "no video frame could be decoded")


def content_hash(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read in chunks (flat memory for any file size)."""
    p = Path(os.fsdecode(path)) if isinstance(path, bytes) else Path(path)
    h = hashlib.sha256()
    with media_errors(p), open(p, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
