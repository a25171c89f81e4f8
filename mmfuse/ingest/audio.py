"""Audio of a media file as mono float32: :func:`load_audio` (a whole track) and the resampling sink that
:func:`mmfuse.ingest.segments.iter_segments` feeds, which hands out spans by time at several rates at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfuse.errors import ParameterError

from ._opener import Opened, frame_time, note_end, pyav

__all__ = ["load_audio"]


def load_audio(path: str | os.PathLike, rate: int = 16000) -> np.ndarray:
    """The whole audio track as mono float32 at ``rate`` Hz (PyAV's resampler); empty if no audio stream.

    Sample 0 is time 0 of the file (a late audio start is padded with silence).
    """
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ParameterError(f"load_audio: rate must be a positive integer (Hz), got {rate!r}")
    av = pyav()
    with Opened(path) as o:
        if o.audio is None:
            return np.zeros(0, np.float32)
        sink = AudioSink([int(rate)], o.duration())
        ends: dict[int, float] = {}
        try:
            for pkt in o.container.demux(o.audio):
                note_end(pkt, o, ends)
                for frame in o.decode(o.audio, pkt):
                    sink.push(frame, frame_time(frame, o, None, 0.0))
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


def _resampler(av: Any, rate: int) -> Any:
    # rematrix_maxval=1 makes the downmix an average of the channels (FFmpeg's default gain of 0.707
    # per channel would push full-scale stereo past 1.0).
    try:
        return av.AudioResampler(format="flt", layout="mono", rate=rate, options={"rematrix_maxval": "1.0"})
    except TypeError:  # PyAV without resampler options
        return av.AudioResampler(format="flt", layout="mono", rate=rate)


class AudioSink:
    """Resamples decoded audio to mono float32 at several rates; hands out spans by time."""

    def __init__(self, rates: Sequence[int], duration: float):
        av = pyav()
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
