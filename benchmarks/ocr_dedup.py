"""OCR calls saved by the near-duplicate test, and the text it costs, on the committed sample corpus.

Decodes every file with the indexing defaults (10 s windows, 4 frames per window, frames capped at 960 px), then per
segment runs ``OcrExtractor.extract`` (which reuses the text of frames it judges near-duplicates) and, as the
reference measured in the same run, OCR on every frame. Reported: frames, OCR calls made, calls saved, and the
segments whose de-duplicated text lacks a string the reference read on one of its frames (text lost to skipping).

    python benchmarks/ocr_dedup.py [--corpus examples/corpus] [--frames 4] [--window 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmfuse.encoders.ocr import OcrExtractor  # noqa: E402
from mmfuse.ingest.probe import is_media_file  # noqa: E402
from mmfuse.ingest.segments import iter_segments  # noqa: E402
from mmfuse.utils.text import squash  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "examples" / "corpus")
    ap.add_argument("--frames", type=int, default=4, help="frames per segment (mmfuse index --frames)")
    ap.add_argument("--window", type=float, default=10.0, help="segment length in seconds")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    ocr = OcrExtractor()
    read = ocr.read
    calls = 0

    def counted(frame):
        nonlocal calls
        calls += 1
        return read(frame)

    ocr.read = counted  # every OCR call extract() makes goes through here
    frames = segments = lost_segments = 0
    lost: list[dict] = []
    t_dedup = t_ref = 0.0
    for path in sorted(p for p in args.corpus.iterdir() if is_media_file(p)):
        for seg in iter_segments(path, window=args.window, frames_per_segment=args.frames, audio_rates=(),
                                 frame_size=960):
            if not seg.frames:
                continue
            segments += 1
            frames += len(seg.frames)
            t = time.perf_counter()
            got = ocr.extract(seg.frames)
            t_dedup += time.perf_counter() - t
            t = time.perf_counter()
            ref = [read(f) for f in seg.frames]
            t_ref += time.perf_counter() - t
            missing = {squash(x) for x in ref if x} - {squash(x) for x in got if x}
            if missing:
                lost_segments += 1
                lost.append({"segment": seg.segment_id, "missing": sorted(missing)})
    out = {
        "corpus": str(args.corpus), "segments": segments, "frames": frames, "ocr_calls": calls,
        "calls_saved": frames - calls, "saved_share": round((frames - calls) / frames, 3) if frames else 0.0,
        "segments_with_text_lost": lost_segments, "lost": lost,
        "dedup_seconds": round(t_dedup, 2), "every_frame_seconds": round(t_ref, 2),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
