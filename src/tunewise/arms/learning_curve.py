"""The learning-curve arm: LoRA on nested subsets of the training data (n = 50, 100, 250, 500,
1000, all), each scored on the bake-off's test examples, and a fitted curve that says what more
data would buy (see tunewise.train.curve for the subsets, the fit and the words).

Its own arm rather than an option of the ``lora`` arm, for three reasons: the curve costs about
twice the single fine-tune (it trains every smaller size as well), so a team that only wants the
fine-tune must not pay for it by default; what it produces is evidence (the ``learning_curve``
artifact the verdict reads), not a different candidate; and the bake-off's budget logic works per
arm, so a curve that does not fit is skipped, or cut at the last size that fits, without
touching the plain fine-tune. Its row in the bake-off table is the largest size it trained (all
of the data when the budget allows) and its candidate answers exactly as the ``lora`` arm's.
When both arms run on the same model and data, the full-data adapter is trained once: adapters
are stored by content (base model, training pairs, settings), and the second run finds it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.arms.base import Arm, ArmContext, Candidate
from tunewise.errors import TunewiseError
from tunewise.models.base import Usage
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example
from tunewise.train.curve import (
    CURVE_SIZES,
    AnsweredCandidate,
    TrainedPoint,
    bakeoff_examples,
    curve_sizes,
    run_learning_curve,
)

log = logging.getLogger(__name__)

MIN_FIT_POINTS = 2
ANSWER_SAMPLE = 8  # test examples answered before training to measure what answering will cost  # the fewest sizes a fit (log-linear) needs: the forecast the bake-off checks covers these


@dataclass
class LearningCurve(Arm):
    """LoRA on ``model`` at each of ``sizes`` (and all the data), as many as the time budget fits."""

    model: str
    sizes: tuple[int, ...] = CURVE_SIZES
    seed: int | None = None  # None: the bake-off's seed (subsets and training)
    worthwhile_gain: float = 0.02  # gain per doubling, in metric units, that makes more data worth collecting
    settings: dict[str, Any] = field(default_factory=dict)  # LoraSettings fields, as for the lora arm
    _limited: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sizes = tuple(self.sizes)
        if not self.sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in self.sizes):
            raise TunewiseError(f"learning-curve sizes must be positive integers, got {list(self.sizes)!r}",
                                where="lora_curve.sizes", fix="e.g. 50,100,250,500,1000 (all the data is added)")
        if not 0 < self.worthwhile_gain < 1:
            raise TunewiseError(f"worthwhile_gain must be between 0 and 1, got {self.worthwhile_gain!r}",
                                where="lora_curve.worthwhile_gain", fix="e.g. 0.02: two points of the metric")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"lora_curve@{self.model}"

    def applies(self, dataset: Dataset) -> str | None:
        from tunewise.arms.zero_shot import labels_missing
        from tunewise.models.load import is_remote

        if is_remote(self.model):
            return f"{self.model} is a remote model; LoRA fine-tunes a local one"
        if len(dataset.train) < 2 or len(curve_sizes(len(dataset.train), self.sizes)) < MIN_FIT_POINTS:
            return (f"a learning curve needs at least two training sizes, and {len(dataset.train)} training "
                    f"examples give one (sizes {', '.join(map(str, self.sizes))} below the training size, then all)")
        return labels_missing(dataset)

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """The least a curve needs, the two smallest sizes, trained and answering ``n_examples``.
        More sizes run when the budget allows, each forecast from the measured time of the one before.

        From the lora arm's forecast of its smallest run (at most MIN_BUDGETED_EXAMPLES examples),
        its training part scaled by the planned work (steps x batch) of each size."""
        from tunewise.arms.lora import MIN_BUDGETED_EXAMPLES, Lora

        lora = Lora(model=self.model, settings=self.settings)
        settings = lora.lora_settings()
        base_n = min(len(dataset.train), MIN_BUDGETED_EXAMPLES)
        small = dataclasses.replace(dataset, splits={**dataset.splits, "train": dataset.train[:base_n]})
        train_s = lora.estimated_seconds(small, 0)
        answer_s = lora.estimated_seconds(small, n_examples)
        if train_s is None or answer_s is None:
            return None

        def work(n: int) -> float:
            resolved = settings.resolve(n)
            return float(resolved.total_steps * resolved.batch_size)

        sizes = curve_sizes(len(dataset.train), self.sizes)[:MIN_FIT_POINTS]
        return sum(train_s * work(n) / work(base_n) + (answer_s - train_s) for n in sizes)

    def prepare(self, context: ArmContext) -> Candidate:
        from tunewise.scoring import resolve_metric

        began = time.perf_counter()
        dataset = context.dataset
        card = dataset.card
        seed = context.seed if self.seed is None else self.seed
        metric = resolve_metric(card.metric_name, card.kind, labels=dataset.labels, schema=card.schema_dict())
        examples = bakeoff_examples(context)
        recipe = LoraRecipe(dataset, context.backend(self.model), seed)
        trainer = _Trainer(recipe, self.settings, seed, self.name,
                           meta={"task": card.name, "arm": self.name, "data": dataset.data_hashes})
        budget = context.budget.seconds
        test = [ex for _, ex in examples]
        answering = None if budget is None else recipe.answer_seconds(test)
        run = run_learning_curve(
            trainer.train_point, recipe.train, test, metric, sizes=self.sizes, seed=seed,
            stratify=card.kind is Kind.classify, budget_s=None if budget is None else budget - (time.perf_counter()
                                                                                               - began),
            planned_work=trainer.planned_work, answer_seconds=answering,
            quality_bar=card.goals.quality_bar, worthwhile_gain=self.worthwhile_gain,
            subject=f"LoRA on {self.model}", progress=lambda message: log.info("%s: %s", self.name, message),
        )
        if run.last is None:
            raise TunewiseError("the time budget fitted no training size of the learning curve", where=self.name,
                                fix="raise --budget, or lower --limit")
        largest = run.points[-1]
        if largest.n < len(recipe.train) or largest.detail.get("cut_short"):
            # As the lora arm does: answers of a budget-limited adapter must never be served, from
            # the cache, as those of the full curve.
            self._limited = {"train_examples": largest.n, "cut_short": bool(largest.detail.get("cut_short"))}
        _record(context, self.name, run.document(self.name))
        for n, folder in trainer.adapters:
            record_adapter(context, f"{self.name}/n={n}", folder)
        config = {**run.last.candidate.config, "trained_on": largest.n, "train_examples_available": len(recipe.train),
                  "learning_curve": {"points": [[p.n, round(p.value, 4)] for p in run.points],
                                     "fit": run.fit.form, "steepness": run.fit.steepness, "text": run.text}}
        prepare_usage = Usage(tokens_in=trainer.tokens, tokens_out=0, latency_s=time.perf_counter() - began,
                              cost_usd=trainer.seconds / 3600 * recipe.backend.price_per_hour)
        return AnsweredCandidate(run.last.candidate, run.scores[-1].answers(), config=config,
                                 prepare_usage=prepare_usage)

    def params(self) -> dict[str, Any]:
        values = {"model": self.model, "sizes": list(self.sizes), "seed": self.seed,
                  "worthwhile_gain": self.worthwhile_gain, "settings": dict(self.settings)}
        if self._limited:
            values["limited_by_budget"] = self._limited
        return values


class LoraRecipe:
    """How the lora arm prompts, trains and answers (arms/lora.py, ``Lora.prepare``), for the arms
    that train the same way on other data (the curve's subsets, the distilled student's teacher
    labels): the zero-shot prompt at training and inference alike, the example's output as the
    answer, the answers read as zero-shot reads them. Kept to that recipe so the curve's full-data
    point has the lora arm's content key (same pairs, validation, settings and seed) and is
    trained only once."""

    def __init__(self, dataset: Dataset, backend, seed: int):
        from tunewise.arms.answers import AnswerPlan
        from tunewise.arms.lora import _split_train_validation
        from tunewise.arms.prompts import shared_prefix, task_brief

        if not hasattr(backend, "format"):
            raise TunewiseError(f"{backend.model_id} did not load as a local model", where="LoRA",
                                fix="use a catalog name, a model folder or a hub id")
        self.dataset = dataset
        self.backend = backend
        self.plan = AnswerPlan.for_dataset(dataset, backend.count_tokens)
        self.prefix = shared_prefix(task_brief(dataset.card, labels=self.plan.labels, schema=self.plan.schema))
        # The lora arm's split: the task's validation split, else a seeded tenth of train held out.
        self.train, self.validation, self.held_out = _split_train_validation(dataset, seed)

    def pairs(self, examples: Sequence[Example]) -> list:
        from tunewise.arms.lora import training_answer
        from tunewise.arms.prompts import with_input
        from tunewise.train import TrainingPair

        return [TrainingPair(with_input(self.prefix, e.input), training_answer(e)) for e in examples]

    def answer_seconds(self, examples: Sequence[Example], sample: int = ANSWER_SAMPLE) -> float:
        """Seconds to answer ``examples`` once trained, measured now on a few of them with the
        untrained model: merging the adapter leaves the cost of an answer as it is, and training
        must stop in time to leave this much of the budget (an arm that overruns its budget has
        its answers cut off by the bake-off)."""
        from tunewise.arms.zero_shot import PromptCandidate

        if not examples:
            return 0.0
        probe = PromptCandidate(self.backend, self.plan, self.prefix, {})
        chosen = list(examples[:sample])
        began = time.perf_counter()
        probe.predict(chosen)
        return (time.perf_counter() - began) / len(chosen) * len(examples)

    def candidate(self, result, config: dict[str, Any]) -> Candidate:
        """The adapter merged into a copy of the model, answering like zero-shot."""
        from tunewise.arms.zero_shot import PromptCandidate, base_config
        from tunewise.train import load_adapter

        tuned = load_adapter(self.backend, result.adapter_dir)
        config = {**base_config(config.get("arm", "lora"), self.backend.name, self.plan), "adapter":
                  result.adapter_dir.name, "steps": result.steps, "stopped": result.stopped,
                  "best_step": result.best_step, "reused_adapter": result.reused, **config}
        candidate = PromptCandidate(tuned, self.plan, self.prefix, config)
        seconds = result.train_seconds
        candidate.prepare_usage = Usage(tokens_in=result.train_tokens, tokens_out=0, latency_s=seconds,
                                        cost_usd=seconds * self.backend.price_per_hour / 3600.0)
        return candidate


class _Trainer:
    """One LoRA fine-tune per curve size, with the lora arm's recipe."""

    def __init__(self, recipe: LoraRecipe, settings: dict[str, Any], seed: int, arm: str, meta: dict[str, Any]):
        from tunewise.train import LoraSettings

        self.recipe = recipe
        self.settings = LoraSettings(**settings)
        self.seed = seed
        self.arm = arm
        self.meta = meta
        self.validation = recipe.pairs(recipe.validation)
        self.tokens = 0  # training tokens over every size
        self.seconds = 0.0  # training seconds over every size (what it cost, resumed sessions included)
        self.adapters: list[tuple[int, Path]] = []  # (training size, adapter folder), to record in the store

    def planned_work(self, n: int) -> float:
        resolved = self.settings.resolve(n)
        return float(resolved.total_steps * resolved.batch_size)

    def train_point(self, subset: list[Example], budget_s: float | None) -> TrainedPoint:
        from tunewise.train import train_adapter

        log.info("%s: training on %d examples (budget %s s)", self.arm, len(subset),
                 "none" if budget_s is None else f"{budget_s:.0f}")
        result = train_adapter(self.recipe.backend, self.recipe.pairs(subset), self.validation, self.settings,
                               budget_s=budget_s, seed=self.seed, meta={**self.meta, "train_examples": len(subset)},
                               progress=training_log(self.arm))
        self.tokens += result.train_tokens
        self.seconds += result.train_seconds
        self.adapters.append((len(subset), result.adapter_dir))
        candidate = self.recipe.candidate(result, {"arm": "lora_curve", "train_examples": len(subset)})
        batch = self.settings.resolve(len(subset)).batch_size
        detail = {"steps": result.steps, "best_step": result.best_step, "stopped": result.stopped,
                  "best_val_loss": result.best_val_loss, "reused_adapter": result.reused,
                  "adapter": result.adapter_dir.name}
        return TrainedPoint(candidate, result.train_seconds, float(max(result.steps, 1) * batch),
                            cut_short=result.stopped == "budget", detail=detail)


