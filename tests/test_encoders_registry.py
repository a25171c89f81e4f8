"""Tests for mmfuse.encoders: load_encoder by kind and name or path, the defaults, and specs that rebuild their
encoder (what an index relies on to decide "same model"). Nothing here loads weights."""

from __future__ import annotations

import pytest

from mmfuse.encoders import DEFAULTS, KINDS, Encoder, encoder_from_spec, load_encoder
from mmfuse.errors import ModelError, ParameterError


def test_unknown_kind_and_option_are_one_line_errors():
    with pytest.raises(ParameterError, match="unknown encoder kind 'clipp' \\(did you mean 'clip'\\?\\)"):
        load_encoder("clipp")
    with pytest.raises(ParameterError, match="unknown clip encoder option 'pretrain' \\(did you mean 'pretrained'"):
        load_encoder("clip", pretrain="openai", lazy=True)
    with pytest.raises(ParameterError, match="unknown kind 'nope'"):
        encoder_from_spec({"kind": "nope", "model": "x"})
    with pytest.raises(ModelError, match="no default model"):
        load_encoder("vlm")
    with pytest.raises(ModelError, match="unknown --dtype 'float8'"):
        load_encoder("vlm", "some/model", dtype="float8", lazy=True)


def test_defaults_fill_in_the_name():
    clip = load_encoder("clip", pretrained="openai", lazy=True)  # lazy: nothing is downloaded
    assert clip.spec == {"kind": "open_clip", "model": DEFAULTS["clip"], "pretrained": "openai"}
    assert load_encoder("text", lazy=True).spec == {"kind": "sentence-transformers", "model": DEFAULTS["text"]}
    assert load_encoder("whisper", lazy=True).spec["model"] == DEFAULTS["whisper"]
    # OCR ships its models with rapidocr: only that one name is accepted
    assert load_encoder("ocr", lazy=True).spec == load_encoder("ocr", DEFAULTS["ocr"], lazy=True).spec
    with pytest.raises(ModelError, match="only rapidocr-onnxruntime"):
        load_encoder("ocr", "tesseract", lazy=True)


@pytest.mark.parametrize("kind, name, opts", [
    ("clip", None, {"pretrained": "laion2b_s34b_b79k"}),
    ("clip", "hf-hub:org/repo", {}),
    ("text", None, {}),
    ("text", "/models/e5-small", {"device": "cuda"}),
    ("whisper", "small.en", {"beam_size": 5, "language": None}),
    ("ocr", None, {"max_side": 640, "min_score": 0.7, "use_cls": True}),
    ("vlm", "Qwen/Qwen2.5-VL-3B-Instruct", {"dtype": "bfloat16"}),
])
def test_spec_rebuilds_the_same_encoder(kind, name, opts):
    enc = load_encoder(kind, name, lazy=True, **opts)
    assert isinstance(enc, Encoder) and isinstance(enc, KINDS[kind])
    again = encoder_from_spec(enc.spec)
    assert type(again) is type(enc) and again.spec == enc.spec


def test_device_is_not_part_of_the_identity():
    # The same weights on another device write the same vectors: an index built on a GPU stays usable on a CPU.
    assert load_encoder("text", device="cuda", lazy=True).spec == load_encoder("text", lazy=True).spec
