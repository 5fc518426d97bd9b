"""What loading a task yields: examples, grouped into frozen splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunewise.task.card import TaskCard

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, slots=True)
class Example:
    """One input with its expected output, and where it came from."""

    input: str
    output: str
    source: str  # the file it was read from, as the card names it
    line: int  # 1-based line in that file (for CSV: the line the record starts on)
    references: tuple[str, ...] = ()  # every accepted answer (qa); () means just `output`
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # other columns, kept as read

    @property
    def answers(self) -> tuple[str, ...]:
        """Accepted answers: the references when the row lists them, else the output alone."""
        return self.references or (self.output,)


@dataclass
class Dataset:
    """A task's examples, split into train / validation / test, plus what identifies them."""

    card: TaskCard
    splits: dict[str, list[Example]]  # keys: train, validation, test (a split may be empty)
    labels: list[str] | None  # classify: the card's labels, or those inferred from train
    data_hashes: dict[str, str]  # sha256 of each data file, keyed by role (file/train/validation/test)

    @property
    def train(self) -> list[Example]:
        return self.splits["train"]

    @property
    def validation(self) -> list[Example]:
        return self.splits["validation"]

    @property
    def test(self) -> list[Example]:
        return self.splits["test"]

    def sizes(self) -> dict[str, int]:
        return {name: len(self.splits[name]) for name in SPLITS}
