"""What an arm is, to the bake-off.

An arm is one way of solving the task (zero-shot prompting, few-shot, an embedding
classifier, RAG, a LoRA fine-tune, ...). The bake-off knows nothing of an arm's insides: it
asks whether the arm applies, lets it `prepare` (pick examples, fit, train) within a budget,
then feeds the resulting `Candidate` batches of test examples and records what comes back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise.models.base import Usage
from tunewise.task.dataset import Dataset, Example


@dataclass(frozen=True, slots=True)
class Prediction:
    """One answer for one example, with what it cost to get it."""

    output: str  # the answer as the task expects it: a label, a JSON string, free text
    usage: Usage
    valid: bool = True  # False when the raw answer could not be used as-is (e.g. JSON that does not parse)
    raw: str | None = None  # the model's text before parsing, when it differs from `output`
    extra: dict[str, Any] = field(default_factory=dict)  # arm-specific detail worth storing (retrieved ids, ...)


class Candidate(ABC):
    """A prepared arm, ready to answer."""

    #: What the store records for this candidate: every setting that changes its answers.
    config: dict[str, Any]
    #: The model(s) behind it, e.g. "local:smollm2-135m-instruct@ab12cd34".
    model_id: str

    @abstractmethod
    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        """Answers for a batch of examples, in order."""

    @property
    def prepare_cost(self) -> Usage | None:
        """One-time cost of preparing (training, fitting), if any: the verdict amortises it."""
        return None


@dataclass(frozen=True)
class Budget:
    """What an arm may spend preparing: wall seconds (None = no limit)."""

    seconds: float | None = None


@dataclass
class ArmContext:
    """Everything an arm may use to prepare: the task's data, a budget, shared services."""

    dataset: Dataset
    budget: Budget
    seed: int = 0
    services: dict[str, Any] = field(default_factory=dict)  # backends and embedders, shared between arms


class Arm(ABC):
    """A way of solving the task. Subclasses set `name` and implement `applies` and `prepare`."""

    name: str

    def applies(self, dataset: Dataset) -> str | None:
        """None when the arm applies to this task; otherwise the reason it is skipped."""
        return None

    @abstractmethod
    def prepare(self, context: ArmContext) -> Candidate:
        """Fit, pick examples or train, within ``context.budget``."""
