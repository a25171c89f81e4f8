"""Session-scoped fixtures that build tiny random CLIP and CLAP models on disk and load paths for bundled models.

Real CLIP/CLAP weights are not available offline, so these build architecturally real but tiny models and save
them in the formats users bring (an open_clip checkpoint file, a transformers model directory), so tests go
through the same loading code as real checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TINY_CLIP_NAME = "mmfuse-tiny-vit"

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # vocab_size stays 49408: open_clip's bundled BPE tokenizer emits ids up to 49407.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

_CLAP_TEXTS = [
    "a dog barking loudly in the yard",
    "rain falling on a tin roof",
    "people talking in a crowded room",
    "music with drums and an electric guitar",
    "a car engine starts and idles",
    "birds singing in the morning",
    "a man speaks about the weather",
]


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> dict:
    """A tiny random open_clip model: ``{"model", "config", "checkpoint", "local_dir", "dim"}``.

    ``model`` is registered with open_clip in this process; other processes (CLI tests) pass ``config``
    (the model-config JSON) as the model, or ``local_dir`` (open_clip's ``local-dir:`` layout) alone.
    """
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny_clip")
    config = root / f"{TINY_CLIP_NAME}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    checkpoint = root / "tiny_clip.pt"
    torch.save(state, checkpoint)
    local_dir = root / "local_dir"
    local_dir.mkdir()
    (local_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    save_file(state, str(local_dir / "open_clip_model.safetensors"))
    return {
        "model": TINY_CLIP_NAME,
        "config": str(config),
        "checkpoint": str(checkpoint),
        "local_dir": str(local_dir),
        "dim": TINY_CLIP_CONFIG["embed_dim"],
    }


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> str:
    """A tiny random CLAP saved as a transformers model directory (model, BPE tokenizer, 48 kHz processor)."""
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
        RobertaTokenizer,
    )

    root = Path(tmp_path_factory.mktemp("tiny_clap"))
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _CLAP_TEXTS * 10, vocab_size=400, min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False,
    )
    bpe.save_model(str(root))
    tokenizer = RobertaTokenizer.from_pretrained(str(root), model_max_length=64)
    audio = ClapAudioConfig(
        depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=16, hidden_size=32,
        projection_dim=16, window_size=8, enable_fusion=False,
    )
    text = ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=80, projection_dim=16,
    )
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    torch.manual_seed(0)
    ClapModel(config).eval().save_pretrained(str(root))
    # The unfused HTSAT takes one mel channel: "rand_trunc" (never triggered: the encoder chunks to max length).
    extractor = ClapFeatureExtractor(sampling_rate=48000, truncation="rand_trunc", padding="repeatpad")
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(root))
    return str(root)


def tone(seconds: float, freq: float = 440.0, rate: int = 48000) -> np.ndarray:
    """A sine tone as mono float32 (test audio)."""
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
