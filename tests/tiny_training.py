"""Training pairs and settings for the LoRA tests on the tiny models of tiny_models.py.

The inputs use words the tiny tokenizer was trained on; every label is one of its LABELS, so
a tiny model can learn the mapping in a few dozen steps (it starts from random weights).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from tiny_models import INSTRUCTION

from tunewise.models.base import Message
from tunewise.train import LoraSettings, TrainingPair

SYSTEM = Message("system", INSTRUCTION)
MAPPING = [
    ("cancel my reservation please", "cancel_reservation"),
    ("book a flight to paris", "book_flight"),
    ("what is the weather today", "weather"),
    ("translate hello", "translate"),
    ("hi", "oos"),
    ("book a hotel in the city", "book_hotel"),
    ("cancel it", "cancel"),
]

# Learns the mapping on the tiny Llama in 44 steps of ~30 ms; dropout on, so that resuming
# must restore the RNG too.
FAST = LoraSettings(rank=4, learning_rate=2e-2, epochs=4, batch_size=4, eval_every=4, checkpoint_every=4,
                    patience=100, dropout=0.1, threads=1)
RESUMABLE = FAST.model_copy(update={"epochs": 2})  # the kill -9 test: 22 steps, checkpoints every 4


def chat(text: str) -> tuple[Message, ...]:
    return (SYSTEM, Message("user", text))


def tiny_pairs(copies: int = 6) -> list[TrainingPair]:
    """``copies`` variants of each mapped input (a number appended), as TrainingPairs."""
    return [TrainingPair(chat(f"{text} {i}"), label) for i in range(copies) for text, label in MAPPING]


def validation_pairs() -> list[TrainingPair]:
    """Two variants of each input that training also sees: a random tiny model cannot generalise
    to new inputs, and these tests are about the machinery, not about generalisation."""
    return [TrainingPair(chat(f"{text} {i}"), label) for i in range(2) for text, label in MAPPING]


def adapter_tensors(folder: Path) -> dict:
    return load_file(str(Path(folder) / "adapter_model.safetensors"))
