"""Frames of a video as RGB arrays: :func:`sample_frames` (seeking to the keyframe before far-apart targets), the
GOP sampler and frame converter that :func:`mmfuse.ingest.segments.iter_segments` shares, and :func:`tile_frames`,
frames letterboxed into one grid image (the S-Grid of the reranker and of captioning)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmfuse.errors import ParameterError

from ._opener import EPS, MediaError, Opened, display_size, frame_time, pyav, rotation_of

__all__ = ["fit_frame", "sample_frames", "tile_frames"]

# Without a keyframe index, targets closer than this are reached by demuxing forward, not seeking.
_SEEK_GAP_S = 10.0
# Bound on compressed packets buffered per GOP before the sampler gives up skipping.
_MAX_GOP_BUFFER_BYTES = 64 << 20


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
    av = pyav()
    with Opened(path) as o:
        if o.video is None:
            return []
        if times is None:
            count = 8 if n is None else int(n)
            if count == 0:
                return []
            times = uniform_times(0.0, o.duration(), count)
        targets = [float(t) for t in times]
        if not targets:
            return []
        if any(not math.isfinite(t) for t in targets):
            raise ParameterError("sample_frames: times must be finite numbers")
        convert = FrameConverter(o.video, size)
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


def _seek_sample(o: Opened, targets: list[float], order: list[int], out: list, convert) -> None:
    """Resolve sorted ``targets`` with the GOP sampler, seeking when a keyframe lies between the
    demuxer's position and the next target (so far-apart targets never read the bytes between)."""
    sampler = GopSampler(o, targets, convert)
    keys = _keyframe_times(o)
    n = len(targets)
    pkts = None
    pos = -math.inf

    def should_seek(t: float) -> bool:
        if keys is not None:
            k = int(np.searchsorted(keys, t + EPS, side="right")) - 1
            return k >= 0 and keys[k] > pos + EPS
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


def _seek(o: Opened, t: float, tb: float) -> None:
    ts = int(math.floor((t + o.t0) / tb))
    o.container.seek(ts, stream=o.video, backward=True, any_frame=False)


def _keyframe_times(o: Opened) -> np.ndarray | None:
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


def uniform_times(start: float, end: float, n: int) -> list[float]:
    step = (end - start) / n
    return [start + (i + 0.5) * step for i in range(n)]


class FrameConverter:
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
            dw, dh = display_size(w, h, self.sar)
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
        k = rotation_of(frame) // 90
        if k:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
        return rgb


class GopSampler:
    """Decodes only the GOPs that contain sampled times; frames in presentation order pick targets.

    The frame for a target time t is the last frame with pts <= t. Packets are buffered from each
    keyframe; a GOP is decoded when a packet at or past the next target arrives or when the next
    keyframe shows the target fell inside it, and is otherwise dropped without decoding.
    """

    def __init__(self, o: Opened, targets: list[float], convert):
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
        t = frame_time(frame, self.o, self.tb, self.prev_t + 1e-3 if self.prev_t > -math.inf else 0.0)
        while self.resolved < len(self.targets) and t > self.targets[self.resolved] + EPS:
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
        latest = max((x for x in times if x is not None and x <= nxt + EPS), default=-math.inf)
        for p, x in zip(gop, times):
            skip = "NONREF" if x is not None and x < latest - EPS else "DEFAULT"
            if skip != self.skip:
                self.cc.skip_frame = self.skip = skip
            self._decode(p)

    def packet(self, pkt: Any) -> None:
        if self.resolved >= len(self.targets):
            return  # every target has its frame: the rest is demuxed for audio only
        t = self._pkt_time(pkt)
        if pkt.is_keyframe and t is not None:
            if t > self.targets[self.resolved] + EPS:
                # The pending target lies before this keyframe: its frame is in the GOP we hold.
                self._feed()
                self._drain()
                while self.resolved < len(self.targets) and self.targets[self.resolved] + EPS < t:
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
        if t is None or t + EPS >= self.targets[self.resolved] or self.gop_bytes > _MAX_GOP_BUFFER_BYTES:
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


def fit_frame(frame: Any, cell: tuple[int, int], background: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """One frame (an RGB array or a PIL image) letterboxed into a ``cell`` = (width, height) PIL image, keeping its
    aspect ratio."""
    from PIL import Image

    img = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame))
    w, h = cell
    scale = min(w / img.width, h / img.height)
    nw, nh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    img = img.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR)
    out = Image.new("RGB", cell, background)
    out.paste(img, ((w - nw) // 2, (h - nh) // 2))
    return out


def tile_frames(frames: Sequence[Any], rows: int, cols: int, cell: tuple[int, int],
                background: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """Frames tiled row-major into one PIL image of ``rows`` x ``cols`` cells (time runs left to right, top to
    bottom); frames past ``rows * cols`` are dropped, missing cells stay ``background``."""
    from PIL import Image

    grid = Image.new("RGB", (cols * cell[0], rows * cell[1]), background)
    for i, frame in enumerate(list(frames)[: rows * cols]):
        r, c = divmod(i, cols)
        grid.paste(fit_frame(frame, cell, background), (c * cell[0], r * cell[1]))
    return grid
