"""LoRA fine-tuning of a local model on the task's training split, answered like zero-shot.

The prompt is the zero-shot prompt (the instruction and the answer format, then the input),
at training and at inference alike, and the answers come the same way (label scoring for
classify, generation validated against the schema for extract, ...): the only difference from
``zero_shot@MODEL`` is the adapter, so the gap between the two is what fine-tuning bought.

Preparing trains the adapter (tunewise.train), or finds the finished one with the same content
key, so a re-run bake-off trains nothing. Validation: the task's validation split, else a
seeded tenth of the training split held out for early stopping. When the time budget cannot fit
training on the whole split, a seeded sample is trained on, as large as the forecast fits in
``TRAIN_SHARE`` of the budget (the rest is for answering); the config states it. The training
time, priced at the machine's hourly rate, is the arm's one-time ``prepare_usage``.

Forecasts (``estimated_seconds``) come from the computed tokens per second of the last training
run of the model on this machine, else from ``ASSUMED_TOKENS_PER_S`` scaled by model size;
tokens are counted from characters before a model is loaded. They are rough on purpose: the
bake-off only needs them to skip an arm that cannot fit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.arms.answers import AnswerPlan
from tunewise.arms.base import Arm, ArmContext, Candidate
from tunewise.arms.prompts import shared_prefix, task_brief, with_input
from tunewise.arms.zero_shot import PromptCandidate, base_config, labels_missing
from tunewise.errors import TunewiseError
from tunewise.models.base import Chat, Usage
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example

MIN_TRAIN_EXAMPLES = 8  # fewer is not fine-tuning; few-shot prompting covers it
MIN_BUDGETED_EXAMPLES = 64  # the smallest sample a tight budget cuts the training split to
TRAIN_SHARE = 0.6  # of the arm's time budget, for training; the rest answers the test examples
VALIDATION_SHARE, MAX_HELD_OUT = 0.1, 200  # held out of train when the task has no validation split
ASSUMED_TOKENS_PER_S = {"cpu": 400.0, "cuda": 20_000.0}  # computed training tokens/s of a 135M model
REFERENCE_PARAMS = 135_000_000
CHARS_PER_TOKEN = 4.0
FORWARD_SPEEDUP = 3.0  # a forward pass alone costs about a third of forward + backward


@dataclass
class Lora(Arm):
    """A LoRA adapter of ``model`` (a catalog name, a model folder or a hub id) trained on the task."""

    model: str
    settings: dict[str, Any] = field(default_factory=dict)  # LoraSettings fields; unset ones by data size
    max_train_examples: int | None = None  # train on a seeded sample of at most this many (None: all)
    seed: int | None = None  # None: the bake-off's seed
    _limited: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.lora_settings()  # fail at planning time, with the field and the bad value
        check_max_train_examples(self.max_train_examples, where="lora.max_train_examples")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"lora@{self.model}"

    def lora_settings(self):
        from pydantic import ValidationError

        from tunewise.train.config import LoraSettings

        try:
            return LoraSettings(**self.settings)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise TunewiseError(f"{first['msg']} (got {first.get('input')!r})", where=f"lora.settings.{where}",
                                fix="see `LoraSettings` in tunewise.train.config for every field") from None

    def params(self) -> dict[str, Any]:
        values = {"model": self.model, "settings": dict(self.settings),
                  "max_train_examples": self.max_train_examples, "seed": self.seed}
        # Answers of an adapter that a time budget limited (a sample, or training cut short)
        # must not be served later as if they came from the full training: the cache key
        # carries the limit, so only a run limited the same way could ever match them.
        if self._limited:
            values["limited_by_budget"] = self._limited
        return values

    def applies(self, dataset: Dataset) -> str | None:
        return cannot_train(self.model, dataset) or labels_missing(dataset)

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """The smallest run this arm would do (training on the budget-cut sample, then answering)."""
        return forecast_smallest_run_s(self.model, dataset, _shape_from_text(dataset), self.lora_settings(),
                                       self.max_train_examples, n_examples)

    def prepare(self, context: ArmContext) -> Candidate:
        from tunewise.train import TrainingPair, load_adapter, train_adapter

        dataset = context.dataset
        reason = self.applies(dataset)
        if reason:
            raise TunewiseError(reason, where=self.name, fix="add training examples, or use a local model")
        backend = local_backend(context, self.model, where=self.name)
        seed = context.seed if self.seed is None else self.seed
        plan = AnswerPlan.for_dataset(dataset, backend.count_tokens)
        prefix = shared_prefix(task_brief(dataset.card, labels=plan.labels, schema=plan.schema))
        train, validation, held_out = _split_train_validation(dataset, seed)
        if self.max_train_examples is not None and len(train) > self.max_train_examples:
            train = _seeded_sample(train, self.max_train_examples, seed)

        settings = self.lora_settings()
        train_budget = training_budget_s(context)
        full = len(train)
        if train_budget is not None:
            shape = _shape_from_tokens(backend, prefix, train, dataset.card.kind, plan)
            fits = largest_fitting(full, shape, settings, _speed(self.model, backend), train_budget)
            if fits < full:
                train = _seeded_sample(train, fits, seed)

        def pairs(examples: Sequence[Example]) -> list[TrainingPair]:
            return [TrainingPair(with_input(prefix, e.input), training_answer(e)) for e in examples]

        result = train_adapter(
            backend, pairs(train), pairs(validation), settings, budget_s=train_budget, seed=seed,
            meta={"task": dataset.card.name, "arm": self.name, "data": dataset.data_hashes},
        )
        limited = {}
        if len(train) < full:
            limited["train_examples"] = len(train)
        if result.stopped == "budget":
            limited["stopped_at_step"] = result.steps
        self._limited = limited or None
        record_adapter(context, self.name, result.adapter_dir)

        tuned = load_adapter(backend, result.adapter_dir)
        metrics = result.manifest["metrics"]
        config = {
            **base_config("lora", self.model, plan),
            "adapter": result.adapter_dir.name,
            "settings": result.manifest["settings"],
            **training_config(result, seed, train, full, validation, held_out),
            "best_step": result.best_step,
            "best_val_loss": metrics.get("best_val_loss"),
            "reused_adapter": result.reused,
        }
        candidate = PromptCandidate(tuned, plan, prefix, config)
        seconds = result.train_seconds
        candidate.prepare_usage = Usage(tokens_in=result.train_tokens, tokens_out=0, latency_s=seconds,
                                        cost_usd=seconds * backend.price_per_hour / 3600.0)
        return candidate


def training_answer(example: Example) -> str:
    """The answer an example teaches: its output as the task gives it (the label, the JSON
    object, the text), trimmed as the few-shot prompts trim it."""
    return example.output.strip()


# -- shared with the other arms that train a LoRA adapter (rag_lora) -----------------------------


def check_max_train_examples(max_train_examples: int | None, where: str) -> None:
    """Refuses, at planning time, a cap on the training examples too small to fine-tune on."""
    if max_train_examples is not None and max_train_examples < MIN_TRAIN_EXAMPLES:
        raise TunewiseError(f"max_train_examples must be at least {MIN_TRAIN_EXAMPLES}, "
                            f"got {max_train_examples}", where=where,
                            fix=f"set it to {MIN_TRAIN_EXAMPLES} or more, or leave it unset")


def cannot_train(model: str, dataset: Dataset) -> str | None:
    """Why LoRA cannot fine-tune ``model`` on ``dataset`` (a remote model, too few training
    examples); None when it can."""
    from tunewise.models.load import is_remote

    if is_remote(model):
        return f"LoRA trains local models; {model} is served by an API"
    if len(dataset.train) < MIN_TRAIN_EXAMPLES:
        return (f"fine-tuning needs at least {MIN_TRAIN_EXAMPLES} training examples, "
                f"the task has {len(dataset.train)}")
    return None


def forecast_smallest_run_s(model: str, dataset: Dataset, shape: Shape, settings, max_train_examples: int | None,
                            n_examples: int) -> float:
    """The smallest run an arm that trains ``model`` would do: training on the budget-cut sample
    (or all of a smaller split) plus answering ``n_examples``, with prompts of ``shape``."""
    n_train = min(len(_split_train_validation(dataset, 0)[0]), MIN_BUDGETED_EXAMPLES, max_train_examples or math.inf)
    speed = _speed(model)
    return forecast_training_s(n_train, shape, settings, speed) + n_examples * shape.answer_s(speed)


def local_backend(context: ArmContext, model: str, where: str):
    """``model`` loaded by the bake-off; TunewiseError unless it is a local model (one LoRA can train)."""
    backend = context.backend(model)
    if not hasattr(backend, "format"):
        raise TunewiseError(f"{model} did not load as a local model", where=where,
                            fix="use a catalog name, a model folder or a hub id")
    return backend


def training_budget_s(context: ArmContext) -> float | None:
    """Seconds of the arm's time budget that training may take (``TRAIN_SHARE``); None: no budget."""
    budget = context.budget.seconds
    return None if budget is None else TRAIN_SHARE * budget


