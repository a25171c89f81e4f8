"""Tests for mmfuse.encoders.clap: window splitting and a tiny transformers CLAP saved to disk."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import tone

from mmfuse.encoders import DEFAULTS, encoder_from_spec, load_encoder
from mmfuse.encoders.clap import ClapEncoder, LaionClapEncoder, _windows
from mmfuse.errors import InputError, ModelError


def test_windows_cover_audio_and_merge_short_tails():
    w = 100
    pieces, owner = _windows([np.arange(250, dtype=np.float32), np.zeros(40, np.float32),
                              np.zeros(0, np.float32), np.arange(210, dtype=np.float32)], w)
    assert owner.tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert [len(p) for p in pieces] == [83, 83, 84, 40, 1, 100, 100]
    np.testing.assert_array_equal(np.concatenate(pieces[:3]), np.arange(250))  # every sample, in order
    # A 10-sample tail (< window/4) is merged into the previous windows instead of its own padded window;
    # pieces never exceed the window (the last sample of a 210-sample clip is dropped at most).
    assert all(len(p) <= w for p in pieces)
    with pytest.raises(InputError, match="audio 0"):
        _windows([np.zeros((2, 10), np.float32)], w)


def test_default_without_cache_is_model_error_with_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(DEFAULTS, "clap", "mmfuse-test/not-in-any-cache")
    with pytest.raises(ModelError, match="--clap-model"):
        ClapEncoder()  # checked on construction (cheap cache lookup), so callers can skip the modality early
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_encoder("clap", lazy=True)
    with pytest.raises(ModelError, match="does not exist"):
        ClapEncoder(str(tmp_path / "missing" / "clap"))
    with pytest.raises(ModelError, match="does not exist"):
        LaionClapEncoder(tmp_path / "missing.pt")
    with pytest.raises(ModelError, match="no default model"):
        load_encoder("laion_clap")


@pytest.mark.slow
def test_tiny_clap_dir_encodes_audio_and_text(tiny_clap_dir):
    enc = ClapEncoder(tiny_clap_dir, batch_size=2)
    assert enc.spec["model"] == tiny_clap_dir and len(enc.spec["weights_fingerprint"]) == 16
    clips = [tone(2.0, 440), tone(3.0, 880), tone(23.0, 220), np.zeros(100, np.float32)]
    emb = enc.encode_audio(clips)
    assert emb.shape == (4, enc.dim) == (4, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Deterministic (long clips are windowed, never randomly cropped) and batch-independent.
    np.testing.assert_allclose(enc.encode_audio(clips[2:3]), emb[2:3], atol=1e-5)
    assert not np.allclose(emb[0], emb[1])
    txt = enc.encode_text(["a dog barking", "rain on a roof at night", ""])
    assert txt.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert enc.encode_audio([]).shape == (0, 16)
    sims = txt @ emb.T
    assert sims.shape == (3, 4) and np.isfinite(sims).all()
    # By path through the registry, and rebuilt from the spec an index records: the same model, the same vectors.
    for again in (load_encoder("clap", tiny_clap_dir, batch_size=2), encoder_from_spec(enc.spec)):
        assert again.spec == enc.spec
        np.testing.assert_allclose(again.encode_audio(clips[:1]), emb[:1], atol=1e-5)
