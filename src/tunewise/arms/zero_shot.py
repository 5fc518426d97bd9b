"""Zero-shot prompting: the card's instruction and the answer format, then the input.

The baseline every other arm has to beat: no examples, no training, one model call per batch.
Every prompt shares everything but its last user turn, so a local backend computes the
instruction (and the label list, however long) once and reuses it for every input.

``PromptCandidate`` is also the random few-shot candidate: that is a zero-shot prompt whose
shared prefix happens to hold example turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.arms.answers import AnswerPlan, answer_batch
from tunewise.arms.base import Arm, ArmContext, Candidate, Prediction
from tunewise.arms.prompts import PROMPT_VERSION, shared_prefix, task_brief, with_input
from tunewise.models.base import Backend, Chat
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example


class PromptCandidate(Candidate):
    """A fixed prompt prefix, the input appended as the last user turn, answered per ``plan``."""

    def __init__(self, backend: Backend, plan: AnswerPlan, prefix: Chat, config: dict[str, Any]):
        self.backend = backend
        self.plan = plan
        self.prefix = prefix
        self.config = config
        self.model_id = backend.model_id

    def prompts(self, batch: Sequence[Example]) -> list[Chat]:
        return [with_input(self.prefix, example.input) for example in batch]

    def batch_size(self) -> int:
        return self.backend.batch_sizes["score" if self.plan.kind is Kind.classify else "generate"]

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        if not batch:
            return []
        return answer_batch(self.backend, self.prompts(batch), self.plan)


def labels_missing(dataset: Dataset) -> str | None:
    """Why a classify task cannot be prompted, if it cannot: there is no label set to score."""
    if dataset.card.kind is Kind.classify and not dataset.labels:
        return "a classify task needs a label set (the card's `labels`, or labels in the training data)"
    return None


def base_config(arm: str, model: str, plan: AnswerPlan) -> dict[str, Any]:
    """The settings every prompting arm records."""
    return {"arm": arm, "model": model, "prompt_version": PROMPT_VERSION, **plan.config()}


@dataclass
class ZeroShot(Arm):
    """Zero-shot prompting of ``model`` (a catalog name, a local folder, a hub id or an endpoint spec)."""

    model: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"zero_shot@{self.model}"

    def applies(self, dataset: Dataset) -> str | None:
        return labels_missing(dataset)

    def prepare(self, context: ArmContext) -> Candidate:
        dataset = context.dataset
        backend = context.backend(self.model)
        plan = AnswerPlan.for_dataset(dataset, backend.count_tokens)
        brief = task_brief(dataset.card, labels=plan.labels, schema=plan.schema)
        return PromptCandidate(backend, plan, shared_prefix(brief), base_config("zero_shot", self.model, plan))
