"""Per-item encode cost of each retriever model on this machine (CPU), for the README.

CLIP and CLAP have no offline weights here, so they are timed with the real architectures
(open_clip ViT-B-32, transformers' default CLAP = the laion/clap-htsat-unfused shape) and random weights:
speed does not depend on the weight values. OCR, ASR and the sentence encoder use the bundled models.

    python benchmarks/encode_speed.py [--only clip,clap,ocr,asr,dense,bm25] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (lazy loading, allocator, oneDNN kernels)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def _frames(n: int, h: int = 360, w: int = 640) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


def bench_clip(repeat: int) -> dict:
    import open_clip
    import torch

    from mmfuse.encoders.clip import ClipEncoder, score

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        ckpt = Path(d) / "vitb32_random.pt"
        torch.save(model.state_dict(), ckpt)
        t = time.perf_counter()
        enc = ClipEncoder("ViT-B-32", checkpoint=ckpt)
        enc.load()
        load_s = time.perf_counter() - t
        frames = _frames(32)
        img_s = _time(lambda: enc.encode_frames(frames), repeat) / len(frames)
        texts = [f"a person doing activity number {i}" for i in range(32)]
        txt_s = _time(lambda: enc.encode_text(texts), repeat) / len(texts)
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40_000, 512)).astype(np.float32)
    owner = np.repeat(np.arange(10_000), 4)
    q = rng.normal(size=(1, 512)).astype(np.float32)
    pool = {p: _time(lambda p=p: score(q, f, owner, p), repeat) for p in ("mean", "max", "softmax", "maxsim")}
    return {"model": "ViT-B-32 (random weights)", "load_s": load_s, "frame_ms": img_s * 1e3, "text_ms": txt_s * 1e3,
            "score_1q_10k_segments_x4_frames_ms": {k: v * 1e3 for k, v in pool.items()}}


def bench_clap(repeat: int) -> dict:
    import tempfile

    from tokenizers import ByteLevelBPETokenizer
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    from mmfuse.encoders.clap import ClapEncoder

    with tempfile.TemporaryDirectory() as d:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(["a dog barks", "rain falls"] * 10, vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
        bpe.save_model(d)
        tok = RobertaTokenizer.from_pretrained(d, model_max_length=77)
        # Default ClapConfig = HTSAT-tiny audio + RoBERTa-base text, i.e. laion/clap-htsat-unfused's shape.
        ClapModel(ClapConfig()).save_pretrained(d)
        ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tok).save_pretrained(d)
        t = time.perf_counter()
        enc = ClapEncoder(d)
        enc.load()
        load_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        clips = [(0.1 * rng.normal(size=48000 * 10)).astype(np.float32) for _ in range(8)]
        per_clip = _time(lambda: enc.encode_audio(clips), repeat) / len(clips)
        texts = [f"the sound of thing {i}" for i in range(16)]
        txt_s = _time(lambda: enc.encode_text(texts), repeat) / len(texts)
    return {"model": "CLAP HTSAT-unfused shape (random weights)", "load_s": load_s,
            "audio_10s_clip_ms": per_clip * 1e3, "text_ms": txt_s * 1e3}


def _text_frame(text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (640, 360), (20, 40, 90))
    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 40)
    except OSError:
        font = ImageFont.load_default(size=40)
    ImageDraw.Draw(img).text((40, 150), text, fill="white", font=font)
    return np.asarray(img)


def bench_ocr(repeat: int) -> dict:
    from mmfuse.encoders.ocr import OcrExtractor

    ocr = OcrExtractor()
    t = time.perf_counter()
    ocr.load()
    load_s = time.perf_counter() - t
    with_text = _text_frame("SUMMER FESTIVAL 2024")
    blank = np.full((360, 640, 3), 128, np.uint8)
    text_s = _time(lambda: ocr.read(with_text), repeat)
    blank_s = _time(lambda: ocr.read(blank), repeat)
    seg = [with_text] * 4
    seg_s = _time(lambda: ocr.extract(seg), repeat)
    return {"model": "rapidocr-onnxruntime PP-OCRv4", "load_s": load_s, "frame_with_text_ms": text_s * 1e3,
            "blank_frame_ms": blank_s * 1e3, "segment_4_identical_frames_ms": seg_s * 1e3}


def bench_asr(repeat: int) -> dict:
    import shutil
    import subprocess
    import tempfile
    import wave

    from mmfuse.encoders.whisper import WhisperTranscriber

    asr = WhisperTranscriber()
    t = time.perf_counter()
    asr.load()
    load_s = time.perf_counter() - t
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as d:
            wav = f"{d}/s.wav"
            text = ("The committee met on Tuesday to discuss the new library budget. "
                    "Several members asked for more evening hours and a larger children's section.")
            subprocess.run(["espeak-ng", "-w", wav, text], check=True, capture_output=True)
            with wave.open(wav) as w:
                rate, raw = w.getframerate(), w.readframes(w.getnframes())
        a = np.frombuffer(raw, np.int16).astype(np.float32) / 32768
        audio = np.interp(np.arange(int(len(a) * 16000 / rate)) / 16000, np.arange(len(a)) / rate, a)
        audio = audio.astype(np.float32)
        source = "espeak-ng speech"
    else:
        from mmfuse.ingest.audio import load_audio

        audio = load_audio("examples/corpus/v02_squares.mp4", 16000)
        source = "examples/corpus/v02_squares.mp4"
    seconds = len(audio) / 16000
    s = _time(lambda: asr.transcribe(audio), repeat)
    return {"model": "faster-whisper tiny.en int8 (bundled)", "load_s": load_s, "audio": source,
            "audio_s": seconds, "wall_s": s, "x_real_time": seconds / s}


def bench_dense(repeat: int) -> dict:
    from mmfuse.encoders.text import DenseTextEncoder

    enc = DenseTextEncoder()
    t = time.perf_counter()
    enc.load()
    load_s = time.perf_counter() - t
    texts = [f"a short transcript sentence about topic number {i} and some more words" for i in range(64)]
    s = _time(lambda: enc.encode(texts), repeat) / len(texts)
    q = _time(lambda: enc.encode(["one query"]), repeat)
    return {"model": "all-MiniLM-L6-v2 (bundled)", "load_s": load_s, "sentence_ms_batched": s * 1e3,
            "single_query_ms": q * 1e3}


def bench_bm25(repeat: int) -> dict:
    from mmfuse.store.bm25 import OCR_ANALYZER, WORD_ANALYZER, Bm25Index

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(5000)])
    docs = [" ".join(rng.choice(vocab, size=12)) for _ in range(10_000)]
    queries = [" ".join(rng.choice(vocab, size=3)) for _ in range(200)]
    out = {}
    for name, an in (("words", WORD_ANALYZER), ("words+char3-5", OCR_ANALYZER)):
        t = time.perf_counter()
        ix = Bm25Index.build(docs, an)
        build = time.perf_counter() - t
        s = _time(lambda ix=ix: ix.search(queries, k=100), repeat) / len(queries)
        out[name] = {"build_10k_docs_s": build, "query_ms": s * 1e3}
    return out


BENCHES = {"clip": bench_clip, "clap": bench_clap, "ocr": bench_ocr, "asr": bench_asr, "dense": bench_dense,
           "bm25": bench_bm25}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    results = {"torch_threads": torch.get_num_threads()}
    for name in args.only.split(","):
        results[name] = BENCHES[name](args.repeat)
        print(name, json.dumps(results[name], indent=1), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
