"""A media file as fixed time windows (:class:`Segment`: frames and audio at every rate a model needs), streamed in
ONE demux pass by :func:`iter_segments`: what the indexer feeds every modality from."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmfuse.errors import ParameterError

from ._opener import EPS, MediaError, Opened, display_name, frame_time, note_end, pyav
from .audio import AudioSink
from .frames import FrameConverter, GopSampler, uniform_times

__all__ = ["Segment", "iter_segments", "segment_bounds"]


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


def segment_bounds(duration: float, window: float | None = 10.0, min_tail: float = 1.0) -> list[tuple[float, float]]:
    """Fixed windows over [0, duration]; a file no longer than one window is one segment and a tail
    shorter than ``min_tail`` seconds joins the previous window."""
    if window is not None and (not math.isfinite(window) or window <= 0):
        raise ParameterError(f"window must be a positive number of seconds or None, got {window!r}")
    duration = max(float(duration), 0.0)
    if window is None or duration <= window + EPS:
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
    av = pyav()
    with Opened(path) as o:
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
                seg_times.append(uniform_times(s, e, n_frames))
        flat = [t for ts in seg_times for t in ts]
        video = GopSampler(o, flat, FrameConverter(o.video, frame_size)) if want_video else None
        sink = AudioSink(rates, bounds[-1][1]) if want_audio else None
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
                    note_end(pkt, o, ends)
                    if pkt.stream is o.audio:
                        for frame in o.decode(o.audio, pkt):
                            sink.push(frame, frame_time(frame, o, None, 0.0))
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
                    sink.push(frame, frame_time(frame, o, None, 0.0))
                sink.finish()
            if video is not None:
                video.finish()
            o.check_decoded("stream")
        except av.error.FFmpegError as e:
            raise o.decode_error(e, "the stream") from None
        yield from complete()
        if next_seg < len(bounds):  # pragma: no cover - defensive: every target resolves at finish()
            raise MediaError(o.path, "decoding ended before every segment was complete")