def training_log(arm: str) -> Callable[[Any], None]:
    """A ``train_adapter`` progress callback that logs evaluations, checkpoints and notes (INFO):
    a CLINC150-sized run on a CPU takes minutes per evaluation, and silence looks like a hang."""
    def report(event) -> None:
        if event.event in ("eval", "checkpoint", "note"):
            log.info("%s: %s at step %d/%d%s%s", arm, event.event, event.step, event.total_steps,
                     "" if event.val_loss is None else f", validation loss {event.val_loss:.3f}",
                     f" ({event.message})" if event.message else "")
    return report


def record_adapter(context: ArmContext, name: str, folder: Path) -> None:
    """An adapter as a ``lora_adapter`` artifact of the run (its files' digest), as the lora arm records its own."""
    if context.store is not None and context.run_id is not None:
        context.store.add_artifact(context.run_id, kind="lora_adapter", name=f"{name}/{folder.name}", path=folder)


def _record(context: ArmContext, arm_name: str, document: dict[str, Any]) -> None:
    """The curve as the run's ``learning_curve`` artifact, for the verdict and the report."""
    if context.store is None or context.run_id is None:
        return
    arm_id = next((a.id for a in context.store.get_run(context.run_id).arms if a.name == arm_name), None)
    context.store.add_artifact(context.run_id, kind="learning_curve", name=f"{arm_name}.json", content=document,
                               arm_id=arm_id)
