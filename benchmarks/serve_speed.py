"""`mmfuse serve` benchmark: p50/p95 latency and throughput of GET /api/search for 1, 4 and 16 concurrent clients over
loopback, the time from start to the first answer, against two references measured in the same run: the library call
the server makes (``Pipeline.run`` + ``as_dict`` in this process, no HTTP) and one ``mmfuse search --json`` process.

The index is synthetic text, written through ``IndexStore.write_videos`` as ``mmfuse index`` writes it (cached under
``/tmp/mmfuse-bench``): ``--videos`` videos of ``--segments`` segments, each segment with an on-screen line (OCR) and a
spoken sentence (ASR, also its transcript), each video a title, description and tags (metadata); words drawn with
Zipf frequencies from a vocabulary of pronounceable made-up words; the dense twins (``asr_dense``, ``meta_dense``)
are random unit vectors of the bundled MiniLM's width (search cost does not depend on what the vectors hold; the
queries are still encoded by MiniLM). Queries are 1-4 words from the same vocabulary, skipping its 20 most frequent.

    .venv/bin/python benchmarks/serve_speed.py                          # 1,000 videos x 12 = 12,000 segments
    .venv/bin/python benchmarks/serve_speed.py --requests 64 --no-cli   # quick check

Targets (issue 14), on 2 cores: p50 <= 50 ms with the text modalities at 1 client, no errors at 16 clients.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LANCE_LOG", "error")

MMFUSE = str(Path(sys.executable).parent / "mmfuse")
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "or")]
DIM = 384  # all-MiniLM-L6-v2


def vocabulary(n: int, rng: np.random.Generator) -> list[str]:
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choice(SYLLABLES, size=rng.integers(2, 4)))] = None
    return list(words)


def zipf_words(vocab: list[str], rng: np.random.Generator, n: int, skip: int = 0) -> list[str]:
    ranks = np.arange(skip + 1, len(vocab) + 1, dtype=np.float64)
    p = ranks ** -1.07
    return [vocab[skip + i] for i in rng.choice(len(ranks), size=n, p=p / p.sum())]


def build_index(path: Path, videos: int, segments: int, seed: int = 0) -> None:
    """Write the synthetic index into ``path`` (through a temporary folder, so a half-built one is never reused)."""
    from mmfuse.encoders import load_encoder
    from mmfuse.store.lance import IndexStore, VideoRecord

    rng = np.random.default_rng(seed)
    vocab = vocabulary(4000, rng)
    dense = load_encoder("text", lazy=True).spec
    synthetic = {"kind": "synthetic", "seed": seed, "generator": "benchmarks/serve_speed.py"}
    specs = {"ocr": ("ocr", synthetic, ""), "asr": ("asr", synthetic, ""), "meta": ("meta", synthetic, ""),
             "asr_dense": ("asr_dense", dense, ""), "meta_dense": ("meta_dense", dense, "")}

    def sentence(lo: int, hi: int) -> str:
        return " ".join(zipf_words(vocab, rng, int(rng.integers(lo, hi + 1))))

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    with IndexStore.create(tmp) as store:
        for start in range(0, videos, 100):
            recs = []
            for v in range(start, min(videos, start + 100)):
                vid = f"v{v:05d}"
                segs = [{"video_id": vid, "segment_id": f"{vid}#{i}", "seg_index": i, "start": 10.0 * i,
                         "end": 10.0 * (i + 1), "ocr_text": sentence(1, 4).upper(), "asr_text": sentence(6, 16)}
                        for i in range(segments)]
                title, desc, tags = sentence(2, 5), sentence(6, 14), ", ".join(zipf_words(vocab, rng, 3))
                meta = {"video_id": vid, "segment_id": f"{vid}#meta", "start": 0.0, "end": 10.0 * segments,
                        "title": title, "description": desc, "tags": tags,
                        "text": " ".join([title, desc, tags.replace(",", "")])}
                recs.append(VideoRecord(
                    video_id=vid, path=f"/nonexistent/{vid}.mp4", content_hash=f"synthetic-{seed}-{vid}",
                    info={"duration": 10.0 * segments, "has_video": True, "has_audio": True, "width": 640,
                          "height": 360, "fps": 25.0},
                    segments=segs, meta=meta, modalities=["ocr", "asr", "meta"],
                    subtitles=[{"start": s["start"], "end": s["end"], "text": s["asr_text"]} for s in segs],
                    vectors={"asr_dense": {"segment_id": [s["segment_id"] for s in segs], "frame_time": None,
                                           "vector": unit(segments)},
                             "meta_dense": {"segment_id": [meta["segment_id"]], "frame_time": None,
                                            "vector": unit(1)}}))
            store.write_videos(recs, specs)
        store.optimize()
    tmp.rename(path)


def queries(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = vocabulary(4000, np.random.default_rng(0))  # the index's vocabulary (same generator, same seed)
    return [" ".join(zipf_words(vocab, rng, int(rng.integers(1, 5)), skip=20)) for _ in range(n)]


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def start_server(index: Path, log: Path) -> tuple[subprocess.Popen, str, float, float]:
    """(process, base URL, seconds from spawn to the first answered /api/health, warm-up seconds it reported)."""
    import httpx

    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([MMFUSE, "serve", "--index", str(index), "--port", "0"], stdout=subprocess.DEVNULL,
                                stderr=err)
    while proc.poll() is None:
        m = re.search(r"ready in ([0-9.]+) s at (http://\S+?)/ ", log.read_text())
        if m:
            url = m.group(2)
            httpx.get(url + "/api/health", timeout=60).raise_for_status()
            return proc, url, time.perf_counter() - t0, float(m.group(1))
        time.sleep(0.05)
    raise SystemExit(f"mmfuse serve exited with {proc.returncode}:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux): what a request costs, however busy the machine is."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, texts: list[str], clients: int, k: int, pid: int, path: str = "/api/search") -> dict:
    """``clients`` threads, each with its own keep-alive connection, send the ``texts`` as fast as answered."""
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    it = iter(texts)
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    q = next(it, None)
                if q is None:
                    return
                t = time.perf_counter()
                try:
                    r = c.get(path, params={"q": q, "k": k})
                    ok = r.status_code == 200 and ("hits" in r.json() or path != "/api/search")
                    why = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as e:
                    ok, why = False, repr(e)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(why)

    t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "first_error": errors[0] if errors else "",
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "throughput_qps": len(lat) / wall,
            "server_cpu_ms": 1000 * cpu / max(1, len(lat))}


def library_reference(index: Path, texts: list[str], k: int) -> dict:
    """The server's work without HTTP: the pipeline ``mmfuse search`` builds, one query per call, on the threads
    the server uses."""
    from mmfuse.app.serve import one_thread_per_call
    from mmfuse.pipeline import searcher

    one_thread_per_call()
    pipe = searcher(index)
    pipe.run({"q": "warm up"}, 1).as_dict("q")
    lat = []
    for q in texts:
        t = time.perf_counter()
        pipe.run({"q": q}, k).as_dict("q")
        lat.append(time.perf_counter() - t)
    return {"p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95)}


def cli_reference(index: Path, text: str, k: int) -> float:
    t = time.perf_counter()
    subprocess.run([MMFUSE, "search", text, "--index", str(index), "--k", str(k), "--json"], check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=12, help="segments per video")
    ap.add_argument("--requests", type=int, default=240, help="requests per concurrency level")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--cache", default="/tmp/mmfuse-bench", help="where the synthetic index is kept")
    ap.add_argument("--no-cli", action="store_true", help="skip the `mmfuse search` process reference")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    index = cache / f"serve-text-v1-{args.videos}x{args.segments}"
    if not index.exists():
        t = time.perf_counter()
        build_index(index, args.videos, args.segments)
        print(f"built {index} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    n_seg = args.videos * args.segments
    levels = [int(c) for c in args.clients.split(",")]
    texts = queries(args.requests * len(levels) + 1, seed=1)
    first, per_level = texts[0], [texts[1 + i * args.requests:1 + (i + 1) * args.requests] for i in range(len(levels))]

    load0 = os.getloadavg()[0]
    log = Path(tempfile.mkdtemp(prefix="serve-bench-")) / "serve.err"
    proc, url, ready_s, warm_s = start_server(index, log)
    try:
        import httpx

        t = time.perf_counter()
        httpx.get(url + "/api/search", params={"q": first, "k": args.k}, timeout=120).raise_for_status()
        first_ms = (time.perf_counter() - t) * 1000
        floor = load(url, per_level[0][:50], 1, args.k, proc.pid, "/api/health")
        rows = [load(url, batch, c, args.k, proc.pid) for c, batch in zip(levels, per_level)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    log_lines = log.read_text().splitlines()
    shutil.rmtree(log.parent, ignore_errors=True)
    cli_s = None if args.no_cli else cli_reference(index, first, args.k)  # before this process limits threads
    lib = library_reference(index, per_level[0], args.k)
    busy = os.getloadavg()[0]

    print(f"\nmmfuse serve on {n_seg:,} segments ({args.videos:,} videos; ocr, asr, meta, asr_dense, meta_dense), "
          f"k={args.k}, {os.cpu_count()} CPUs, load average {load0:.1f} at the start, {busy:.1f} at the end")
    print(f"start to ready: {ready_s:.1f} s (warm-up {warm_s:.1f} s); first query after start: {first_ms:.0f} ms")
    print("\n| clients | requests | errors | p50 ms | p95 ms | queries/s | server CPU ms/query |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
              f"| {r['throughput_qps']:.1f} | {r['server_cpu_ms']:.1f} |")
    one = rows[0]
    print(f"\nreference, the same queries through Pipeline.run in-process: p50 {lib['p50_ms']:.1f} ms, "
          f"p95 {lib['p95_ms']:.1f} ms (HTTP p50 / library p50 = {one['p50_ms'] / lib['p50_ms']:.2f})")
    print(f"reference, GET /api/health (HTTP and the app, no search): p50 {floor['p50_ms']:.1f} ms, "
          f"server CPU {floor['server_cpu_ms']:.1f} ms a request")
    if cli_s is not None:
        print(f"reference, one `mmfuse search --json` process: {cli_s:.1f} s "
              f"({cli_s * 1000 / one['p50_ms']:.0f}x the served p50)")
    errs = [r for r in rows if r["errors"]]
    print(f"targets: p50 <= 50 ms at 1 client: {'met' if one['clients'] == 1 and one['p50_ms'] <= 50 else 'NOT met'}; "
          f"no errors at 16 clients: {'met' if not errs else 'NOT met: ' + errs[0]['first_error']}")
    access = sum(1 for ln in log_lines if '"GET /api/' in ln)
    print(f"server log: {len(log_lines)} lines for {access} API requests")
    if args.json:
        Path(args.json).write_text(json.dumps({"segments": n_seg, "videos": args.videos, "ready_s": ready_s,
                                               "warm_up_s": warm_s, "first_query_ms": first_ms, "levels": rows,
                                               "health": floor, "library": lib, "cli_s": cli_s,
                                               "load_average": [load0, busy]}, indent=1))


if __name__ == "__main__":
    main()
