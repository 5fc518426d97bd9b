"""Distillation: a strong teacher labels inputs, and a small, fast student learns from its labels.

The flow, in ``Distill.prepare``:

1. The teacher is any arm, named as ``KIND@MODEL`` (``few_shot_nearest@gemma3-270m``,
   ``zero_shot@openai:gpt-4o-mini``, ``lora@gemma3-270m``) or a bare model spec (a remote
   ``openai:`` model teaches by nearest-neighbour few-shot prompting, a local one as a LoRA
   fine-tune). Unnamed, it is the best fine-tuned larger model of this bake-off (the best
   finished ``lora`` arm on another model), else a LoRA fine-tune of the largest catalog model
   larger than the student.
2. The inputs: the ``pool`` file of unlabelled inputs when given (a task card has no field for
   one yet, so the arm names it), else the training inputs with their labels hidden. Inputs that
   also appear in the test split are left out (the student must not train on test inputs, even
   with the teacher's labels), and so are those of the split the student early-stops on; at most
   ``max_inputs`` are labelled (a seeded sample).
3. The teacher answers every input, exactly as it would answer a test example, within half of
   the time budget left once it is ready (the student trains in the other half).
4. Its labels are filtered, per task kind:
     classify   the teacher's confidence (``extra["confidence"]``, the softmax share of its
                label) at least ``min_confidence``; a teacher that reports none keeps all;
     extract    schema-valid JSON only (``Prediction.valid``);
     every kind with ``samples`` > 0 and a generating teacher that can sample: the share of
                ``samples`` sampled answers (temperature ``temperature``) that agree with the
                greedy one, at least ``min_agreement``;
     and never an empty answer.
5. The student (default SmolLM2-135M-Instruct) is fine-tuned with LoRA on the kept (input,
   teacher answer) pairs, with the same prompt as the LoRA arm, early-stopping on the task's own
   labelled validation split.
6. Both are scored on the bake-off's test examples (the teacher's bake-off answers are reused
   when the teacher ran as an arm of this bake-off) and compared on the same examples.

What it reports (the ``distillation`` artifact of the run, and the candidate's config):
student vs teacher quality with intervals and a paired comparison, the share of teacher labels
kept and why the others were dropped, the teacher's label accuracy against the hidden gold
labels where known (all labels and kept ones: what the filter bought), and what the teacher
cost: tokens, dollars and seconds for labelling, plus its own preparation (training, indexing).

One caveat the report states: when the inputs are the training inputs, a teacher that learnt
from the training split (a LoRA fine-tune, few-shot examples) has seen their gold labels, so its
label accuracy there overstates its accuracy on new inputs. The test-split comparison does not
have that problem.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewise.arms.base import Arm, ArmContext, Budget, Candidate, Prediction
from tunewise.errors import DataError, TunewiseError
from tunewise.models.base import Usage
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Dataset, Example

if TYPE_CHECKING:
    from tunewise.arms.learning_curve import LoraRecipe
    from tunewise.train.curve import TestScore

log = logging.getLogger(__name__)

DEFAULT_STUDENT = "smollm2-135m-instruct"
DEFAULT_MAX_INPUTS = 2000
LABELLING_SHARE = 0.5  # of the time left once the teacher is ready; the student trains in the rest
REMOTE_TEACHER_KIND = "few_shot_nearest"  # an API model cannot be fine-tuned here: it teaches by prompting
LOCAL_TEACHER_KIND = "lora"  # "the best fine-tuned larger local model"
FINE_TUNED_KINDS = ("lora", "lora_curve")  # arm kinds whose bake-off results can name the default teacher
NOT_TEACHERS = ("distill", "cascade")
#: Arm kinds that learn from the training split: labelling training inputs, they have seen the gold.
LEARNS_FROM_TRAIN = ("lora", "lora_curve", "few_shot_random", "few_shot_nearest", "embed_classifier", "rag",
                     "cascade")

# Why a teacher label was dropped.
EMPTY, INVALID, LOW_CONFIDENCE, DISAGREEMENT = "empty", "invalid", "low_confidence", "disagreement"


# -- the teacher --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Teacher:
    arm: Arm
    spec: str  # KIND@MODEL
    source: str  # how it was chosen, in words


def teacher_arm(spec: str, card: TaskCard, options: dict[str, Any] | None = None) -> Arm:
    """An arm from ``KIND@MODEL``, ``KIND`` (arms without a model) or a bare model spec, built as
    the plan builds it with ``options`` ({"shots": k, KIND: that kind's settings}, as in
    ``PlanOptions``), so a teacher that also ran as an arm of the bake-off is the same arm."""
    from tunewise.bakeoff.plan import ARM_KINDS, PlanOptions
    from tunewise.models.load import is_remote

    spec = spec.strip()
    kind_name, _, model = spec.partition("@")
    if kind_name in NOT_TEACHERS:
        raise TunewiseError(f"a {kind_name} arm cannot be the teacher", where="distill.teacher",
                            fix="name a prompting or fine-tuned arm, e.g. lora@gemma3-270m")
    if kind_name not in ARM_KINDS:  # a bare model spec (which may itself hold an @: openai:m@URL)
        if not spec:
            raise TunewiseError("the teacher spec is empty", where="distill.teacher",
                                fix="name an arm (few_shot_nearest@gemma3-270m) or a model (openai:gpt-4o-mini)")
        kind_name, model = (REMOTE_TEACHER_KIND if is_remote(spec) else LOCAL_TEACHER_KIND), spec
        if kind_name not in ARM_KINDS:
            raise TunewiseError(f"the {kind_name} arm is not available in this version", where="distill.teacher",
                                fix="name the teacher as KIND@MODEL, e.g. few_shot_nearest@gemma3-270m")
    kind = ARM_KINDS[kind_name]
    if kind.per_model and not model:
        raise TunewiseError(f"the teacher {spec!r} names no model", where="distill.teacher",
                            fix=f"write {kind_name}@MODEL, e.g. {kind_name}@gemma3-270m")
    if not kind.per_model and model:
        raise TunewiseError(f"the arm {kind_name} runs on no language model, yet {model!r} was given",
                            where="distill.teacher", fix=f"write just {kind_name}")
    if kind.task_kinds is not None and card.kind not in kind.task_kinds:
        raise TunewiseError(f"the arm {kind_name} does not apply to a {card.kind.value} task",
                            where="distill.teacher", fix="name another arm as the teacher")
    options = dict(options or {})
    shots = int(options.pop("shots", PlanOptions().shots))
    return kind.build(model or None, card, PlanOptions(shots=shots, extra=options))


def choose_teacher(spec: str | None, card: TaskCard, student: str, context: ArmContext | None = None,
                   options: dict[str, Any] | None = None) -> Teacher:
    """The named teacher; else the best fine-tune of this bake-off on a larger model; else a LoRA
    fine-tune of the largest catalog model larger than the student."""
    if spec:
        arm = teacher_arm(spec, card, options)
        return Teacher(arm, arm.name, "named")
    best = _best_fine_tune(context, student)
    if best is not None:
        arm = teacher_arm(best, card, options)
        return Teacher(arm, arm.name, "the best fine-tuned model of this bake-off")
    larger = _larger_catalog_model(student)
    if larger is None:
        raise TunewiseError(f"no model larger than the student {student!r} to teach it", where="distill.teacher",
                            fix="name a teacher, e.g. teacher=openai:gpt-4o-mini or few_shot_nearest@MODEL")
    arm = teacher_arm(f"{LOCAL_TEACHER_KIND}@{larger}", card, options)
    return Teacher(arm, arm.name, f"a LoRA fine-tune of {larger}, the largest local model")


def _best_fine_tune(context: ArmContext | None, student: str) -> str | None:
    """The best-scoring finished fine-tuned arm of this bake-off on a model larger than the
    student (sizes from the catalog; a model of unknown size counts as larger than none)."""
    if context is None or context.store is None or context.run_id is None:
        return None
    best: tuple[float, str] | None = None
    for arm in context.store.get_run(context.run_id).arms:
        kind, _, model = arm.name.partition("@")
        estimate = (arm.metrics or {}).get("estimate") or {}
        if kind not in FINE_TUNED_KINDS or not _larger(model, student) or estimate.get("value") is None:
            continue
        if best is None or estimate["value"] > best[0]:
            best = (float(estimate["value"]), f"{LOCAL_TEACHER_KIND}@{model}")
    return best[1] if best else None


def _larger(model: str, student: str) -> bool:
    from tunewise.models.catalog import CATALOG

    if model == student:
        return False
    if model in CATALOG and student in CATALOG:
        return CATALOG[model].params > CATALOG[student].params
    return model not in CATALOG  # a folder or hub model: its size is not known before loading it


def _larger_catalog_model(student: str) -> str | None:
    from tunewise.models.catalog import CATALOG

    floor = CATALOG[student].params if student in CATALOG else 0
    larger = [m for m in CATALOG.values() if m.name != student and m.params > floor]
    return max(larger, key=lambda m: m.params).name if larger else None


# -- the inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolInput:
    """One input for the teacher, and its gold answer when the data has one (never shown to the teacher)."""

    example: Example  # output "" : the teacher sees the input only
    gold: tuple[str, ...] | None


@dataclass
class Pool:
    items: list[PoolInput]
    source: str  # "pool file PATH" or "training inputs, labels hidden"
    available: int  # inputs before anything was left out
    left_out: dict[str, int]  # inputs left out because the test split (or the student's validation) holds them


def read_pool(path: Path, input_field: str = "input", output_field: str = "output") -> list[PoolInput]:
    """Inputs from a pool file: ``.txt`` one input per line; JSONL / CSV / TSV the card's input
    column (an output column, if present, is kept as hidden gold for the teacher's label accuracy)."""
    from tunewise.task.findings import RowError
    from tunewise.task.readers import read_records

    if not path.is_file():
        raise DataError("the distillation pool file was not found", where=str(path),
                        fix="give a .txt (one input per line), .jsonl or .csv file of inputs")
    items: list[PoolInput] = []
    if path.suffix == ".txt":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                items.append(PoolInput(Example(input=line.strip(), output="", source=str(path), line=number), None))
        return items
    for record in read_records(path):
        if isinstance(record, RowError):
            raise DataError(f"{record.reason}: {record.message}", where=f"{record.file}:{record.line}",
                            fix="correct or remove this row of the pool file")
        text = record.fields.get(input_field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"no text in the input column {input_field!r}", where=f"{path}:{record.line}",
                            fix=f"give every row a non-empty {input_field!r}, or set data.input_field in the card")
        gold = record.fields.get(output_field)
        items.append(PoolInput(Example(input=text, output="", source=str(path), line=record.line),
                               (gold,) if isinstance(gold, str) and gold.strip() else None))
    return items


def pool_inputs(dataset: Dataset, pool: str | Path | None, max_inputs: int | None, seed: int, *,
                validation: Collection[str] = ()) -> Pool:
    """The inputs the teacher labels (see the module doc, step 2). ``validation``: the inputs the
    student early-stops on, left out as the test inputs are (it is scored on their gold labels)."""
    if pool is not None:
        items = read_pool(dataset.card.resolve(Path(pool)), dataset.card.data.input_field,
                          dataset.card.data.output_field)
        source = f"pool file {pool}"
    else:
        items = [PoolInput(dataclasses.replace(ex, output="", references=()), ex.answers) for ex in dataset.train]
        source = "training inputs, labels hidden"
    test_inputs = {ex.input for ex in dataset.test}
    held = set(validation)
    left_out = {"test": sum(i.example.input in test_inputs for i in items),
                "validation": sum(i.example.input in held and i.example.input not in test_inputs for i in items)}
    unique: dict[str, PoolInput] = {}
    for item in items:  # one teacher call per distinct input
        if item.example.input not in test_inputs and item.example.input not in held:
            unique.setdefault(item.example.input, item)
    kept = list(unique.values())
    if max_inputs is not None and len(kept) > max_inputs:
        kept = [kept[i] for i in sorted(random.Random(seed).sample(range(len(kept)), max_inputs))]
    return Pool(kept, source, len(items), left_out)


# -- labelling and filtering --------------------------------------------------------------------------


@dataclass
class Labels:
    """The teacher's answers to the pool, what was kept, and what it cost."""

    predictions: list[Prediction]
    agreement: list[float | None]  # share of sampled answers that agree with the greedy one
    dropped: list[str | None]  # per input: why its label was dropped (None: kept)
    seconds: float  # wall time of labelling, sampling included
    stopped: str | None = None  # why labelling stopped before the end of the pool
    sampling: str = "off"  # off | on | "unavailable: why"

    @property
    def kept(self) -> list[int]:
        return [i for i, reason in enumerate(self.dropped) if reason is None]

    def usage(self) -> Usage:
        return Usage(tokens_in=sum(p.usage.tokens_in for p in self.predictions),
                     tokens_out=sum(p.usage.tokens_out for p in self.predictions),
                     latency_s=self.seconds, cost_usd=sum(p.usage.cost_usd for p in self.predictions))


def label_pool(candidate: Candidate, items: Sequence[PoolInput], *, deadline: float | None = None) -> tuple[
        list[Prediction], float, str | None]:
    """The teacher's answers, batch by batch, until the pool or the time runs out."""
    size = max(1, candidate.batch_size())
    answers: list[Prediction] = []
    began = time.perf_counter()
    for start in range(0, len(items), size):
        if answers and deadline is not None and time.perf_counter() > deadline:
            return answers, time.perf_counter() - began, (
                f"the time budget ran out after {len(answers)} of {len(items)} inputs")
        batch = [item.example for item in items[start : start + size]]
        got = candidate.predict(batch)
        if len(got) != len(batch):
            raise TunewiseError(f"the teacher returned {len(got)} answers for {len(batch)} inputs",
                                where=f"teacher {candidate.model_id}", fix="return one answer per input")
        answers.extend(got)
    return answers, time.perf_counter() - began, None


def sampling_unavailable(candidate: Candidate, kind: Kind) -> str | None:
    """Why the teacher cannot be asked for sampled answers (None: it can).

    Sampling needs a prompting candidate that generates (classify answers are label scores: their
    confidence already is the distribution that sampling would estimate)."""
    if kind is Kind.classify:
        return "classify answers are label scores: the confidence filter covers agreement"
    plan = getattr(candidate, "plan", None)
    if not hasattr(candidate, "prompts") or getattr(candidate, "backend", None) is None or plan is None:
        return "the teacher is not a prompting arm whose prompts can be sampled"
    if plan.generation is None:
        return "the teacher does not generate its answers"
    return None


def sampled_agreement(candidate: Candidate, examples: Sequence[Example], greedy: Sequence[Prediction], *,
                      samples: int, temperature: float, seed: int) -> tuple[list[float], Usage]:
    """Per input, the share of ``samples`` sampled answers (parsed the teacher's way) that agree
    with its greedy answer, and what the sampling cost."""
    from tunewise.arms.answers import answer_batch

    plan = candidate.plan  # type: ignore[attr-defined]
    prompts = candidate.prompts(examples)  # type: ignore[attr-defined]
    agree = [0] * len(examples)
    spent: list[Usage] = []
    for s in range(samples):
        options = dataclasses.replace(plan.generation, temperature=temperature, seed=seed + 1 + s)
        answers = answer_batch(candidate.backend, prompts, dataclasses.replace(plan, generation=options))  # type: ignore[attr-defined]
        for i, (sampled, first) in enumerate(zip(answers, greedy)):
            agree[i] += same_answer(sampled, first, plan.kind)
        spent.extend(a.usage for a in answers)
    usage = Usage(sum(u.tokens_in for u in spent), sum(u.tokens_out for u in spent),
                  sum(u.latency_s for u in spent), sum(u.cost_usd for u in spent))
    return [count / samples for count in agree], usage


def same_answer(a: Prediction, b: Prediction, kind: Kind) -> bool:
    """Two answers agree: equal JSON values (extract), equal normalised text (qa, generate)."""
    if kind is Kind.extract:
        if not (a.valid and b.valid):
            return False
        return json.loads(a.output) == json.loads(b.output)
    from tunewise.scoring.metrics import normalize_answer

    return normalize_answer(a.output) == normalize_answer(b.output)


def drop_reasons(kind: Kind, predictions: Sequence[Prediction], agreement: Sequence[float | None], *,
                 min_confidence: float, min_agreement: float) -> list[str | None]:
    """Per teacher answer, why it is dropped (None: kept). The first failing test names it."""
    reasons: list[str | None] = []
    for prediction, agreed in zip(predictions, agreement, strict=True):
        confidence = prediction.extra.get("confidence")
        if not prediction.output.strip():
            reasons.append(EMPTY)
        elif kind is Kind.extract and not prediction.valid:
            reasons.append(INVALID)
        elif kind is Kind.classify and confidence is not None and confidence < min_confidence:
            reasons.append(LOW_CONFIDENCE)
        elif agreed is not None and agreed < min_agreement:
            reasons.append(DISAGREEMENT)
        else:
            reasons.append(None)
    return reasons


def label_quality(metric, predictions: Sequence[Prediction], items: Sequence[PoolInput],
                  dropped: Sequence[str | None]) -> dict[str, Any]:
    """The teacher's labels scored against the hidden gold answers, where the data has them: all
    of them, and the kept ones (what the filter bought)."""
    with_gold = [(p, item.gold, reason is None) for p, item, reason in zip(predictions, items, dropped)
                 if item.gold is not None]
    quality: dict[str, Any] = {"metric": metric.name, "n_with_gold": len(with_gold), "all": None, "kept": None,
                               "dropped": None}
    for name, chosen in (("all", with_gold), ("kept", [w for w in with_gold if w[2]]),
                         ("dropped", [w for w in with_gold if not w[2]])):
        if chosen:
            quality[name] = float(metric.score([p.output for p, _, _ in chosen], [g for _, g, _ in chosen]))
    return quality


# -- the arm --------------------------------------------------------------------------------------


@dataclass
class Distill(Arm):
    """A teacher labels inputs, the filter keeps the labels it trusts, and the student ``model``
    is fine-tuned with LoRA on them."""

    model: str = DEFAULT_STUDENT  # the student
    teacher: str | None = None  # KIND@MODEL or a model spec; None: see choose_teacher
    pool: str | None = None  # a file of unlabelled inputs (relative to the card); None: training inputs
    max_inputs: int | None = DEFAULT_MAX_INPUTS  # inputs the teacher labels at most (a seeded sample)
    min_confidence: float = 0.5  # classify: keep a label whose softmax share is at least this
    samples: int = 0  # extra sampled teacher answers per input for the agreement filter (0: off)
    temperature: float = 0.7  # of those samples
    min_agreement: float = 0.5  # keep a label when at least this share of the samples agree with it
    seed: int | None = None  # None: the bake-off's seed
    settings: dict[str, Any] = field(default_factory=dict)  # LoraSettings fields for the student
    #: How the teacher's arm is built: {"shots": k, KIND: settings}, as the plan's options give them
    #: to every arm (so ``lora@gemma3-270m`` as teacher is the bake-off's own lora arm, adapter and all).
    teacher_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("min_confidence", "min_agreement"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise TunewiseError(f"{name} must be between 0 and 1, got {value!r}", where=f"distill.{name}",
                                    fix="e.g. 0.5")
        if not isinstance(self.samples, int) or self.samples < 0:
            raise TunewiseError(f"samples must be 0 or more, got {self.samples!r}", where="distill.samples",
                                fix="0 turns the agreement filter off; 3 to 5 samples are typical")
        if self.max_inputs is not None and (not isinstance(self.max_inputs, int) or self.max_inputs < 1):
            raise TunewiseError(f"max_inputs must be a positive integer, got {self.max_inputs!r}",
                                where="distill.max_inputs", fix="e.g. 2000, or None for the whole pool")
        if self.temperature <= 0:
            raise TunewiseError(f"temperature must be above 0, got {self.temperature!r}", where="distill.temperature",
                                fix="sampled answers need a temperature, e.g. 0.7")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"distill@{self.model}" if self.teacher is None else f"distill[{self.teacher}]@{self.model}"

    def applies(self, dataset: Dataset) -> str | None:
        from tunewise.arms.zero_shot import labels_missing
        from tunewise.models.load import is_remote

        if is_remote(self.model):
            return f"the student {self.model} is a remote model; distillation fine-tunes a local one"
        if self.pool is None and not dataset.train:
            return "no inputs to label: the task has no training split and the arm names no pool file"
        if self.teacher is None and _larger_catalog_model(self.model) is None:
            return (f"no local model larger than the student {self.model} to teach it "
                    "(name one as the teacher: Distill(teacher=...), or the plan option extra['distill']['teacher'])")
        return labels_missing(dataset)

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """The teacher's own forecast for preparing and answering the inputs and the test
        examples, plus the LoRA arm's forecast for the student, scaled to the inputs it learns from.
        None when neither forecasts (an unknown teacher cost is not a zero one)."""
        try:
            teacher = choose_teacher(self.teacher, dataset.card, self.model, options=self.teacher_options)
        except TunewiseError:
            return None
        n_inputs = len(dataset.train) if self.pool is None else (self.max_inputs or len(dataset.train))
        if self.max_inputs is not None:
            n_inputs = min(n_inputs, self.max_inputs)
        teacher_s = teacher.arm.estimated_seconds(dataset, n_inputs + n_examples)
        student_s = _student_forecast(self.model, dataset, n_examples, n_inputs)
        if teacher_s is None and student_s is None:
            return None
        return (teacher_s or 0.0) + (student_s or 0.0)

    def prepare(self, context: ArmContext) -> Candidate:
        from tunewise.arms.learning_curve import LoraRecipe, record_adapter
        from tunewise.scoring import resolve_metric
        from tunewise.train.curve import AnsweredCandidate, bakeoff_examples

        began = time.perf_counter()
        deadline = None if context.budget.seconds is None else began + context.budget.seconds
        dataset = context.dataset
        card = dataset.card
        seed = context.seed if self.seed is None else self.seed
        metric = resolve_metric(card.metric_name, card.kind, labels=dataset.labels, schema=card.schema_dict())
        teacher = choose_teacher(self.teacher, card, self.model, context, self.teacher_options)
        recipe = LoraRecipe(dataset, context.backend(self.model), seed)
        pool = pool_inputs(dataset, self.pool, self.max_inputs, seed, validation={ex.input for ex in recipe.validation})
        if not pool.items:
            raise TunewiseError("no inputs left to label (every pool input is a test or validation input)",
                                where=self.name, fix="give a pool file of inputs that are not test inputs")
        examples = bakeoff_examples(context)

        teacher_began = time.perf_counter()
        teacher_candidate = _prepare_teacher(teacher, context, deadline)
        teacher_prepare_s = time.perf_counter() - teacher_began
        log.info("%s: teacher %s ready (%.0f s); labelling %d inputs", self.name, teacher.spec, teacher_prepare_s,
                 len(pool.items))
        # Labelling may take at most LABELLING_SHARE of what is left; the student's training needs the rest.
        label_deadline = None if deadline is None else (
            time.perf_counter() + LABELLING_SHARE * max(0.0, deadline - time.perf_counter()))
        labels = self._label(teacher_candidate, pool, card.kind, seed, label_deadline)
        kept = labels.kept
        log.info("%s: %d of %d teacher labels kept (%.0f s)", self.name, len(kept), len(labels.predictions),
                 labels.seconds)
        if not kept:
            counts = Counter(r for r in labels.dropped if r)
            raise TunewiseError(f"every teacher label was filtered out ({_reason_counts(counts)})", where=self.name,
                                fix="lower min_confidence / min_agreement, or choose a stronger teacher")

        # The student stops training in time for both to answer the test examples: an arm that
        # overruns its budget has its answers cut off by the bake-off.
        reused = _teacher_answers(context, teacher, examples, metric)
        train_budget = None
        if deadline is not None:
            answering = recipe.answer_seconds([ex for _, ex in examples])
            if reused is None:  # the teacher answers them too, at the pace it labelled
                answering += labels.seconds / max(1, len(labels.predictions)) * len(examples)
            train_budget = max(1.0, deadline - time.perf_counter() - answering)
        student = train_student(recipe, [(pool.items[i].example, labels.predictions[i].output) for i in kept],
                                settings=self.settings, seed=seed, budget_s=train_budget, name=self.name)
        log.info("%s: student trained (%s after %s steps); scoring it", self.name, student.detail["stopped"],
                 student.detail["steps"])
        student_score = _score(student.candidate, examples, metric)
        if reused is not None:
            teacher_score, teacher_scored_by = reused, "this bake-off's answers"
        else:
            teacher_score, teacher_scored_by = _score(teacher_candidate, examples, metric), "scored here"

        report = self._report(teacher, teacher_candidate, teacher_prepare_s, pool, labels, metric, student,
                              student_score, teacher_score, teacher_scored_by, examples)
        _record(context, self.name, report)
        record_adapter(context, self.name, student.adapter_dir)
        spent = [teacher_candidate.prepare_usage, labels.usage(), student.usage]
        prepare_usage = Usage(tokens_in=sum(u.tokens_in for u in spent if u),
                              tokens_out=sum(u.tokens_out for u in spent if u),
                              latency_s=time.perf_counter() - began, cost_usd=sum(u.cost_usd for u in spent if u))
        config = {**student.candidate.config, "arm": "distill", "teacher": teacher.spec,
                  "distillation": _summary(report)}
        return AnsweredCandidate(student.candidate, student_score.answers(examples), config=config,
                                 prepare_usage=prepare_usage)

    # -- steps ----------------------------------------------------------------------------------

    def _label(self, candidate: Candidate, pool: Pool, kind: Kind, seed: int, deadline: float | None) -> Labels:
        predictions, seconds, stopped = label_pool(candidate, pool.items, deadline=deadline)
        items = pool.items[: len(predictions)]
        agreement: list[float | None] = [None] * len(predictions)
        sampling = "off"
        if self.samples > 0:
            why_not = sampling_unavailable(candidate, kind)
            if why_not is None:
                began = time.perf_counter()
                shares, usage = sampled_agreement(candidate, [i.example for i in items], predictions,
                                                  samples=self.samples, temperature=self.temperature, seed=seed)
                agreement = list(shares)
                seconds += time.perf_counter() - began
                # The samples' tokens and dollars belong to the labelling cost: add them to each answer.
                predictions = [_with_extra_usage(p, usage, len(predictions)) for p in predictions]
                sampling = "on"
            else:
                sampling = f"unavailable: {why_not}"
        dropped = drop_reasons(kind, predictions, agreement, min_confidence=self.min_confidence,
                               min_agreement=self.min_agreement)
        return Labels(predictions, agreement, dropped, seconds, stopped, sampling)

    def _report(self, teacher: Teacher, teacher_candidate: Candidate, teacher_prepare_s: float, pool: Pool,
                labels: Labels, metric, student: TrainedStudent, student_score: TestScore, teacher_score: TestScore,
                teacher_scored_by: str, examples) -> dict[str, Any]:
        from tunewise.scoring import paired_comparison

        n_labelled = len(labels.predictions)
        counts = Counter(r for r in labels.dropped if r)
        references = [ex.answers for _, ex in examples]
        comparison = paired_comparison(metric, student_score.outputs, teacher_score.outputs, references,
                                       arm_a="student", arm_b="teacher")
        usage = labels.usage()
        prepared = teacher_candidate.prepare_usage
        kind = teacher.spec.partition("@")[0]
        caveat = None
        if pool.source.startswith("training") and kind in LEARNS_FROM_TRAIN:
            caveat = ("the teacher learnt from the training split, so it has seen these inputs' gold labels: its "
                      "label accuracy here overstates its accuracy on new inputs (the test comparison does not)")
        return {
            "arm": self.name,
            "teacher": {"spec": teacher.spec, "chosen": teacher.source, "model_id": teacher_candidate.model_id},
            "student": {"spec": self.model, "model_id": student.candidate.model_id, **student.detail},
            "inputs": {"source": pool.source, "available": pool.available, "left_out": pool.left_out,
                       "labelled": n_labelled, "asked": len(pool.items), "stopped": labels.stopped},
            "labels": {
                "kept": len(labels.kept), "kept_share": len(labels.kept) / n_labelled if n_labelled else None,
                "dropped": dict(counts), "min_confidence": self.min_confidence, "samples": self.samples,
                "min_agreement": self.min_agreement, "sampling": labels.sampling,
                "accuracy_against_gold": {**label_quality(metric, labels.predictions, pool.items, labels.dropped),
                                          "caveat": caveat},
            },
            "teacher_cost": {
                "labelling": {"tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out,
                              "usd": usage.cost_usd, "seconds": usage.latency_s},
                "preparing": {"seconds": prepared.latency_s if prepared else teacher_prepare_s,
                              "usd": prepared.cost_usd if prepared else 0.0,
                              "tokens_in": prepared.tokens_in if prepared else 0,
                              "tokens_out": prepared.tokens_out if prepared else 0},
            },
            "quality": {
                "metric": metric.name, "n": len(examples),
                "student": _estimate_dict(student_score), "teacher": {**_estimate_dict(teacher_score),
                                                                       "scored": teacher_scored_by},
                "student_minus_teacher": {"difference": comparison.difference, "low": comparison.ci_low,
                                          "high": comparison.ci_high, "p_value": comparison.p_value,
                                          "test": comparison.test},
            },
        }


# -- the student ------------------------------------------------------------------------------------


@dataclass
class TrainedStudent:
    candidate: Candidate
    usage: Usage  # its training: seconds and machine dollars
    detail: dict[str, Any]  # steps, losses, adapter name: for the report
    adapter_dir: Path


def train_student(recipe: LoraRecipe, pairs: Sequence[tuple[Example, str]], *, settings: dict[str, Any], seed: int,
                  budget_s: float | None, name: str) -> TrainedStudent:
    """LoRA on (input, teacher answer) pairs with the lora arm's recipe (its prompt, answers and
    validation split: gold labels, for early stopping only); the candidate answers as it does."""
    from tunewise.arms.learning_curve import training_log
    from tunewise.train import LoraSettings, train_adapter

    dataset = recipe.dataset
    taught = [dataclasses.replace(example, output=answer, references=()) for example, answer in pairs]
    result = train_adapter(recipe.backend, recipe.pairs(taught), recipe.pairs(recipe.validation),
                           LoraSettings(**settings), budget_s=budget_s, seed=seed, progress=training_log(name),
                           meta={"task": dataset.card.name, "arm": name, "data": dataset.data_hashes,
                                 "labels": "teacher"})
    candidate = recipe.candidate(result, {"arm": "distill", "train_examples": len(taught)})
    detail = {"pairs": len(taught), "steps": result.steps, "best_step": result.best_step, "stopped": result.stopped,
              "best_val_loss": result.best_val_loss, "seconds": result.train_seconds,
              "adapter": result.adapter_dir.name, "reused_adapter": result.reused}
    return TrainedStudent(candidate, candidate.prepare_usage, detail, result.adapter_dir)


def _student_forecast(model: str, dataset: Dataset, n_examples: int, n_inputs: int) -> float | None:
    try:
        from tunewise.arms.lora import Lora
    except ImportError:
        return None
    forecast = Lora(model=model).estimated_seconds(dataset, n_examples)
    if forecast is None or not dataset.train:
        return forecast
    return forecast * max(n_inputs, 1) / len(dataset.train)


# -- helpers ----------------------------------------------------------------------------------------


def _prepare_teacher(teacher: Teacher, context: ArmContext, deadline: float | None) -> Candidate:
    reason = teacher.arm.applies(context.dataset)
    if reason is not None:
        raise TunewiseError(f"the teacher {teacher.spec} does not apply: {reason}", where="distill.teacher",
                            fix="name another teacher")
    remaining = None if deadline is None else max(1.0, deadline - time.perf_counter())
    return teacher.arm.prepare(dataclasses.replace(context, budget=Budget(seconds=remaining)))


def _score(candidate: Candidate, examples, metric) -> TestScore:
    from tunewise.train.curve import score_candidate

    return score_candidate(candidate, [ex for _, ex in examples], metric)


def _teacher_answers(context: ArmContext, teacher: Teacher, examples, metric) -> TestScore | None:
    """The teacher's answers to the test examples from this bake-off, scored, when it ran as an
    arm of it and answered them all; None otherwise (then it answers them here)."""
    from tunewise.train.curve import TestScore

    if context.store is None or context.run_id is None:
        return None
    for arm in context.store.get_run(context.run_id).arms:
        if arm.name != teacher.arm.name:
            continue
        rows = {row.example_index: row for row in context.store.predictions(arm.id, "test")}
        if all(i in rows for i, _ in examples):
            return TestScore.from_outputs(metric, [rows[i].output or "" for i, _ in examples], [ex for _, ex in examples])
    return None


def _estimate_dict(score: TestScore) -> dict[str, Any]:
    e = score.estimate
    return {"value": e.value, "low": e.low, "high": e.high}


def _with_extra_usage(prediction: Prediction, total: Usage, n: int) -> Prediction:
    usage = prediction.usage
    return dataclasses.replace(prediction, usage=Usage(usage.tokens_in + total.tokens_in // n,
                                                       usage.tokens_out + total.tokens_out // n,
                                                       usage.latency_s + total.latency_s / n,
                                                       usage.cost_usd + total.cost_usd / n))


def _reason_counts(counts: Counter) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in counts.most_common()) or "none labelled"


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers worth a glance, for the candidate's config."""
    quality = report["quality"]
    return {"teacher": report["teacher"]["spec"], "kept_share": report["labels"]["kept_share"],
            "labelled": report["inputs"]["labelled"], "student": quality["student"]["value"],
            "teacher_quality": quality["teacher"]["value"],
            "teacher_label_accuracy": report["labels"]["accuracy_against_gold"]["all"],
            "teacher_usd": report["teacher_cost"]["labelling"]["usd"] + report["teacher_cost"]["preparing"]["usd"],
            "teacher_seconds": report["teacher_cost"]["labelling"]["seconds"]
            + report["teacher_cost"]["preparing"]["seconds"]}


def _record(context: ArmContext, arm_name: str, report: dict[str, Any]) -> None:
    """The report as the run's ``distillation`` artifact (JSON-safe: no NaN or infinity)."""
    if context.store is None or context.run_id is None:
        return
    arm_id = next((a.id for a in context.store.get_run(context.run_id).arms if a.name == arm_name), None)
    context.store.add_artifact(context.run_id, kind="distillation", name=f"{arm_name}.json",
                               content=_json_safe(report), arm_id=arm_id)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
