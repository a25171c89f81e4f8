"""Indexing speed (seconds of video per second of wall time, per modality and in total) and search latency.

1. Index the committed sample corpus with OCR + ASR + metadata (the bundled offline models), then a
   longer generated video made by concatenating the corpus clips (real speech, real on-screen text)
   until it lasts ``--long-minutes``. Reported per stage: seconds of video / seconds spent in that
   stage (summed over worker threads), and in total: seconds of video / wall seconds of the run.
   CLIP/CLAP are left out by default (no real weights offline; tiny random models would time nothing
   useful); pass ``--clip-model/--clip-pretrained/--clip-checkpoint`` or ``--clap-model`` to add them.
2. Build a synthetic index of ``--videos`` x ``--segments`` segments (>= 10,000 rows: OCR and ASR text
   from a word list, 512-d visual frame vectors, 384-d ASR dense vectors) and time 1,000 single-query
   searches per modality and fused (all modalities + ``mmfuse.fusion`` default), excluding query-encoder
   time (query vectors are precomputed). Reported: p50 / p95 in ms, and the cold first query.

Targets (issue 5, 2 CPU cores): OCR+ASR indexing >= 2x real time; search p50 <= 50 ms. Run::

    python benchmarks/index_speed.py [--long-minutes 3] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO / "examples" / "corpus"

STAGES = ("decode", "probe", "hash", "visual", "audio", "ocr", "asr", "dense", "write")


def make_long_video(path: Path, minutes: float, fps: int = 25) -> Path:
    """Concatenate the corpus clips (frames resampled to ``fps`` at 320x240, audio at 16 kHz) until ``minutes``."""
    from mmfuse.ingest.audio import load_audio
    from mmfuse.ingest.frames import sample_frames
    from mmfuse.ingest.probe import probe
    from mmfuse.ingest.synth import MediaWriter

    clips = [p for p in sorted(CORPUS.glob("*.mp4")) if probe(p).has_audio]
    n_video = 0
    target = minutes * 60
    i = 0
    with MediaWriter(path, size=(320, 240), fps=fps, video_options={"preset": "veryfast"}, audio_rate=16000,
                     faststart=False) as out:
        while n_video / fps < target:
            clip = clips[i % len(clips)]
            i += 1
            info = probe(clip)
            times = list(np.arange(0, info.duration - 1e-3, 1 / fps))
            frames = sample_frames(clip, times=times)
            for f in frames:
                if f.shape[:2] != (240, 320):
                    from PIL import Image

                    f = np.asarray(Image.fromarray(f).resize((320, 240)))
                out.frame(f)
                n_video += 1
            audio = load_audio(clip, 16000)
            want = int(round(len(frames) / fps * 16000))
            out.write_audio(np.pad(audio, (0, max(0, want - len(audio))))[:want])
    return path


def bench_indexing(video_dir: Path, args, label: str) -> dict:
    from mmfuse.ingest import IndexConfig, index_folder

    mods = ["ocr", "asr", "meta"]
    if args.clip_model or args.clip_checkpoint:
        mods.append("visual")
    if args.clap_model:
        mods.append("audio")
    tmp = Path(tempfile.mkdtemp(prefix="mmfuse-bench-"))
    try:
        cfg = IndexConfig(modalities=mods, workers=args.workers, clip_model=args.clip_model,
                          clip_pretrained=args.clip_pretrained, clip_checkpoint=args.clip_checkpoint,
                          clap_model=args.clap_model)
        t0 = time.perf_counter()
        s = index_folder(video_dir, tmp / "idx", cfg)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    secs = s.seconds
    work = wall - s.timings.get("load_models", 0.0)
    out = {
        "set": label, "files": len(s.indexed), "failed": len(s.failed), "video_s": round(secs, 1),
        "segments": s.segments, "wall_s": round(wall, 1), "load_models_s": round(s.timings.get("load_models", 0.0), 1),
        "x_realtime_total": round(secs / wall, 2) if wall else None,
        "x_realtime_excl_model_load": round(secs / work, 2) if work else None,
        "stage_s": {k: round(v, 2) for k, v in s.timings.items()},
        "x_realtime_per_stage": {k: round(secs / s.timings[k], 1) for k in STAGES if s.timings.get(k)},
    }
    if s.timings.get("ocr") and s.timings.get("asr"):
        out["x_realtime_ocr_plus_asr"] = round(secs / (s.timings["ocr"] + s.timings["asr"] + s.timings.get("decode", 0)), 2)
    return out


WORDS = ("lighthouse volcano dinosaur giraffe telescope submarine hammock garden tomatoes train chicago cactus piano "
         "concert dinner museum holiday kitten library cooking desert survival wedding skateboard fireworks basketball "
         "river mountain bridge bakery weather morning festival summer winter ocean forest castle rocket guitar market "
         "station airport harbor island village school hospital theater stadium circus zoo farm tractor bicycle").split()


class _FixedEncoder:
    """Returns precomputed query vectors so the timing excludes the query encoder."""

    def __init__(self, dim: int, seed: int, spec: dict) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim, self.spec = dim, spec
        self.bank = self.rng.standard_normal((1024, dim)).astype(np.float32)
        self.i = 0

    def encode_text(self, texts):
        out = self.bank[[(self.i + j) % len(self.bank) for j in range(len(texts))]]
        self.i += len(texts)
        return out


def build_synthetic(path: Path, n_videos: int, n_segments: int, seed: int = 0) -> None:
    from mmfuse.store.lance import IndexStore, VideoRecord

    rng = np.random.default_rng(seed)
    words = np.asarray(WORDS)
    vis_spec = {"kind": "synthetic", "model": "random-512"}
    dense_spec = {"kind": "synthetic", "model": "random-384"}
    specs = {"visual": ("visual", vis_spec, ""), "ocr": ("ocr", {"kind": "synthetic"}, ""),
             "asr": ("asr", {"kind": "synthetic"}, ""), "asr_dense": ("asr_dense", dense_spec, "")}
    with IndexStore.create(path) as store:
        batch = []
        for v in range(n_videos):
            vid = f"vid{v:05d}"
            segs, vis_ids, vis_t = [], [], []
            for s in range(n_segments):
                ocr = " ".join(rng.choice(words, 3))
                asr = " ".join(rng.choice(words, 12))
                segs.append({"video_id": vid, "segment_id": f"{vid}#{s}", "seg_index": s, "start": 10.0 * s,
                             "end": 10.0 * s + 10, "ocr_text": ocr.upper().replace(" ", ""), "asr_text": asr})
                vis_ids += [f"{vid}#{s}"] * 4
                vis_t += [10.0 * s + 1.25 + 2.5 * j for j in range(4)]
            batch.append(VideoRecord(
                video_id=vid, path=f"/synthetic/{vid}.mp4", content_hash=f"h{v}", info={"duration": 10.0 * n_segments},
                segments=segs,
                vectors={"visual": {"segment_id": vis_ids, "frame_time": vis_t,
                                    "vector": rng.standard_normal((len(vis_ids), 512)).astype(np.float32)},
                         "asr_dense": {"segment_id": [r["segment_id"] for r in segs], "frame_time": None,
                                       "vector": rng.standard_normal((len(segs), 384)).astype(np.float32)}},
                subtitles=[], modalities=["visual", "ocr", "asr"]))
            if len(batch) == 200:
                store.write_videos(batch, specs)
                batch = []
        store.write_videos(batch, specs)
        store.optimize()


def bench_search(n_videos: int, n_segments: int, n_queries: int, k: int) -> dict:
    from mmfuse.fusion import fuse
    from mmfuse.retrievers import AsrRetriever, DenseTextRetriever, OcrRetriever, VisualRetriever
    from mmfuse.store.lance import IndexStore

    tmp = Path(tempfile.mkdtemp(prefix="mmfuse-bench-search-"))
    try:
        t0 = time.perf_counter()
        build_synthetic(tmp / "idx", n_videos, n_segments)
        build_s = time.perf_counter() - t0
        store = IndexStore.open(tmp / "idx")
        n_rows = store.stats()["segments"]
        rng = np.random.default_rng(1)
        queries = [" ".join(rng.choice(WORDS, int(rng.integers(1, 4)))) for _ in range(n_queries)]
        rets = [
            OcrRetriever(store), AsrRetriever(store),
            VisualRetriever(store, encoder=_FixedEncoder(512, 2, {}), pooling="mean"),
            DenseTextRetriever(store, "asr_dense", encoder=_FixedEncoder(384, 3, {}), min_score=None),
        ]
        depth = max(k, 100)
        out = {"segments": n_rows, "frames": n_rows * 4, "videos": n_videos, "queries": n_queries,
               "build_index_s": round(build_s, 1), "cold_first_query_ms": {}, "p50_ms": {}, "p95_ms": {}}
        for r in rets:  # cold: loads the table into memory / builds or loads the BM25 cache
            t = time.perf_counter()
            r.search([queries[0]], depth)
            out["cold_first_query_ms"][r.name] = round(1000 * (time.perf_counter() - t), 1)
        lat: dict[str, list[float]] = {r.name: [] for r in rets}
        lat["fused (all 4 + fusion)"] = []
        for q in queries:
            qd = {"q": q}
            t_all = time.perf_counter()
            runs = []
            for r in rets:
                t = time.perf_counter()
                runs.append(r.search(qd, depth))
                lat[r.name].append(time.perf_counter() - t)
            fuse(runs, depth=depth, queries=["q"])  # the default fusion, with the coverage rule of search
            lat["fused (all 4 + fusion)"].append(time.perf_counter() - t_all)
        for name, xs in lat.items():
            a = np.asarray(xs) * 1000
            out["p50_ms"][name] = round(float(np.percentile(a, 50)), 2)
            out["p95_ms"][name] = round(float(np.percentile(a, 95)), 2)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-minutes", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=12)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clip-model")
    ap.add_argument("--clip-pretrained")
    ap.add_argument("--clip-checkpoint")
    ap.add_argument("--clap-model")
    ap.add_argument("--skip-indexing", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import os

    result: dict = {"cpus": os.cpu_count(), "workers": args.workers}
    if not args.skip_indexing:
        result["corpus"] = bench_indexing(CORPUS, args, "sample corpus")
        print(json.dumps(result["corpus"], indent=1), flush=True)
        tmp = Path(tempfile.mkdtemp(prefix="mmfuse-bench-long-"))
        try:
            make_long_video(tmp / "long.mp4", args.long_minutes)
            result["long"] = bench_indexing(tmp, args, f"generated {args.long_minutes:g}-min video")
            print(json.dumps(result["long"], indent=1), flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.skip_search:
        result["search"] = bench_search(args.videos, args.segments, args.queries, args.k)
        print(json.dumps(result["search"], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
