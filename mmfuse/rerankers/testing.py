"""A tiny random Qwen2-VL / Qwen2.5-VL checkpoint built offline, for tests, benchmarks and trying the CLI without weights."""

from __future__ import annotations

import json
from pathlib import Path

# A Qwen2-VL-style chat template: system prompt, image placeholders inside <|vision_start|>..<|vision_end|>,
# and a generation prompt, so the tiny model exercises the same processor path as the real checkpoints.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]

_CORPUS = [
    "Rank the candidate videos by how well they match the query. Answer only with the ranking.",
    "[1] > [2] > [3] > [4] > [5] > [6] > [7] > [8] > [9] > [10] > [11] > [12] > [20]",
    "Query: a person is cooking food in a kitchen. Candidate subtitles retriever ranks yes no",
    "Does this video match the query? Answer yes or no. Yes. No.",
    "a man a woman a dog a cat a car music people sports news game playing talking singing",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 visual audio ocr asr rank of",
]


ARCHS = ("qwen2_vl", "qwen2_5_vl")


def build_tiny_vlm(out_dir: str | Path, *, seed: int = 0, image_pixels: int = 1280 * 28 * 28,
                   arch: str = "qwen2_vl") -> Path:
    """Write a random ~0.5 MB Qwen2-VL (or Qwen2.5-VL) checkpoint + processor to ``out_dir``; return the path.

    Loadable with ``AutoProcessor.from_pretrained`` / ``AutoModelForImageTextToText.from_pretrained``.
    ``image_pixels`` caps the pixels per image like Qwen2-VL's ``max_pixels`` (same default), so prompt sizes in
    tokens match the real checkpoints.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}")
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=image_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=28 * 28, max_pixels=image_pixels)
    proc_cls = Qwen2VLProcessor
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as proc_cls
    processor = proc_cls(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)

    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    token_ids = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        config = Qwen2_5_VLConfig(
            text_config=text_config,
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                               fullatt_block_indexes=[1]),
            **token_ids,
        )
        model_cls = Qwen2_5_VLForConditionalGeneration
    else:
        config = Qwen2VLConfig(
            text_config=text_config,
            vision_config=dict(
                depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2,
            ),
            **token_ids,
        )
        model_cls = Qwen2VLForConditionalGeneration
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    (out / "MMFUSE_TINY_RANDOM_MODEL.json").write_text(json.dumps({"note": "random weights, for tests only"}))
    return out


if __name__ == "__main__":  # python -m mmfuse.rerankers.testing OUT_DIR
    import sys

    print(build_tiny_vlm(sys.argv[1] if len(sys.argv) > 1 else "tiny-vlm",
                         arch=sys.argv[2] if len(sys.argv) > 2 else "qwen2_vl"))
