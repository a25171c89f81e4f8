"""Session fixture for language-model tests: a tiny random Qwen2 causal LM saved like a hub checkpoint (config,
weights, BPE tokenizer with a chat template), so the local backend goes through the real AutoTokenizer /
AutoModelForCausalLM loading and generation code."""

from __future__ import annotations

import pytest

_CORPUS = [
    "You help a video search engine. A user typed this search query: Break the query down into short search queries.",
    "Answer with a JSON list of strings and nothing else, for example: [\"first\", \"second\"]",
    "Write short passages about a video: a caption describing what it shows, or a sentence someone says in it.",
    "1. a lighthouse on the coast 2. waves at night 3. a keeper climbs the stairs 4. ships pass by",
    "a man a woman a dog a cat a car music people sports news game playing talking singing cooking",
]


def build_tiny_llm(out):
    """Write a random ~0.3 MB Qwen2ForCausalLM + tokenizer to ``out``; return the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from mmfuse.rerankers.testing import CHAT_TEMPLATE

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=specials[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"])
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    """A tiny random Qwen2 causal LM folder (random weights: its answers are noise, its plumbing is real)."""
    pytest.importorskip("transformers")
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))
