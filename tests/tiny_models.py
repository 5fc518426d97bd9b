"""Tiny random causal LMs with a real byte-level BPE tokenizer and a ChatML template, saved with
save_pretrained so that tests load them through the same code path as any model folder.

Shared by the backend, prompt-arm and training tests (the `tiny_llama` fixture in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LABELS = ["cancel", "cancel_reservation", "book_flight", "book_hotel", "weather", "translate", "oos"]
INSTRUCTION = (
    "Classify the intent of the message. Answer with one label from this list: " + ", ".join(LABELS) + "."
)
INPUTS = [
    "cancel my reservation please",
    "book a flight to paris",
    "what is the weather today in the city",
    "translate hello",
    "hi",
]


def write_tokenizer(folder: Path) -> None:
    corpus = [INSTRUCTION, *INPUTS, "the intent of a message is a label", "paris is in france"] * 10
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    fast.save_pretrained(folder)


# The tokenizer's special tokens, in the order write_tokenizer adds them.
SPECIAL_TOKEN_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def write_model(folder: Path, seed: int, config_class, model_class, **architecture) -> None:
    """Saves a random ``model_class`` drawn with ``seed``: the sizes every tiny model shares (the
    tokenizer's 320 tokens, width 64), plus its family's ``architecture`` (layers, heads, windows)."""
    torch.manual_seed(seed)
    config = config_class(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        initializer_range=0.3,  # peaked distributions: greedy decoding without near-ties
        **architecture,
    )
    model_class(config).save_pretrained(folder)


def write_llama(folder: Path) -> None:
    write_model(folder, 0, LlamaConfig, LlamaForCausalLM, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, **SPECIAL_TOKEN_IDS)


def write_gemma3(folder: Path) -> None:
    write_model(folder, 1, Gemma3TextConfig, Gemma3ForCausalLM, num_hidden_layers=3, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32,
                sliding_window=6,  # far shorter than the prompts: the windowed masks must be right
                layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                max_position_embeddings=512, **SPECIAL_TOKEN_IDS)


def write_qwen3(folder: Path) -> None:
    write_model(folder, 2, Qwen3Config, Qwen3ForCausalLM, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, use_sliding_window=True, sliding_window=6,
                max_window_layers=1,  # layer 0 full, layers 1-2 sliding
                tie_word_embeddings=True)


def write_mistral(folder: Path) -> None:
    # No layer_types: every layer slides.
    write_model(folder, 3, MistralConfig, MistralForCausalLM, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, sliding_window=6)
