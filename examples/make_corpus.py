"""Generate the mmfuse sample corpus in examples/corpus: short clips with speech, on-screen text and metadata.

Needs espeak-ng on PATH (``apt-get install -y espeak-ng``) plus PyAV, Pillow and numpy. The output is
committed, so tests and the demo never run this script. Usage::

    python examples/make_corpus.py [--out examples/corpus]

Each clip is built so that some queries can only be answered by one modality: words drawn on screen
(OCR) are never spoken or written in the metadata, spoken words (ASR) never appear on screen or in
the metadata, and metadata words (title, description, tags) appear nowhere else. The script checks
that property for every query before writing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmfuse.errors import MmfuseError  # noqa: E402
from mmfuse.ingest import synth  # noqa: E402

FPS = 25
SIZE = (320, 240)
AUDIO_RATE = synth.AUDIO_RATE  # espeak-ng's native rate
FONT = None  # synth's default: DejaVu Sans Bold, else Liberation Sans Bold, else Pillow's own

# video_id, file suffix, minimum seconds, scene, on-screen text spans, speech, metadata, special encoding.
CLIPS: list[dict] = [
    dict(id="v01_ball", seconds=6, scene="ball", screen=[("LIGHTHOUSE", 0, None)],
         speech="My grandmother grows tomatoes in her garden.",
         title="Evening walk", description="Notes from a quiet stroll.", tags=["walk", "stroll", "quiet"],
         caption="a yellow ball moves across a dark blue background"),
    dict(id="v02_squares", seconds=8, scene="squares", screen=[("VOLCANO", 0, None)],
         speech="The train to Chicago leaves in the morning.",
         title="Weekly update", description="Status report for the week.", tags=["update", "report", "weekly"],
         caption="green squares spin on a black background"),
    dict(id="v03_triangle", seconds=5, scene="triangle", screen=[("PENGUIN", 0, None)],
         speech="Please remember to water the cactus on Sunday.",
         title="Desert survival tips", description="Advice for hikers crossing dry land.",
         tags=["desert", "survival", "hiking"],
         caption="a red triangle grows and shrinks on a white background"),
    dict(id="v04_stripes", seconds=7, scene="stripes", screen=[("FIREWORKS", 0, None)],
         speech="We watched the fireworks at the summer festival.",
         title="Wedding anniversary slideshow", description="Photos from a family celebration.",
         tags=["wedding", "anniversary", "family"],
         caption="rainbow coloured stripes scroll upwards"),
    dict(id="v05_silent", seconds=6, scene="diamond", screen=[("DINOSAUR", 0, None)], speech=None,
         title="Silent film test", description="A clip without any sound track.", tags=["silent", "mute"],
         caption="a purple diamond turns on a light grey background"),
    dict(id="v06_podcast", seconds=4, scene=None, screen=[], ext=".m4a",
         speech="The piano concert starts right after dinner.",
         title="Podcast episode", description="Audio recording of a short announcement.",
         tags=["podcast", "recording", "announcement"], caption="a spoken announcement with no picture"),
    dict(id="v07_court", seconds=8, scene="bounce", screen=[("BASKETBALL", 0, None)],
         speech="Basketball practice is cancelled because of the rain.",
         title="Sports news", description="Updates from the local league.", tags=["sports", "league", "news"],
         caption="an orange ball bounces up and down on a brown background"),
    dict(id="v08_portrait", seconds=6, scene="portrait", screen=[("GIRAFFE", 0, None)], rotation=90,
         speech="The museum closes early on holidays.",
         title="Phone recording", description="Vertical video filmed on a phone.", tags=["phone", "vertical"],
         caption="a white bar slides down a teal screen in portrait orientation"),
    dict(id="v09_odd", seconds=6, scene="ellipse", screen=[("TELESCOPE", 0, None)], size=(321, 243), ext=".webm",
         speech="Turn left at the bakery and walk to the bridge.",
         title="Travel directions", description="How to find the way in town.", tags=["directions", "travel", "town"],
         caption="a pink ellipse drifts diagonally over dark green"),
    dict(id="v10_vfr", seconds=7, scene="jerky", screen=[("SUBMARINE", 0, None)], vfr=True,
         speech="Our friend adopted a tiny kitten yesterday.",
         title="Skateboard tricks compilation", description="Best moves from the park.",
         tags=["skateboard", "tricks", "park"],
         caption="cyan rectangles jump around a dark grey background"),
    dict(id="v11_two_parts", seconds=12, scene="star", screen=[("ORCHESTRA", 0, 10), ("HAMMOCK", 10, None)],
         speech="The library opens a new cooking class on Friday.",
         title="Community notice board", description="Announcements for residents.",
         tags=["community", "notice", "residents"],
         caption="a white star spins; the background turns from maroon to olive after ten seconds"),
]

# qid, text, modality that can answer it, relevant video ids.
QUERIES: list[tuple[str, str, str, list[str]]] = [
    ("q01", "lighthouse", "ocr", ["v01_ball"]),
    ("q02", "volcano", "ocr", ["v02_squares"]),
    ("q03", "dinosaur", "ocr", ["v05_silent"]),
    ("q04", "giraffe", "ocr", ["v08_portrait"]),
    ("q05", "telescope", "ocr", ["v09_odd"]),
    ("q06", "submarine", "ocr", ["v10_vfr"]),
    ("q07", "hammock", "ocr", ["v11_two_parts"]),
    ("q08", "grandmother grows tomatoes", "asr", ["v01_ball"]),
    ("q09", "train to Chicago", "asr", ["v02_squares"]),
    ("q10", "water the cactus", "asr", ["v03_triangle"]),
    ("q11", "piano concert after dinner", "asr", ["v06_podcast"]),
    ("q12", "museum closes early on holidays", "asr", ["v08_portrait"]),
    ("q13", "adopted a kitten", "asr", ["v10_vfr"]),
    ("q14", "library cooking class", "asr", ["v11_two_parts"]),
    ("q15", "desert survival tips", "meta", ["v03_triangle"]),
    ("q16", "wedding anniversary slideshow", "meta", ["v04_stripes"]),
    ("q17", "skateboard tricks", "meta", ["v10_vfr"]),
    ("q18", "fireworks", "ocr+asr", ["v04_stripes"]),
    ("q19", "basketball practice", "ocr+asr", ["v07_court"]),
    ("q20", "a yellow ball on a dark blue background", "visual", ["v01_ball"]),
]

STOP = set(
    "a an the to at on of in and or is are be for from with my our her his its it this that after before "
    "by as".split()
)

LICENSE = """# Sample corpus license