def record_adapter(context: ArmContext, arm_name: str, adapter_dir: Path) -> None:
    """Lists the trained adapter among the run's artifacts, when the bake-off keeps a store."""
    if context.store is not None and context.run_id is not None:
        context.store.add_artifact(context.run_id, kind="lora_adapter", name=f"{arm_name}/{adapter_dir.name}",
                                   path=adapter_dir)


def training_config(result, seed: int, train: Sequence[Example], available: int, validation: Sequence[Example],
                    held_out: int) -> dict[str, Any]:
    """The candidate config's account of the training (``result``, a TrainResult): on how many of
    the ``available`` examples, with what validation, and how it ended."""
    return {
        "seed": seed,
        "train_examples": len(train),
        "train_examples_available": available,
        "validation_examples": len(validation),
        "validation_held_out_of_train": held_out,
        "steps": result.steps,
        "stopped": result.stopped,
    }


# -- forecasts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Token counts that drive training and answering time."""

    prefix: float  # the shared prompt prefix (instruction, label list or schema)
    own: float  # per example: the rest of its prompt and its answer
    answer_work: float  # per test example: tokens run to answer it (its own + options or generated)

    def answer_s(self, speed: float) -> float:
        return self.answer_work / (speed * FORWARD_SPEEDUP)


def forecast_training_s(n_train: int, shape: Shape, settings, speed: float) -> float:
    """Seconds to train on ``n_train`` examples: steps x (prefix + a batch's own tokens), plus
    the evaluations' forward passes, at ``speed`` computed tokens per second."""
    if n_train <= 0:
        return 0.0
    s = settings.resolve(n_train)
    per_step = shape.prefix + min(s.batch_size, n_train) * shape.own
    n_val = min(s.max_validation_examples, max(1, n_train // 10))
    evaluations = math.ceil(s.total_steps / s.eval_every)
    per_evaluation = (shape.prefix + n_val * shape.own) / FORWARD_SPEEDUP
    return (s.total_steps * per_step + evaluations * per_evaluation) / speed


def largest_fitting(n_train: int, shape: Shape, settings, speed: float, budget_s: float) -> int:
    """The most training examples whose forecast fits ``budget_s`` (at least the smaller of
    ``n_train`` and MIN_BUDGETED_EXAMPLES: below that the run is cut by the budget instead).

    A bisection: the forecast grows with n except where the defaults step (more data, bigger
    batches, fewer epochs), so near a step it may settle below the largest n that would fit.
    """
    floor = min(n_train, MIN_BUDGETED_EXAMPLES)
    if forecast_training_s(n_train, shape, settings, speed) <= budget_s:
        return n_train
    low, high = floor, n_train
    while low < high:
        middle = (low + high + 1) // 2
        if forecast_training_s(middle, shape, settings, speed) <= budget_s:
            low = middle
        else:
            high = middle - 1
    return low


def _speed(model: str, backend=None) -> float:
    from tunewise.train import measured_speed

    measured = measured_speed(backend.name if backend is not None else model)
    if measured:
        return measured
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    params = _params(model, backend)
    return ASSUMED_TOKENS_PER_S[device] * REFERENCE_PARAMS / max(params, 1)


def _params(model: str, backend=None) -> int:
    if backend is not None:
        return sum(p.numel() for p in backend.model.parameters())
    from tunewise.models.catalog import CATALOG

    return CATALOG[model].params if model in CATALOG else REFERENCE_PARAMS


def _shape_from_text(dataset: Dataset) -> Shape:
    """Token counts estimated from characters (no tokenizer needed)."""
    card = dataset.card
    sample = dataset.train[:200]
    own = sum(len(e.input) + len(e.output) for e in sample) / max(1, len(sample)) / CHARS_PER_TOKEN + 10
    labels = dataset.labels or []
    prefix = (len(card.instruction) + sum(len(label) + 2 for label in labels)
              + len(str(card.schema_dict() or ""))) / CHARS_PER_TOKEN + 20
    if card.kind is Kind.classify:
        answer_work = own + sum(len(label) for label in labels) / CHARS_PER_TOKEN
    else:
        answer_work = own + 3 * sum(len(e.output) for e in sample) / max(1, len(sample)) / CHARS_PER_TOKEN
    return Shape(prefix, own, answer_work)


def _shape_from_tokens(backend, prefix: Chat, train: Sequence[Example], kind: Kind, plan: AnswerPlan) -> Shape:
    """Token counts from the model's own tokenizer, on a sample of the training examples."""
    sample = train[:100]
    prefix_tokens = len(backend.format.ids(prefix))
    whole = [len(backend.format.ids(with_input(prefix, e.input))) + backend.count_tokens(e.output) + 2
             for e in sample]
    own = max(1.0, sum(whole) / max(1, len(whole)) - prefix_tokens)
    if kind is Kind.classify:
        answer_work = own + sum(backend.count_tokens(label) + 1 for label in plan.labels)
    else:
        answer_work = own + 3 * sum(backend.count_tokens(e.output) for e in sample) / max(1, len(sample))
    return Shape(prefix_tokens, own, answer_work)


# -- splits ------------------------------------------------------------------------------------


def _split_train_validation(dataset: Dataset, seed: int) -> tuple[list[Example], list[Example], int]:
    """(train, validation, how many validation examples were held out of train)."""
    if dataset.validation:
        return list(dataset.train), list(dataset.validation), 0
    n_held = min(MAX_HELD_OUT, max(1, round(VALIDATION_SHARE * len(dataset.train))))
    if len(dataset.train) - n_held < MIN_TRAIN_EXAMPLES:
        return list(dataset.train), [], 0  # too little to spare: no early stopping
    held = set(random.Random(seed).sample(range(len(dataset.train)), n_held))
    train = [e for i, e in enumerate(dataset.train) if i not in held]
    validation = [e for i, e in enumerate(dataset.train) if i in held]
    return train, validation, n_held


def _seeded_sample(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` of ``examples``, drawn with ``seed``, in their original order."""
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


__all__ = [
    "Lora", "Shape", "cannot_train", "check_max_train_examples", "forecast_smallest_run_s", "forecast_training_s",
    "largest_fitting", "local_backend", "record_adapter", "training_answer", "training_budget_s", "training_config",
]
