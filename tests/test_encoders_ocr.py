"""Tests for mmfuse.encoders.ocr: frame signatures, the near-duplicate rule, real rapidocr on rendered text, and
captions that appear and disappear mid-clip over a still background, indexed for the right segment."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np
import pytest

from mmfuse.encoders.ocr import OcrExtractor, frame_signature, squash
from mmfuse.errors import InputError
from mmfuse.store.bm25 import OCR_ANALYZER, Bm25Index

FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
]


def render(text: str, size=(480, 270), bg=(20, 40, 90), fg=(255, 255, 255), font_px=44) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    path = next((f for f in FONTS if Path(f).exists()), None)
    font = ImageFont.truetype(path, font_px) if path else ImageFont.load_default(size=font_px)
    draw.text((30, size[1] // 2 - font_px // 2), text, fill=fg, font=font)
    return np.asarray(img)


def test_frame_signature_is_block_mean_and_contrast():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    sig = frame_signature(a, (4, 3))
    gray = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114) / 255
    blocks = gray.reshape(4, 16, 3, 32)
    np.testing.assert_allclose(sig[0], blocks.mean(axis=(1, 3)), atol=1e-5)
    np.testing.assert_allclose(sig[1], blocks.std(axis=(1, 3)), atol=1e-5)
    small = frame_signature(np.full((3, 5, 3), 255, np.uint8), (8, 8))  # smaller than the grid: pixels repeat
    assert small.shape == (3, 8, 8) and np.allclose(small[0], 1.0, atol=1e-5) and np.allclose(small[1], 0, atol=1e-3)
    # stroke edges: a 16x16 block with 2-pixel strokes at x = 1, 5, 9, 13 has an edge at 8 of its 16 pixels; a bar
    # has 2 of 16; a horizontal edge has none
    img = np.zeros((16, 48, 3), np.uint8)
    img[:, 1:15:4] = img[:, 2:15:4] = 255
    img[:, 24:31] = 255  # a bar: two edges in its rows
    img[8:, 31:] = 255  # the lower half white from the bar on: no edge in any row of the third block
    np.testing.assert_allclose(frame_signature(img, (1, 3))[2], [[8 / 16, 2 / 16, 0.0]], atol=1e-6)
    with pytest.raises(InputError):
        frame_signature(np.zeros((8, 8), np.uint8), (2, 2))


def _scene(size=(640, 360)) -> np.ndarray:
    """A still picture: a sky-to-ground gradient with a few flat shapes (no text)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = np.linspace((90, 140, 200), (60, 90, 50), h).astype(np.uint8)[:, None, :]
    img[200:300, 60:220] = (120, 80, 40)
    img[150:340, 400:470] = (200, 200, 190)
    return img


