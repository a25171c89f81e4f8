"""Decode + frame-sampling speed of mmfuse.ingest (frames, segments), in seconds of video per second of wall time.

Generates a long H.264/AAC clip (default 5 min, 640x360, 30 fps, x264's default keyframe interval)
in a temp dir, then times, on it and on the committed sample corpus:

* ``iter_segments`` with the indexing defaults (10 s windows, 4 frames/segment, 16 kHz audio) and a
  heavier setting (16 frames/segment at 224 px, audio at 16 and 48 kHz);
* ``sample_frames`` (seek-based) for 32 frames spread over the file;
* a reference in the same run: decoding every video frame and all audio with plain PyAV.

It samples the resident set size after every segment to show memory stays flat while streaming.
Target (issue 5): decode + frame sampling >= 20x real time on 2 CPU cores. Run::

    python benchmarks/media_speed.py [--minutes 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmfuse.ingest.frames import sample_frames  # noqa: E402
from mmfuse.ingest.probe import is_media_file, probe  # noqa: E402
from mmfuse.ingest.segments import iter_segments  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process, decoder threads included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def speed(duration: float, wall: float, cpu: float) -> dict:
    # Wall-clock speed depends on what else the machine runs; media seconds per CPU second does not
    # (much), and an idle 2-core machine runs at least that fast in wall time.
    return {"wall_seconds": round(wall, 3), "x_realtime": round(duration / wall, 1),
            "cpu_seconds": round(cpu, 3), "x_realtime_per_cpu_second": round(duration / cpu, 1)}


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_long_video(path: Path, minutes: float, size=(640, 360), fps: int = 30) -> Path:
    """Moving gradients, texture and a sliding box with a tone + noise audio track (H.264 + AAC)."""
    import av

    w, h = size
    n = int(minutes * 60 * fps)
    c = av.open(str(path), "w", options={"movflags": "+faststart"})
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "veryfast", "b": "1000k", "maxrate": "1500k", "bufsize": "2000k"}
    a = c.add_stream("aac", rate=44100)
    a.layout = "stereo"
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    # A fine texture scrolled across moving gradients with a sliding box: detail and motion like
    # camera footage at a bitrate near web 360p H.264 (1-2 Mbit/s). Frames repeat with a 4 s period
    # (too far apart for the encoder to reference), and the picture inverts every 20 s (scene cuts).
    texture = np.repeat(np.repeat(rng.integers(0, 12, (h // 2, w), dtype=np.uint8), 2, 0), 2, 1)
    period = 4 * fps
    cycle = []
    for i in range(period):
        t = i / fps
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = (xx + 3 * i) % 256
        img[..., 1] = (yy + 2 * i) % 256
        img[..., 2] = int(128 + 100 * np.sin(2 * np.pi * t / 4))
        off = (2 * i) % w
        img += texture[:, off:off + w, None]
        cx = int((w - 80) * (0.5 + 0.5 * np.sin(2 * np.pi * t / 4)))
        img[100:180, cx:cx + 80] = (255, 255, 255)
        cycle.append([av.VideoFrame.from_ndarray(x, format="rgb24").reformat(format="yuv420p") for x in (img, 255 - img)])
    for i in range(n):
        f = cycle[i % period][(i // (fps * 20)) % 2]
        f.pts, f.time_base = i, fractions.Fraction(1, fps)
        for p in vs.encode(f):
            c.mux(p)
    for p in vs.encode(None):
        c.mux(p)
    sr, total, pos = 44100, int(minutes * 60 * 44100), 0
    while pos < total:
        k = min(1024, total - pos)
        tt = np.arange(pos, pos + k) / sr
        x = (0.3 * np.sin(2 * np.pi * 220 * tt) + 0.05 * rng.standard_normal(k)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
        af.sample_rate, af.pts, af.time_base = sr, pos, fractions.Fraction(1, sr)
        for p in a.encode(af):
            c.mux(p)
        pos += k
    for p in a.encode(None):
        c.mux(p)
    c.close()
    return path


def time_segments(files, **kw) -> dict:
    duration = sum(probe(f).duration for f in files)
    rss = []
    n_seg = n_frames = 0
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    for f in files:
        for seg in iter_segments(f, **kw):
            n_seg += 1
            n_frames += len(seg.frames)
            rss.append(rss_mib())
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    tail = rss[len(rss) // 10:] or rss
    return {
        "media_seconds": round(duration, 1),
        **speed(duration, wall, cpu),
        "segments": n_seg,
        "frames": n_frames,
        "rss_mib_first_10pct": round(rss[0], 1) if rss else None,
        "rss_mib_min_after_10pct": round(min(tail), 1) if tail else None,
        "rss_mib_max_after_10pct": round(max(tail), 1) if tail else None,
    }


def time_sample_frames(path: Path, n: int) -> dict:
    duration = probe(path).duration
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    frames = sample_frames(path, n=n, size=224)
    wall = time.perf_counter() - t0
    return {"frames": len(frames), **speed(duration, wall, cpu_seconds() - c0)}


def time_decode_all(path: Path) -> dict:
    """Reference: plain PyAV decoding every video frame and every audio frame (threaded decoder)."""
    import av

    duration = probe(path).duration
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        if c.streams.video:
            c.streams.video[0].thread_type = "AUTO"
        frames = sum(1 for _ in c.decode(*c.streams))
    wall = time.perf_counter() - t0
    return {"decoded_frames": frames, "media_seconds": round(duration, 1), **speed(duration, wall, cpu_seconds() - c0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the generated video")
    ap.add_argument("--corpus", type=Path, default=REPO / "examples" / "corpus")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--video", type=Path, default=None, help="reuse (or create once) the long video at this path")
    args = ap.parse_args()

    import av

    out: dict = {"cpu_count": os.cpu_count(), "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
                 "pyav": av.__version__}
    corpus = sorted(p for p in args.corpus.iterdir() if is_media_file(p))
    out["corpus_default"] = time_segments(corpus)
    ref = [time_decode_all(f) for f in corpus]
    dur = sum(r["media_seconds"] for r in ref)
    out["corpus_decode_all_reference"] = speed(
        dur, sum(r["wall_seconds"] for r in ref), sum(r["cpu_seconds"] for r in ref))
    with tempfile.TemporaryDirectory() as tmp:
        long = args.video or Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        if not long.exists():
            make_long_video(long, args.minutes)
        info = probe(long)
        out["long_file"] = {
            "minutes": round(info.duration / 60, 2),
            "size": f"{info.width}x{info.height}",
            "fps": info.fps,
            "mib": round(long.stat().st_size / 2**20, 1),
            "generate_seconds": round(time.perf_counter() - t0, 1),
        }
        out["long_default"] = time_segments([long])
        out["long_heavy_16f_224px_16k_48k"] = time_segments(
            [long], frames_per_segment=16, frame_size=224, audio_rates=(16000, 48000)
        )
        out["long_sample_frames_32_seek"] = time_sample_frames(long, 32)
        out["long_decode_all_reference"] = time_decode_all(long)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
