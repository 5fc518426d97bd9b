"""Training pairs, settings and set-up for the LoRA tests on the tiny models of tiny_models.py.

The inputs use words the tiny tokenizer was trained on; every label is one of its LABELS, so
a tiny model can learn the mapping in a few dozen steps (it starts from random weights).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file
from tiny_models import INSTRUCTION, LABELS

from tunewise.models.base import Message
from tunewise.train import LoraSettings, TrainingPair

if TYPE_CHECKING:
    from tunewise.models.local import LocalBackend

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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread (tiny models gain nothing from more, and the machine is shared), then
    back to the thread count it had."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_tiny(folder: Path | str) -> LocalBackend:
    """A tiny model folder (the `tiny_llama` fixture's, say) as a LocalBackend on the CPU, in float32."""
    from tunewise.models.local import LocalBackend

    return LocalBackend.load(str(folder), device="cpu", dtype="float32")


# -- a tiny task and bake-off ----------------------------------------------------------------------

# LoRA arm settings (a plan's `settings`) that learn the mapping in a few dozen steps of ~30 ms.
TINY_ARM_SETTINGS = {"rank": 4, "learning_rate": 2e-2, "epochs": 3, "batch_size": 8, "eval_every": 4,
                     "patience": 100, "threads": 1}


def write_tiny_task(folder: Path, copies: int = 12) -> Path:
    """A classify task the tiny Llama can learn: each MAPPING input with a number appended."""

    def rows(numbers) -> str:
        return "".join(json.dumps({"input": f"{text} {i}", "output": label}) + "\n"
                       for i in numbers for text, label in MAPPING)

    (folder / "train.jsonl").write_text(rows(range(copies)))
    (folder / "validation.jsonl").write_text(rows([100]))
    (folder / "test.jsonl").write_text(rows([200, 201]))
    (folder / "task.yaml").write_text(
        "name: tiny-intents\nkind: classify\ninstruction: Classify the intent of the message.\n"
        "data: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}\n"
        f"labels: {json.dumps(LABELS)}\n")
    return folder / "task.yaml"


def run_tiny_bakeoff(folder: Path, model: str, arms: dict[str, dict]):
    """Writes the tiny task into ``folder``, plans ``arms`` (kind -> its plan settings, run in this
    order) for ``model`` and runs them on one torch thread into a SQLite store there, loading each
    model as `load_tiny` does, with no embedder; returns (the bake-off's result, its stored run)."""
    from tunewise.bakeoff import BakeoffOptions, PlanOptions, plan_arms, run_bakeoff
    from tunewise.store import open_store
    from tunewise.task.card import load_card

    card = load_card(write_tiny_task(folder))
    planned = plan_arms(card, list(arms), [model], options=PlanOptions(extra=arms))
    with one_torch_thread(), open_store(f"sqlite:///{folder / 'runs.db'}") as store:
        # A budget far beyond need: a training arm then keeps the answering time free.
        result = run_bakeoff(card, planned, store=store, load_embedder=lambda: None,
                             options=BakeoffOptions(budget_s=3600), load_backend=load_tiny)
        return result, store.get_run(result.run_id)
