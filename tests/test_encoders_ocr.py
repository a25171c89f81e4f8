"""Tests for mmfuse.encoders.ocr: frame signatures, de-duplication and real rapidocr on rendered text."""

from __future__ import annotations

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


def test_frame_signature_is_block_mean():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    sig = frame_signature(a, side=4)
    gray = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114) / 255
    ref = gray.reshape(4, 16, 4, 24).mean(axis=(1, 3))
    np.testing.assert_allclose(sig, ref, atol=1e-5)
    assert frame_signature(np.zeros((3, 5, 3), np.uint8)).shape == (32, 32)  # smaller than the thumbnail
    with pytest.raises(InputError):
        frame_signature(np.zeros((8, 8), np.uint8))


@pytest.mark.slow
def test_ocr_reads_rendered_word_and_skips_duplicates():
    ocr = OcrExtractor()
    sign = render("LIGHTHOUSE")
    noisy = np.clip(sign.astype(np.int16) + 2, 0, 255).astype(np.uint8)  # near-duplicate of the same picture
    other = render("PENGUIN", bg=(90, 20, 20))
    texts = ocr.extract([sign, noisy, other, np.zeros_like(sign)])
    assert squash(texts[0]) == "lighthouse"
    assert texts[1] == texts[0]
    assert squash(texts[2]) == "penguin"
    assert texts[3] == ""
    assert (ocr.n_ocr, ocr.n_skipped) == (3, 1)
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