Every file in this folder (video, audio, `queries.tsv`, `qrels.txt`, `metadata.json`, `subtitles.json`,
`query_modalities.json`, `manifest.json`) was generated by `examples/make_corpus.py` in this repository:
synthetic shapes and text drawn with Pillow, speech synthesised with espeak-ng, encoded with PyAV/FFmpeg.
No third-party footage, recordings or voices are included.

The generated media and data are dedicated to the public domain under
[CC0 1.0 Universal](https://creativecommons.org/publicdomain/zero/1.0/): you may copy, modify and
distribute them without asking permission. The DejaVu Sans font used to draw the words is under the
Bitstream Vera / DejaVu font license, which places no restriction on images rendered with it.
"""


# ---------------------------------------------------------------------------------------------- checks


def words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower().replace("'", "")) if w not in STOP}


def check_design() -> None:
    """Every query's content words occur only in its modality of its relevant video(s)."""
    fields: dict[tuple[str, str], set[str]] = {}
    for c in CLIPS:
        fields[(c["id"], "ocr")] = set().union(*(words(t) for t, _, _ in c["screen"])) if c["screen"] else set()
        fields[(c["id"], "asr")] = words(c["speech"] or "")
        fields[(c["id"], "meta")] = words(" ".join([c["title"], c["description"], *c["tags"]]))
    for qid, text, modality, rel in QUERIES:
        if modality == "visual":
            continue
        allowed = set(modality.split("+"))
        for w in words(text):
            hits = {(v, m) for (v, m), ws in fields.items() if w in ws}
            bad = {(v, m) for v, m in hits if v not in rel or m not in allowed}
            if bad or not hits:
                raise SystemExit(f"{qid} {text!r}: word {w!r} found in {sorted(hits)}; allowed {rel} x {allowed}")
        for v in rel:
            for m in allowed:
                if not words(text) & fields[(v, m)]:
                    raise SystemExit(f"{qid} {text!r}: no word of it in {v} {m}")


# ---------------------------------------------------------------------------------------------- speech


def speak(text: str) -> np.ndarray:
    """espeak-ng -> mono float32 at AUDIO_RATE (voice, speed and word gap chosen so whisper tiny.en
    transcribes every sentence word for word)."""
    try:
        return synth.speak(text, voice="en", speed=120, gap=4, amplitude=160, rate=AUDIO_RATE)
    except MmfuseError as e:
        raise SystemExit(str(e)) from None


# ---------------------------------------------------------------------------------------------- pictures


def draw_text_panel(img, text: str) -> None:
    """Big white word on a black panel across the top: high contrast so OCR reads it."""
    synth.draw_text(img, text, font=FONT, max_size=56, position="top", margin=12, pad=12,
                    fill=(255, 255, 255), panel=(0, 0, 0))


def render(scene: str, t: float, dur: float, size: tuple[int, int]):
    """One frame of a synthetic scene at time t (shapes live in the lower part of the picture)."""
    from PIL import Image, ImageDraw

    w, h = size
    p = t / max(dur, 1e-6)
    if scene == "ball":
        img = Image.new("RGB", size, (20, 30, 110))
        d = ImageDraw.Draw(img)
        x = 40 + p * (w - 80)
        d.ellipse([x - 28, 150, x + 28, 206], fill=(250, 220, 30))
    elif scene == "squares":
        img = Image.new("RGB", size, (0, 0, 0))
        d = ImageDraw.Draw(img)
        for k, cx in enumerate((70, 160, 250)):
            a = 2 * math.pi * (t / 3 + k / 6)
            pts = [(cx + 30 * math.cos(a + j * math.pi / 2), 170 + 30 * math.sin(a + j * math.pi / 2)) for j in range(4)]
            d.polygon(pts, fill=(40, 200, 60))
    elif scene == "triangle":
        img = Image.new("RGB", size, (255, 255, 255))
        d = ImageDraw.Draw(img)
        s = 30 + 20 * math.sin(2 * math.pi * t / 2)
        d.polygon([(w / 2, 170 - s), (w / 2 - s, 170 + s), (w / 2 + s, 170 + s)], fill=(220, 20, 30))
    elif scene == "stripes":
        img = Image.new("RGB", size, (0, 0, 0))
        d = ImageDraw.Draw(img)
        colors = [(230, 40, 40), (240, 150, 30), (240, 230, 40), (40, 190, 60), (40, 90, 230), (150, 50, 200)]
        off = int(t * 40) % (len(colors) * 20)
        for y in range(100 - 120, h + 20, 20):
            k = ((y + off) // 20) % len(colors)
            d.rectangle([0, y + off % 20, w, y + off % 20 + 19], fill=colors[k])
    elif scene == "diamond":
        img = Image.new("RGB", size, (210, 210, 210))
        d = ImageDraw.Draw(img)
        a = t * 1.5
        pts = [(w / 2 + 45 * math.cos(a + j * math.pi / 2) * (1 if j % 2 else 0.6),
                170 + 45 * math.sin(a + j * math.pi / 2) * (1 if j % 2 else 0.6)) for j in range(4)]
        d.polygon(pts, fill=(120, 30, 160))
    elif scene == "bounce":
        img = Image.new("RGB", size, (110, 70, 30))
        d = ImageDraw.Draw(img)
        y = 200 - 80 * abs(math.sin(math.pi * t / 1.2))
        d.ellipse([w / 2 - 25, y - 25, w / 2 + 25, y + 25], fill=(255, 130, 0))
    elif scene == "portrait":
        img = Image.new("RGB", size, (0, 128, 128))
        d = ImageDraw.Draw(img)
        y = 110 + p * (h - 140)
        d.rectangle([30, y, w - 30, y + 22], fill=(255, 255, 255))
    elif scene == "ellipse":
        img = Image.new("RGB", size, (10, 80, 30))
        d = ImageDraw.Draw(img)
        x, y = 40 + p * (w - 80), 120 + p * (h - 150)
        d.ellipse([x - 35, y - 18, x + 35, y + 18], fill=(255, 120, 200))
    elif scene == "jerky":
        img = Image.new("RGB", size, (50, 50, 50))
        d = ImageDraw.Draw(img)
        rng = np.random.default_rng(int(t * 10))
        for _ in range(3):
            x, y = rng.integers(10, w - 60), rng.integers(100, h - 40)
            d.rectangle([x, y, x + 50, y + 30], fill=(0, 230, 230))
    elif scene == "star":
        img = Image.new("RGB", size, (128, 0, 0) if t < 10 else (128, 128, 0))
        d = ImageDraw.Draw(img)
        a = t
        pts = []
        for j in range(10):
            r = 45 if j % 2 == 0 else 18
            pts.append((w / 2 + r * math.cos(a + j * math.pi / 5), 165 + r * math.sin(a + j * math.pi / 5)))
        d.polygon(pts, fill=(255, 255, 255))
    else:
        raise ValueError(scene)
    return img


def screen_text(clip: dict, t: float) -> str | None:
    for text, start, end in clip["screen"]:
        if start <= t and (end is None or t < end):
            return text
    return None


# ---------------------------------------------------------------------------------------------- encoding


def frame_times(clip: dict, dur: float) -> list[float]:
    if not clip.get("vfr"):
        return [i / FPS for i in range(int(round(dur * FPS)))]
    # Variable frame rate: a repeating pattern of 20, 40, 120 and 60 ms frame durations.
    out, t, k = [], 0.0, 0
    steps = [0.02, 0.04, 0.12, 0.06]
    while t < dur - 1e-9:
        out.append(round(t, 3))
        t += steps[k % len(steps)]
        k += 1
    return out


def encode(clip: dict, audio: np.ndarray | None, dur: float, path: Path) -> None:
    ext = clip.get("ext", ".mp4")
    scene = clip.get("scene")
    size = clip.get("size", SIZE)
    rotation = clip.get("rotation", 0)
    display = (size[1], size[0]) if rotation % 180 else size  # drawn upright, stored rotated by the writer
    codec = "libvpx-vp9" if ext == ".webm" else "libx264"
    with synth.MediaWriter(
        path, size=size if scene else None, fps=FPS, vfr=bool(clip.get("vfr")), rotation=rotation,
        video_codec=codec, video_options=synth.COMPACT_VIDEO_OPTIONS[codec],
        audio_rate=AUDIO_RATE if audio is not None else None,
        audio_bit_rate=None if ext == ".webm" else 64000,
        metadata={"comment": "generated by mmfuse examples/make_corpus.py; CC0 1.0", "title": clip["title"]},
    ) as w:
        if scene:
            for t in frame_times(clip, dur):
                img = render(scene, t, dur, display)
                txt = screen_text(clip, t)
                if txt:
                    draw_text_panel(img, txt)
                w.frame(img, t)
            w.end_video()
        if audio is not None:
            w.write_audio(audio)


# ---------------------------------------------------------------------------------------------- main


def build(out: Path) -> None:
    check_design()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.suffix in (".mp4", ".m4a", ".webm", ".wav"):
            old.unlink()
    manifest, metadata, subtitles = [], [], []
    for clip in CLIPS:
        speech = speak(clip["speech"]) if clip["speech"] else None
        speech_start = 0.5
        dur = float(clip["seconds"])
        audio = None
        if speech is not None:
            dur = max(dur, math.ceil((speech_start + len(speech) / AUDIO_RATE + 0.5) * 2) / 2)
            audio = np.zeros(int(round(dur * AUDIO_RATE)), np.float32)
            s0 = int(speech_start * AUDIO_RATE)
            audio[s0:s0 + len(speech)] = speech[: len(audio) - s0]
        ext = clip.get("ext", ".mp4")
        path = out / f"{clip['id']}{ext}"
        encode(clip, audio, dur, path)
        print(f"{path.name}: {dur:.1f} s, {path.stat().st_size / 1024:.0f} KiB", file=sys.stderr)
        size = clip.get("size", SIZE) if clip.get("scene") else None
        rot = clip.get("rotation", 0)
        manifest.append({
            "video_id": clip["id"],
            "file": path.name,
            "duration": dur,
            "has_video": bool(clip.get("scene")),
            "has_audio": audio is not None,
            "coded_size": list(size) if size else None,
            "display_size": (list(size[::-1]) if rot % 180 else list(size)) if size else None,
            "rotation": rot,
            "variable_frame_rate": bool(clip.get("vfr")),
            "fps": None if not clip.get("scene") or clip.get("vfr") else FPS,
            "screen_text": [{"text": t, "start": s, "end": dur if e is None else e} for t, s, e in clip["screen"]],
            "speech": clip["speech"],
            "speech_start": speech_start if speech is not None else None,
            "speech_end": round(speech_start + len(speech) / AUDIO_RATE, 3) if speech is not None else None,
        })
        metadata.append({"video_id": clip["id"], "file": path.name, "title": clip["title"],
                         "description": clip["description"], "tags": clip["tags"]})
        subtitles.append({"video_id": clip["id"], "desc": clip["caption"], "subtitle": clip["speech"] or ""})

    def dump(name: str, obj) -> None:
        (out / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("manifest.json", manifest)
    dump("metadata.json", metadata)
    dump("subtitles.json", subtitles)
    dump("query_modalities.json", {qid: mod for qid, _, mod, _ in QUERIES})
    (out / "queries.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, text, _, _ in QUERIES), encoding="utf-8")
    (out / "qrels.txt").write_text(
        "".join(f"{qid} 0 {v} 1\n" for qid, _, _, rel in QUERIES for v in rel), encoding="utf-8")
    (out / "LICENSE.md").write_text(LICENSE, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "corpus")
    ap.add_argument("--check", action="store_true", help="only check the query design")
    args = ap.parse_args()
    if args.check:
        check_design()
        return
    build(args.out)


if __name__ == "__main__":
    main()
