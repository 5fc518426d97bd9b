"""What an arm is, to the bake-off.

An arm is one way of solving the task (zero-shot prompting, few-shot, an embedding
classifier, RAG, a LoRA fine-tune, ...). The bake-off knows nothing of an arm's insides: it
asks whether the arm applies, lets it `prepare` (pick examples, fit, train) within a budget,
then feeds the resulting `Candidate` batches of test examples and records what comes back.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunewise.models.base import Backend, Usage
from tunewise.task.dataset import Dataset, Example

if TYPE_CHECKING:
    from tunewise.knowledge.embed import Embedder
    from tunewise.store import Store


@dataclass(frozen=True, slots=True)
class Prediction:
    """One answer for one example, with what it cost to get it."""

    output: str  # the answer as the task expects it: a label, a JSON string, free text
    usage: Usage
    valid: bool = True  # False when the raw answer could not be used as-is (JSON that does not parse, ...)
    raw: str | None = None  # the model's text before parsing, when it differs from `output`
    extra: dict[str, Any] = field(default_factory=dict)  # arm-specific detail worth storing


class Candidate(ABC):
    """A prepared arm, ready to answer."""

    #: Every setting that changes this candidate's answers (recorded with the arm, and part
    #: of the cache key of its predictions).
    config: dict[str, Any]
    #: The model(s) behind it, e.g. "local:smollm2-135m-instruct@ab12cd34ef56".
    model_id: str
    #: One-time cost of preparing (fitting, training), amortised later by the verdict.
    prepare_usage: Usage | None = None

    @abstractmethod
    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        """Answers for a batch of examples, in order."""

    def batch_size(self) -> int:
        """How many examples the bake-off should hand over at once."""
        return 16


@dataclass(frozen=True)
class Budget:
    """What an arm may spend preparing: wall seconds (None = no limit)."""

    seconds: float | None = None


@dataclass
class ArmContext:
    """Everything an arm may use to prepare. Heavy objects (models, embedders) come from the
    bake-off through these factories, so arms that share a model share one loaded copy."""

    dataset: Dataset
    backend: Callable[[str], Backend]  # model spec -> loaded backend
    embedder: Callable[[], Embedder]  # the embedding model, loaded on first use
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    store: Store | None = None  # the run store: arms that index documents or record artifacts use it
    run_id: int | None = None  # the bake-off run this preparation belongs to (for artifacts)


class Arm(ABC):
    """A way of solving the task. Subclasses set `name` and implement `prepare`."""

    #: Unique within a bake-off, e.g. "zero_shot@smollm2-135m-instruct", "few_shot_nearest@...".
    name: str

    def applies(self, dataset: Dataset) -> str | None:
        """None when the arm applies to this task; otherwise the reason it is skipped."""
        return None

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """A rough forecast of the wall seconds to prepare and answer ``n_examples`` (None: no
        idea, or cheap). The bake-off skips the arm, saying why, when the forecast exceeds what
        is left of its time budget, instead of starting a training run it must cut short."""
        return None

    @abstractmethod
    def prepare(self, context: ArmContext) -> Candidate:
        """Fit, pick examples or train, within ``context.budget``."""

    def params(self) -> dict[str, Any]:
        """The arm's own settings (model spec, k, ...), known before `prepare`: recorded with
        the arm and part of its cache key. Dataclass arms get this for free."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}
