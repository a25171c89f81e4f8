"""Tests for mmfuse.encoders.clip: pooling scores against hand-written loops, and a tiny open_clip model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mmfuse.encoders import encoder_from_spec, load_encoder
from mmfuse.encoders.clip import ClipEncoder, FrameScorer, pool, score
from mmfuse.errors import InputError, ModelError, ParameterError


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    frames = _unit(rng.normal(size=(7, 5))).astype(np.float32)
    owner = np.array([0, 0, 1, 2, 2, 2, 1])
    queries = _unit(rng.normal(size=(3, 5))).astype(np.float32)
    return queries, frames, owner


def _groups(frames, owner, n_owners):
    return [frames[owner == o] for o in range(n_owners)]


def test_pool_mean_and_max_match_loops(toy):
    q, f, owner = toy
    ref_mean = np.stack([_unit(g.mean(0)) for g in _groups(f, owner, 3)])
    ref_max = np.stack([_unit(g.max(0)) for g in _groups(f, owner, 3)])
    np.testing.assert_allclose(pool(f, owner), ref_mean, atol=1e-6)
    np.testing.assert_allclose(pool(f, owner, "max"), ref_max, atol=1e-6)
    np.testing.assert_allclose(score(q, f, owner, "mean"), q @ ref_mean.T, atol=1e-6)
    np.testing.assert_allclose(score(q, f, owner, "max"), q @ ref_max.T, atol=1e-6)


def test_softmax_weighted_matches_loop(toy):
    q, f, owner = toy
    temp = 0.2
    ref = np.zeros((3, 3))
    for i, qi in enumerate(q):
        for o, g in enumerate(_groups(f, owner, 3)):
            s = g @ qi
            w = np.exp((s - s.max()) / temp)
            w /= w.sum()
            ref[i, o] = qi @ _unit((w[:, None] * g).sum(0))
    np.testing.assert_allclose(score(q, f, owner, "softmax", temperature=temp), ref, atol=1e-5)
    np.testing.assert_allclose(score(q, f, owner, "softmax", temperature=temp, block_queries=2), ref, atol=1e-5)
    # One owner when frame_owner is omitted: the whole frame set is one video.
    one = score(q, f, pooling="softmax", temperature=temp)
    assert one.shape == (3, 1)
    w = np.exp((q @ f.T - (q @ f.T).max(1, keepdims=True)) / temp)
    w /= w.sum(1, keepdims=True)
    np.testing.assert_allclose(one[:, 0], np.sum(q * _unit(w @ f), axis=1), atol=1e-5)
    # Limits: a tiny temperature picks the best frame; a huge one is mean pooling.
    np.testing.assert_allclose(score(q, f, owner, "softmax", temperature=1e-4), score(q, f, owner, "maxsim"),
                               atol=1e-4)
    np.testing.assert_allclose(score(q, f, owner, "softmax", temperature=1e4), score(q, f, owner, "mean"),
                               atol=1e-4)


def test_maxsim_single_and_multi_vector_match_loops(toy):
    q, f, owner = toy
    ref = np.array([[max(g @ qi) for g in _groups(f, owner, 3)] for qi in q])
    np.testing.assert_allclose(score(q, f, owner, "maxsim"), ref, atol=1e-6)
    # Multi-vector queries [m, t, d], second query padded with a zero token (contributes 0).
    mq = np.stack([q[:2], np.stack([q[2], np.zeros(5, np.float32)])])
    ref_multi = np.array(
        [[sum(max(g @ t) for t in qi) for g in _groups(f, owner, 3)] for qi in mq]
    )
    np.testing.assert_allclose(score(mq, f, owner, "maxsim"), ref_multi, atol=1e-6)


def test_frame_scorer_reuses_preparation(toy):
    q, f, owner = toy
    sc = FrameScorer(f, owner, n_owners=4)
    for p in ("mean", "max", "softmax", "maxsim"):
        ref = score(q, f, owner, p, n_owners=4)
        np.testing.assert_allclose(sc.score(q, p), ref, atol=1e-6)
        np.testing.assert_allclose(score(q, sc, pooling=p), ref, atol=1e-6)
        np.testing.assert_allclose(score(q, f, owner, p, n_owners=4), ref, atol=1e-6)  # cached path
    # Frames already grouped by owner and shuffled frames give the same answer.
    perm = np.random.default_rng(1).permutation(len(owner))
    np.testing.assert_allclose(score(q, f[perm], owner[perm], "softmax"), score(q, f, owner, "softmax"), atol=1e-6)


def test_empty_owner_and_errors(toy):
    q, f, owner = toy
    for p in ("mean", "max", "softmax", "maxsim"):
        out = score(q, f, owner, p, n_owners=5)
        assert out.shape == (3, 5) and out.dtype == np.float32
        assert np.isneginf(out[:, 3:]).all() and np.isfinite(out[:, :3]).all()
    with pytest.raises(ParameterError, match="did you mean 'maxsim'"):
        score(q, f, owner, "maxsm")
    with pytest.raises(ParameterError, match="depends on the query"):
        pool(f, owner, "softmax")
    with pytest.raises(InputError, match="one owner per frame"):
        score(q, f, owner[:-1])
    with pytest.raises(InputError, match="n_owners"):
        score(q, f, owner, n_owners=2)
    with pytest.raises(InputError, match="single-vector"):
        score(q[:, None, :], f, owner, "mean")
    with pytest.raises(ParameterError, match="temperature"):
        score(q, f, owner, "softmax", temperature=0)


def test_no_weights_is_a_model_error_with_hint(tmp_path):
    with pytest.raises(ModelError, match="--clip-pretrained openai"):
        ClipEncoder("ViT-B-32")
    with pytest.raises(ModelError, match="does not exist"):
        ClipEncoder("ViT-B-32", checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ParameterError):
        ClipEncoder("ViT-B-32", pretrained="openai", checkpoint=tmp_path / "x.pt")


def test_importing_model_modules_does_not_import_torch():
    code = (
        "import sys, mmfuse.encoders, mmfuse.encoders.clip, mmfuse.encoders.clap, mmfuse.encoders.ocr, "
        "mmfuse.encoders.whisper, mmfuse.encoders.text, mmfuse.encoders.vlm, mmfuse.store.bm25; "
        "heavy = [m for m in ('torch', 'open_clip', 'transformers', 'rapidocr_onnxruntime', 'faster_whisper', "
        "'sentence_transformers', 'bm25s', 'PIL') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _frames(n, seed=0, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]


@pytest.mark.slow
def test_tiny_clip_checkpoint_loads_and_encodes(tiny_clip_checkpoint):
    info = tiny_clip_checkpoint
    enc = ClipEncoder(info["model"], checkpoint=info["checkpoint"], batch_size=2)
    frames = _frames(5) + [np.zeros((17, 300, 3), np.uint8)]  # odd shapes go through the same preprocess
    emb = enc.encode_frames(frames)
    assert emb.shape == (6, info["dim"]) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc.encode_frames(frames[:1]), emb[:1], atol=1e-5)  # batch-independent
    txt = enc.encode_text(["a red bicycle", "a dog on the beach", ""])
    assert txt.shape == (3, info["dim"])
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert enc.encode_frames([]).shape == (0, info["dim"])
    spec = enc.spec
    assert spec["model"] == info["model"] and spec["checkpoint"] == info["checkpoint"]
    assert len(spec["checkpoint_fingerprint"]) == 16
    assert ClipEncoder(None, checkpoint=info["checkpoint"]).spec["model"] == "ViT-B-32"

    # The other ways to point at the same weights give the same vectors (so the weights really load).
    for other in (ClipEncoder(info["config"], checkpoint=info["checkpoint"]), ClipEncoder(info["local_dir"])):
        np.testing.assert_allclose(other.encode_frames(frames[:2]), emb[:2], atol=1e-5)
        np.testing.assert_allclose(other.encode_text(["a red bicycle"]), txt[:1], atol=1e-5)
        # The recorded spec rebuilds the same encoder (what `mmfuse search` does from the index).
        assert encoder_from_spec(other.spec).spec == other.spec
    # Loading by name or path through the registry gives the very encoder the class builds (same spec, same
    # vectors); the default architecture is filled in when only a checkpoint is named.
    by_name = load_encoder("clip", info["model"], checkpoint=info["checkpoint"])
    assert by_name.spec == enc.spec and by_name.load() is not None
    np.testing.assert_allclose(by_name.encode_frames(frames[:1]), emb[:1], atol=1e-5)
    assert load_encoder("clip", checkpoint=info["checkpoint"], lazy=True).spec["model"] == "ViT-B-32"

    progress = []
    enc.encode_frames(frames, progress=lambda d, t, label: progress.append((d, t, label)))
    assert progress[-1] == (6, 6, "visual")
    with pytest.raises(InputError, match="frame 1"):
        enc.encode_frames([frames[0], np.zeros((4, 4), np.uint8)])

    # End to end with pooling: a video owning the query-matching frames wins.
    scores = score(txt[:1], emb, np.array([0, 0, 1, 1, 1, 2]), "maxsim")
    assert scores.shape == (1, 3)


@pytest.mark.slow
def test_tiny_clip_bad_checkpoint_is_model_error(tiny_clip_checkpoint, tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    enc = ClipEncoder(tiny_clip_checkpoint["model"], checkpoint=bad)
    with pytest.raises(ModelError, match="cannot load CLIP"):
        enc.load()
    with pytest.raises(ParameterError, match="unknown open_clip model"):
        ClipEncoder("ViT-B-32-nope", checkpoint=tiny_clip_checkpoint["checkpoint"]).load()