def _captioned(img: np.ndarray, text: str, font_px: int = 22) -> np.ndarray:
    """``img`` with a subtitle-style caption (white, black outline) at the bottom centre."""
    from PIL import Image, ImageDraw, ImageFont

    pic = Image.fromarray(img)
    path = next((f for f in FONTS if Path(f).exists()), None)
    font = ImageFont.truetype(path, font_px) if path else ImageFont.load_default(size=font_px)
    draw = ImageDraw.Draw(pic)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    xy = ((pic.width - (x1 - x0)) // 2, pic.height - 3 * font_px)
    draw.text(xy, text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(pic)


def _reads(ocr: OcrExtractor, frames: list[np.ndarray]) -> list[int]:
    """Which frames ``extract`` sent to OCR (a stand-in engine that only records them)."""
    seen: list[int] = []
    ids = {id(f): i for i, f in enumerate(frames)}
    ocr.read = lambda frame: seen.append(ids[id(frame)]) or f"text{ids[id(frame)]}"
    ocr.extract(frames)
    return seen


def test_near_duplicates_are_what_cannot_change_the_text():
    ocr = OcrExtractor()
    still = _scene()
    rng = np.random.default_rng(1)
    # compression-like noise (a few grey levels per pixel) and a slight global brightening: the same picture
    noisy = np.clip(still.astype(np.int16) + rng.integers(-3, 4, still.shape) + 2, 0, 255).astype(np.uint8)
    caption = _captioned(still, "HARBOR LIGHTS")
    small = _captioned(still, "ok", font_px=14)  # two small letters: well under 1% of the picture
    assert _reads(ocr, [still, noisy, noisy.copy(), still.copy()]) == [0]  # truly static: one OCR call
    # captions that appear, stay, go, and come back are read each time the picture's text could have changed
    assert _reads(ocr, [still, caption, caption.copy(), still.copy(), small, noisy]) == [0, 1, 3, 4, 5]
    # a plain shape moving over a plain background cannot change the text; moving over the caption, it can
    moved, hiding = still.copy(), caption.copy()
    moved[200:300, 260:420] = still[200:300, 60:220]
    hiding[290:350, 200:440] = (120, 80, 40)
    assert _reads(ocr, [still, moved, still.copy()]) == [0]
    assert _reads(ocr, [caption, hiding]) == [0, 1]


@pytest.mark.parametrize("font_px", [10, 16, 22, 48, 96, 140])
@pytest.mark.parametrize("style", ["outlined", "white", "dark on a light band", "yellow"])
def test_a_caption_of_any_size_or_style_counts_as_a_change(font_px, style):
    from PIL import Image, ImageDraw, ImageFont

    still = _scene()
    if style == "outlined":
        captioned = _captioned(still, "HARBOR LIGHTS", font_px)
    else:
        pic = Image.fromarray(still.copy())
        draw = ImageDraw.Draw(pic)
        path = next((f for f in FONTS if Path(f).exists()), None)
        font = ImageFont.truetype(path, font_px) if path else ImageFont.load_default(size=font_px)
        x0, y0, x1, y1 = draw.textbbox((40, 40), "Harbor", font=font)
        if style == "dark on a light band":
            draw.rectangle([x0 - 6, y0 - 4, x1 + 6, y1 + 4], fill=(235, 235, 235))
        draw.text((40, 40), "Harbor", font=font, fill={"white": (255, 255, 255), "yellow": (250, 220, 40)}.get(
            style, (20, 20, 20)))
        captioned = np.asarray(pic)
    ocr = OcrExtractor()
    assert _reads(ocr, [still, captioned]) == [0, 1]  # it appears
    assert _reads(ocr, [captioned, still.copy()]) == [0, 1]  # it goes


@pytest.mark.slow
def test_ocr_reads_rendered_word_and_skips_duplicates():
    ocr = OcrExtractor()
    sign = render("LIGHTHOUSE")
    noisy = np.clip(sign.astype(np.int16) + 2, 0, 255).astype(np.uint8)  # near-duplicate of the same picture
    other = render("PENGUIN", bg=(90, 20, 20))
    read = ocr.read
    calls = []
    ocr.read = lambda frame: calls.append(frame) or read(frame)
    texts = ocr.extract([sign, noisy, other, np.zeros_like(sign)])
    assert squash(texts[0]) == "lighthouse"
    assert texts[1] == texts[0]
    assert squash(texts[2]) == "penguin"
    assert texts[3] == ""
    assert len(calls) == 3
    assert squash(ocr.segment_text([sign, noisy, other, sign])) == "lighthousepenguin"
    with pytest.raises(InputError, match="uint8"):
        ocr.read(sign.astype(np.float32))


@pytest.mark.slow
def test_squashed_ocr_text_found_by_ngram_bm25():
    ocr = OcrExtractor()
    # Drawn without a space, as rapidocr often returns multi-word signs anyway.
    seen = ocr.read(render("REDBICYCLE"))
    assert squash(seen) == "redbicycle"
    docs = [seen, "GREEN BUS STOP", "RED CAR WASH", "BICYCLE REPAIR"]
    idx, scores = Bm25Index.build(docs, OCR_ANALYZER).search(["red bicycle"], k=4)
    assert idx[0, 0] == 0 and scores[0, 0] > scores[0, 1] > 0


def _write_clip(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt, s.options = "yuv420p", {"preset": "ultrafast", "crf": "23"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, fps)
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.mark.slow
def test_captions_appearing_mid_clip_are_indexed_in_their_segment(tmp_path):
    """30 s of one still picture: "HARBOR LIGHTS" shows from 12.5 to 17.5 s, "NIGHT MARKET" from 23 to 27.5 s. With
    10 s windows of 4 frames (at 1.25, 3.75, 6.25, 8.75 s of each window) each caption is on screen at two sampled
    frames of one window, never at a window's first frame."""
    from mmfuse.ingest import IndexConfig, index_folder
    from mmfuse.store.lance import IndexStore

    fps, still = 2, _scene()
    captions = [(12.5, 17.5, "HARBOR LIGHTS"), (23.0, 27.5, "NIGHT MARKET")]
    frames = []
    for i in range(30 * fps):
        text = next((c for a, b, c in captions if a <= i / fps < b), None)
        frames.append(_captioned(still, text) if text else still)
    videos = tmp_path / "videos"
    videos.mkdir()
    _write_clip(videos / "harbor.mp4", frames, fps)
    summary = index_folder(videos, tmp_path / "idx", IndexConfig(modalities=["ocr"], frames_per_segment=4))
    assert summary.failed == [] and summary.segments == 3
    seg = IndexStore.open(tmp_path / "idx").segments()
    text = {sid: squash(t) for sid, t in zip(seg["segment_id"].tolist(), seg["ocr_text"].tolist())}
    assert "harborlights" not in text["harbor#0"] and "nightmarket" not in text["harbor#0"]
    assert "harborlights" in text["harbor#1"] and "nightmarket" not in text["harbor#1"]
    assert "nightmarket" in text["harbor#2"] and "harborlights" not in text["harbor#2"]
