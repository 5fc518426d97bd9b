"""The cascade: a small, cheap stage answers first; a larger one answers only what it is unsure of.

Any two arms make the stages (the embedding classifier, zero-shot or few-shot on any model, a
LoRA fine-tune, another cascade): the cascade knows them only as `Arm`s. Each batch goes to the
first stage; the examples whose first answer is *unsure* go on to the second stage, and each
escalated example costs both stages (tokens, latency and dollars add up: the second call waits
for the first).

What "unsure" means, per task kind (the routing signal):

classify   the first stage's ``extra["confidence"]`` (for the prompting arms, the softmax share of
           the chosen label over the label set; for the embedding classifier, its probability)
           below the threshold. A first stage that reports no confidence is an error: routing
           blind would be a coin toss dressed up as a cascade.
extract    an answer that is not valid (the JSON did not parse or does not fit the schema)
           always escalates; a valid one escalates when the first stage reports a confidence
           below the threshold. The prompting arms report none for generated JSON, so with them
           the cascade escalates exactly the invalid answers, and the threshold sweep has a
           single point.
generate,  not applicable: no arm here reports a confidence for free text, and length or
qa         "looks unsure" heuristics would route on noise. `applies` says so and the bake-off
           skips the arm. A first stage that does put a confidence in ``extra`` can still be
           cascaded through the Python API: `prepare` checks the answers, not the kind.

The threshold is chosen on the validation split, never on test. Both stages answer a seeded
sample of at most ``validation_limit`` validation examples; from those answers the cascade's
quality and cost are known at every threshold that separates two distinct confidences (the
midpoint between them: "escalate when confidence < threshold"), without asking either model
again. The rule, in order:

1. ``threshold`` given: used as is, and no validation answers are needed;
2. ``target_escalation`` given: the threshold that escalates the largest share of validation
   examples not above the target;
3. otherwise the cheapest threshold - the fewest escalations - whose validation quality is
   within ``tolerance`` (absolute, in the task metric's units) of the second stage alone; when
   none is, the one with the best quality.

Escalating fewer examples is cheaper by construction (the first stage answers every example
either way), so "fewest escalations" and "cheapest" are the same threshold. The whole sweep is
recorded: summarised in the candidate's config, in full (with every validation answer's
confidence and score) as the run's ``cascade_sweep`` artifact. The validation answers are part
of preparing, so their tokens, time and dollars are in ``prepare_usage``.

One bias to know: a first stage that tunes itself on validation (the embedding classifier picks
its regularisation there) is slightly over-confident on it, so a threshold chosen on validation
escalates a little less on test than it did on validation.

Measured on CLINC150 (Larson et al. 2019, CC BY 3.0; full train, 100 validation examples for the
sweep, a seeded 200 of test) with the default pairing embed_classifier -> few_shot_nearest@
smollm2-135m-instruct, on the shared 2-core machine under heavy load: on validation the classifier
scored 98% and SmolLM2 few-shot 91%, so no threshold improved on the first stage and the rule chose
threshold 0 (escalate nothing). Test agreed: classifier 82.5%, SmolLM2 72.5%, and escalating any
share of the least confident answers only lowered accuracy (5%: 82.0%, 25%: 77.0%, all: 72.5%),
because SmolLM2 does worse than the classifier even on the classifier's unsure inputs (out-of-scope
requests: 1 of 37 right against 13). Forced to escalate 25% of validation (target_escalation=0.25:
threshold 0.81), the cascade escalated 34.5% of test (test holds more out-of-scope requests than
validation), kept answers were 97.7% right, and accuracy fell to 75.5% at $0.14 per 1,000 against
$0.0014 for the classifier and $0.29 for SmolLM2 alone. A 135M model is too weak a second stage
here; the cascade measures that instead of assuming the larger model knows better.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tunewise.arms.base import Arm, ArmContext, Budget, Candidate, Prediction
from tunewise.errors import TunewiseError
from tunewise.models.base import Usage
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example

if TYPE_CHECKING:
    from tunewise.bakeoff.plan import PlanOptions
    from tunewise.scoring import Metric
    from tunewise.task.card import TaskCard

DEFAULT_TOLERANCE = 0.01  # one point of accuracy: "as good as the large model alone", on validation
DEFAULT_VALIDATION_LIMIT = 200  # validation examples both stages answer to choose the threshold
CONFIG_SWEEP_POINTS = 25  # sweep points kept in the candidate's config (the artifact keeps all)
FREE_TEXT = frozenset({Kind.generate, Kind.qa})
ASSUMED_ESCALATION = 0.5  # for the time forecast only, before validation has said anything


# -- routing ---------------------------------------------------------------------------------


def confidence_of(prediction: Prediction) -> float | None:
    """The stage's confidence in its answer, from ``extra["confidence"]`` (None when absent)."""
    value = prediction.extra.get("confidence")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise TunewiseError(
            f"a first-stage answer reports confidence {value!r}, not a probability between 0 and 1",
            where="cascade", fix="put the answer's probability (0..1) in Prediction.extra['confidence']",
        )
    return float(value)


def route_key(prediction: Prediction, kind: Kind, stage: str = "the first stage") -> float:
    """A number per first answer such that the cascade escalates it when ``key < threshold``:
    -inf for an invalid answer (always escalated), its confidence, or +inf (never escalated by a
    threshold) for a valid extract answer without a confidence."""
    if not prediction.valid:
        return -math.inf
    confidence = confidence_of(prediction)
    if confidence is not None:
        return confidence
    if kind is Kind.extract:
        return math.inf
    raise TunewiseError(
        f"{stage} reports no confidence with its {kind.value} answers, so the cascade cannot tell its sure "
        "answers from its unsure ones",
        where="cascade",
        fix="use a first stage that scores its answer (embed_classifier, zero_shot or few_shot on a classify "
            "task), or one that sets Prediction.extra['confidence']",
    )


def escalation_reason(key: float, threshold: float) -> str | None:
    """Why an answer with this route key goes to the second stage (None: it stays)."""
    if key == -math.inf:
        return "invalid"
    return "low_confidence" if key < threshold else None


# -- the threshold sweep ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """The cascade on the validation sample at one threshold."""

    threshold: float  # escalate when confidence < threshold
    escalated: int
    escalation_rate: float
    quality: float  # the task metric of the cascade's answers
    cost_per_1k_usd: float  # first stage on every example + second stage on the escalated ones
    latency_mean_ms: float


def sweep_thresholds(
    keys: Sequence[float],
    first: Sequence[Prediction],
    second: Sequence[Prediction],
    references: Sequence[Sequence[str]],
    metric: Metric,
) -> list[SweepPoint]:
    """The cascade at every threshold that separates two distinct route keys, fewest escalations
    first, from both stages' answers to the same examples. Invalid answers (key -inf) escalate at
    every threshold; answers without a confidence (key +inf) at none."""
    n = len(keys)
    order = sorted(range(n), key=lambda i: keys[i])  # least sure first; stable for ties
    ranked = [keys[i] for i in order]
    forced = sum(1 for key in ranked if key == -math.inf)
    cuts: list[tuple[int, float]] = [(forced, 0.0)]  # (escalate the first k of `order`, threshold)
    for k in range(forced + 1, n + 1):
        below = ranked[k - 1]
        above = ranked[k] if k < n else math.inf
        if below == math.inf or below == above:
            continue  # cannot escalate `below` without escalating `above` as well
        ceiling = above if above != math.inf else 1.0
        if below >= ceiling:
            continue  # a confidence of 1.0 with nothing above it: no threshold escalates it alone
        cuts.append((k, (below + ceiling) / 2))

    first_stats = metric.stats([p.output for p in first], references)
    second_stats = metric.stats([p.output for p in second], references)
    # Swapping example i's first answer for its second changes the summed statistics by a row of
    # `delta`; cumulative sums along `order` give every cut's totals in one pass.
    delta = np.cumsum((second_stats - first_stats)[order], axis=0)
    base = first_stats.sum(axis=0)
    sums = np.stack([base + (delta[k - 1] if k else 0.0) for k, _ in cuts])
    qualities = metric.aggregate_many(sums, n)

    first_cost = sum(p.usage.cost_usd for p in first)
    first_latency = sum(p.usage.latency_s for p in first)
    extra_cost = np.concatenate([[0.0], np.cumsum([second[i].usage.cost_usd for i in order])])
    extra_latency = np.concatenate([[0.0], np.cumsum([second[i].usage.latency_s for i in order])])
    return [
        SweepPoint(
            threshold=threshold, escalated=k, escalation_rate=k / n, quality=float(quality),
            cost_per_1k_usd=float((first_cost + extra_cost[k]) / n * 1000),
            latency_mean_ms=float((first_latency + extra_latency[k]) / n * 1000),
        )
        for (k, threshold), quality in zip(cuts, qualities, strict=True)
    ]


def choose_point(points: Sequence[SweepPoint], *, reference_quality: float, tolerance: float,
                 target_escalation: float | None) -> tuple[SweepPoint, str]:
    """The chosen sweep point and, in words, why (see the module docstring for the rule)."""
    if target_escalation is not None:
        fitting = [p for p in points if p.escalation_rate <= target_escalation + 1e-12]
        if fitting:
            return fitting[-1], f"the most escalations within the target rate {target_escalation:g}"
        return points[0], (f"the fewest escalations possible ({points[0].escalation_rate:.3f}, invalid answers "
                           f"always escalate), above the target rate {target_escalation:g}")
    floor = reference_quality - tolerance - 1e-12  # the epsilon: a sum of floats equal to the reference counts
    for point in points:  # fewest escalations first
        if point.quality >= floor:
            return point, f"the fewest escalations within {tolerance:g} of the second stage alone on validation"
    best = max(points, key=lambda p: p.quality)  # first maximum: the fewest escalations among ties
    return best, f"no threshold came within {tolerance:g} of the second stage alone; the best on validation"


# -- the arm -----------------------------------------------------------------------------------


class Cascade(Arm):
    """``first`` answers every example; ``second`` answers those ``first`` is unsure of.

    threshold: escalate when the first stage's confidence is below it (0..1). None: chosen on
        the validation split (see the module docstring).
    target_escalation: choose the threshold that escalates this share of validation examples
        (at most) instead of the one that matches the second stage's quality.
    tolerance: how far below the second stage alone the cascade's validation quality may fall.
    validation_limit: validation examples (a seeded sample) both stages answer to choose the threshold.
    """

    def __init__(
        self,
        first: Arm,
        second: Arm,
        *,
        threshold: float | None = None,
        target_escalation: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        validation_limit: int = DEFAULT_VALIDATION_LIMIT,
    ):
        self.first = first
        self.second = second
        self.threshold = _checked_share("threshold", threshold)
        self.target_escalation = _checked_share("target_escalation", target_escalation)
        if threshold is not None and target_escalation is not None:
            raise TunewiseError("give a threshold or a target escalation rate, not both", where="cascade",
                                fix="drop one: a fixed threshold leaves nothing to target")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise TunewiseError(f"tolerance must be between 0 and 1, got {tolerance!r}", where="cascade.tolerance",
                                fix="give it in the metric's units, e.g. 0.01 for one point of accuracy")
        self.tolerance = float(tolerance)
        if isinstance(validation_limit, bool) or not isinstance(validation_limit, int) or validation_limit < 1:
            raise TunewiseError(f"validation_limit must be a positive integer, got {validation_limit!r}",
                                where="cascade.validation_limit", fix="e.g. 200")
        self.validation_limit = validation_limit

    @property
    def name(self) -> str:  # type: ignore[override]
        # The settings show in the name only when given, so one bake-off can hold several.
        suffix = ""
        if self.threshold is not None:
            suffix = f"@threshold={self.threshold:g}"
        elif self.target_escalation is not None:
            suffix = f"@escalate={self.target_escalation:g}"
        return f"cascade[{self.first.name}->{self.second.name}]{suffix}"

    def params(self) -> dict[str, Any]:
        return {
            "first": {"arm": self.first.name, **self.first.params()},
            "second": {"arm": self.second.name, **self.second.params()},
            "threshold": self.threshold,
            "target_escalation": self.target_escalation,
            "tolerance": self.tolerance,
            "validation_limit": self.validation_limit,
        }

    def applies(self, dataset: Dataset) -> str | None:
        kind = dataset.card.kind
        if kind in FREE_TEXT:
            return (f"no first stage reports a confidence for free-text ({kind.value}) answers, so a cascade "
                    "cannot tell which answers are unsure")
        for role, stage in (("first", self.first), ("second", self.second)):
            reason = stage.applies(dataset)
            if reason:
                return f"its {role} stage {stage.name} does not apply: {reason}"
        first_model, second_model = self.first.params().get("model"), self.second.params().get("model")
        if first_model is not None and first_model == second_model:
            return (f"both stages run {first_model}: a cascade puts a cheap stage in front of a larger model; "
                    "name a second, larger model last in --models, or a cheap first stage such as embed_classifier")
        if self.threshold is None and not dataset.validation:
            return ("the threshold is chosen on the validation split and this task has none; add one "
                    "(data.split.validation or a validation file) or give a fixed threshold")
        return None

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """Both stages' forecasts, with validation answered by both and half the test escalated
        (the escalation rate is unknown until validation is answered). None if either stage has none."""
        validation = 0 if self.threshold is not None else min(self.validation_limit, len(dataset.validation))
        first = self.first.estimated_seconds(dataset, validation + n_examples)
        second = self.second.estimated_seconds(dataset, validation + math.ceil(n_examples * ASSUMED_ESCALATION))
        return None if first is None or second is None else first + second

    def prepare(self, context: ArmContext) -> CascadeCandidate:
        started = time.perf_counter()
        deadline = None if context.budget.seconds is None else started + context.budget.seconds
        dataset = context.dataset
        first = self._prepare_stage("first", self.first, context, deadline)
        second = self._prepare_stage("second", self.second, context, deadline)
        spent = [first.prepare_usage, second.prepare_usage]

        if self.threshold is not None:
            threshold, selection = self.threshold, {"chosen_by": "given"}
        else:
            sample = _validation_sample(dataset.validation, self.validation_limit, context.seed)
            if not sample:
                raise TunewiseError("the threshold is chosen on the validation split and this task has none",
                                    where=self.name, fix="add a validation split to the card, or give a threshold")
            threshold, selection, answered = self._choose_threshold(dataset, sample, first, second, context, deadline)
            spent.extend(p.usage for p in answered)

        config = {
            "arm": "cascade",
            "first": {"arm": self.first.name, "model_id": first.model_id, "config": first.config},
            "second": {"arm": self.second.name, "model_id": second.model_id, "config": second.config},
            "threshold": threshold,
            "rule": "escalate when the first answer is invalid or its confidence < threshold",
            "tolerance": self.tolerance,
            "target_escalation": self.target_escalation,
            **{key: value for key, value in selection.items() if key not in ("sweep", "examples")},
        }
        if "sweep" in selection:
            config["sweep"] = _thinned(selection["sweep"], selection["chosen"], CONFIG_SWEEP_POINTS)
            if context.store is not None and context.run_id is not None:
                content = {"cascade": self.name, **{k: v for k, v in config.items() if k not in ("first", "second")},
                           "first": self.first.name, "second": self.second.name, "sweep": selection["sweep"],
                           "examples": selection["examples"]}
                context.store.add_artifact(context.run_id, kind="cascade_sweep", name=self.name,
                                           content=_finite(content))
        prepare_usage = _total(spent, seconds=time.perf_counter() - started)
        return CascadeCandidate(first, second, kind=dataset.card.kind, threshold=threshold, config=config,
                                prepare_usage=prepare_usage, names=(self.first.name, self.second.name))

    def _prepare_stage(self, role: str, stage: Arm, context: ArmContext, deadline: float | None) -> Candidate:
        remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
        try:
            return stage.prepare(dataclasses.replace(context, budget=Budget(seconds=remaining)))
        except TunewiseError as error:
            raise TunewiseError(f"its {role} stage {stage.name} failed to prepare: {error.message}",
                                where=f"{self.name}" + (f" ({error.where})" if error.where else ""),
                                fix=error.fix) from error
        except Exception as error:
            raise TunewiseError(f"its {role} stage {stage.name} failed to prepare: {type(error).__name__}: {error}",
                                where=self.name, fix=f"run the arm {stage.name} alone to see the failure") from error

    def _choose_threshold(self, dataset: Dataset, sample: list[Example], first: Candidate, second: Candidate,
                          context: ArmContext, deadline: float | None):
        """(threshold, what the sweep found, every validation answer) from both stages' answers
        to the validation sample. Only validation examples and their labels are read here."""
        from tunewise.scoring import resolve_metric

        kind = dataset.card.kind
        first_answers = answer_all(first, sample)
        keys = [route_key(p, kind, f"the first stage {self.first.name}") for p in first_answers]
        second_answers = answer_all(second, sample, deadline=deadline)
        cut_short = len(second_answers) < len(sample)  # the time budget ran out: sweep on what was answered
        n = len(second_answers)
        sample, first_answers, keys = sample[:n], first_answers[:n], keys[:n]
        references = [example.answers for example in sample]
        metric = resolve_metric(dataset.card.metric_name, kind, labels=dataset.labels,
                                schema=dataset.card.schema_dict())
        points = sweep_thresholds(keys, first_answers, second_answers, references, metric)
        second_quality = metric.score([p.output for p in second_answers], references)
        chosen, why = choose_point(points, reference_quality=second_quality, tolerance=self.tolerance,
                                   target_escalation=self.target_escalation)
        first_scores = _per_example(metric, first_answers, references)
        second_scores = _per_example(metric, second_answers, references)
        selection = {
            "chosen_by": why,
            "metric": metric.name,
            "validation": {
                "n": n, "of": len(dataset.validation), "seed": context.seed, "cut_short_by_budget": cut_short,
                "first_quality": metric.score([p.output for p in first_answers], references),
                "second_quality": second_quality,
                "quality": chosen.quality,
                "escalation_rate": chosen.escalation_rate,
                "cost_per_1k_usd": chosen.cost_per_1k_usd,
                "first_cost_per_1k_usd": 1000 * sum(p.usage.cost_usd for p in first_answers) / n,
                "second_cost_per_1k_usd": 1000 * sum(p.usage.cost_usd for p in second_answers) / n,
            },
            "chosen": asdict(chosen),
            "sweep": [asdict(point) for point in points],
            "examples": [
                {"example": f"{ex.source}:{ex.line}", "first": a.output, "first_valid": a.valid,
                 "confidence": confidence_of(a), "first_score": s1, "second": b.output, "second_score": s2}
                for ex, a, b, s1, s2 in zip(sample, first_answers, second_answers, first_scores, second_scores)
            ],
        }
        return chosen.threshold, selection, [*first_answers, *second_answers]


class CascadeCandidate(Candidate):
    """Two prepared stages and the threshold between them."""

    def __init__(self, first: Candidate, second: Candidate, *, kind: Kind, threshold: float,
                 config: dict[str, Any], prepare_usage: Usage | None = None,
                 names: tuple[str, str] = ("first", "second")):
        self.first = first
        self.second = second
        self.kind = kind
        self.threshold = threshold
        self.config = config
        self.model_id = f"{first.model_id} -> {second.model_id}"
        self.prepare_usage = prepare_usage
        self.names = names

    def batch_size(self) -> int:
        return self.first.batch_size()  # the second stage gets the escalated part, in its own batch size

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        if not batch:
            return []
        first_answers = answer_all(self.first, batch)
        reasons = [escalation_reason(route_key(p, self.kind, f"the first stage {self.names[0]}"), self.threshold)
                   for p in first_answers]
        escalated = [i for i, reason in enumerate(reasons) if reason]
        second_answers = dict(zip(escalated, answer_all(self.second, [batch[i] for i in escalated]), strict=True))
        merged = []
        for i, first in enumerate(first_answers):
            second = second_answers.get(i)
            answer = second if second is not None else first
            extra = {
                **answer.extra,  # the answering stage's own detail (its confidence, examples, ...)
                "escalated": second is not None,
                "escalation_reason": reasons[i],
                "answered_by": self.names[1] if second is not None else self.names[0],
                "first_output": first.output,
                "first_confidence": confidence_of(first),
                "first_valid": first.valid,
            }
            usage = _added(first.usage, second.usage) if second is not None else first.usage
            merged.append(dataclasses.replace(answer, usage=usage, extra=extra))
        return merged


# -- helpers -----------------------------------------------------------------------------------


def answer_all(candidate: Candidate, examples: Sequence[Example], *, deadline: float | None = None) -> list[Prediction]:
    """The candidate's answers to ``examples``, in its own batch size. With ``deadline``, stops
    after the batch that passes it (at least one batch is answered)."""
    size = max(1, candidate.batch_size())
    answers: list[Prediction] = []
    for start in range(0, len(examples), size):
        if answers and deadline is not None and time.perf_counter() > deadline:
            break
        batch = examples[start : start + size]
        got = candidate.predict(batch)
        if len(got) != len(batch):
            raise TunewiseError(f"a stage returned {len(got)} answers for {len(batch)} examples",
                                where=f"cascade stage {candidate.model_id}", fix="return one answer per example")
        answers.extend(got)
    return answers


def _validation_sample(validation: Sequence[Example], limit: int, seed: int) -> list[Example]:
    """At most ``limit`` validation examples: a seeded sample, in split order (files are often
    sorted by label, so the first N would cover a few labels only)."""
    if len(validation) <= limit:
        return list(validation)
    return [validation[i] for i in sorted(random.Random(seed).sample(range(len(validation)), limit))]


def _per_example(metric: Metric, answers: Sequence[Prediction], references) -> list[float]:
    from tunewise.scoring import per_example_scores

    return [float(s) for s in per_example_scores(metric, [p.output for p in answers], references)]


def _added(a: Usage, b: Usage) -> Usage:
    return Usage(a.tokens_in + b.tokens_in, a.tokens_out + b.tokens_out, a.latency_s + b.latency_s,
                 a.cost_usd + b.cost_usd)


def _total(usages: Sequence[Usage | None], *, seconds: float) -> Usage:
    """Tokens and dollars of everything spent preparing; the time is the measured wall time."""
    present = [u for u in usages if u is not None]
    return Usage(tokens_in=sum(u.tokens_in for u in present), tokens_out=sum(u.tokens_out for u in present),
                 latency_s=seconds, cost_usd=sum(u.cost_usd for u in present))


def _checked_share(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise TunewiseError(f"{name} must be between 0 and 1, got {value!r}", where=f"cascade.{name}",
                            fix="e.g. 0.7 for a threshold, 0.3 to escalate about 30% of the examples")
    return float(value)


def _thinned(points: list[dict], chosen: dict, most: int) -> list[dict]:
    """At most ``most`` sweep points, evenly spread, always with both ends and the chosen one."""
    if len(points) <= most:
        return points
    picked = {round(i * (len(points) - 1) / (most - 2)) for i in range(most - 1)}
    return [p for i, p in enumerate(points) if i in picked or p == chosen]


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats (an undefined metric) become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- the plan's default pairing ----------------------------------------------------------------

SETTINGS = ("first", "second", "threshold", "target_escalation", "tolerance", "validation_limit")


def build_cascade(card: TaskCard, options: PlanOptions, models: Sequence[str]) -> Cascade:
    """The cascade the bake-off plans, from ``options.extra["cascade"]`` (keys: SETTINGS).

    Stages are arm specs, ``KIND`` or ``KIND@MODEL`` (``few_shot_nearest@gemma3-270m``). When
    not named: the first stage is the cheapest that reports a confidence - the embedding
    classifier on a classify task, else zero-shot on the first model of ``models`` - and the
    second is nearest-neighbour few-shot on the last model of ``models`` (users usually list
    the largest last). A stage kind that runs on a model, named without one, takes that same
    default model.
    """
    settings = dict(options.extra.get("cascade") or {})
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TunewiseError(f"unknown cascade setting {unknown[0]!r}", where="--cascade",
                            fix=f"use {', '.join(SETTINGS)}")
    first_default = "embed_classifier" if card.kind is Kind.classify else "zero_shot"
    first = stage_arm(str(settings.get("first") or first_default), card, options, default_model=models[0])
    second = stage_arm(str(settings.get("second") or "few_shot_nearest"), card, options, default_model=models[-1])
    return Cascade(first, second, threshold=settings.get("threshold"),
                   target_escalation=settings.get("target_escalation"),
                   tolerance=settings.get("tolerance", DEFAULT_TOLERANCE),
                   validation_limit=settings.get("validation_limit", DEFAULT_VALIDATION_LIMIT))


def stage_arm(spec: str, card: TaskCard, options: PlanOptions, *, default_model: str) -> Arm:
    """An arm from ``KIND`` or ``KIND@MODEL`` (the model may itself hold an @: openai:m@URL)."""
    from tunewise.bakeoff.plan import ARM_KINDS

    kind_name, _, model = spec.strip().partition("@")
    kinds = [name for name in ARM_KINDS if name != "cascade"]
    if kind_name not in kinds:
        raise TunewiseError(f"unknown cascade stage {spec!r}", where="--cascade",
                            fix=f"name an arm kind, optionally @MODEL: {', '.join(kinds)}")
    kind = ARM_KINDS[kind_name]
    if not kind.per_model and model:
        raise TunewiseError(f"the stage {kind_name} runs on no language model, yet {model!r} was given",
                            where="--cascade", fix=f"write just {kind_name}")
    return kind.build((model or default_model) if kind.per_model else None, card, options)


def parse_cascade_option(text: str) -> dict[str, Any]:
    """The CLI's ``--cascade FIRST,SECOND[,threshold=X|escalate=R|tolerance=T]`` as
    ``PlanOptions.extra["cascade"]``; an empty FIRST or SECOND keeps the default."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) < 2:
        raise TunewiseError(f"--cascade needs two stages, got {text!r}", where="--cascade",
                            fix="e.g. --cascade embed_classifier,few_shot_nearest@gemma3-270m")
    settings: dict[str, Any] = {key: value for key, value in zip(("first", "second"), parts[:2]) if value}
    names = {"threshold": "threshold", "escalate": "target_escalation", "tolerance": "tolerance",
             "validation": "validation_limit"}
    for part in parts[2:]:
        key, _, value = part.partition("=")
        if key not in names or not value:
            raise TunewiseError(f"unknown --cascade setting {part!r}", where="--cascade",
                                fix="use threshold=0.7, escalate=0.3, tolerance=0.01 or validation=200")
        try:
            settings[names[key]] = int(value) if key == "validation" else float(value)
        except ValueError:
            raise TunewiseError(f"{key}={value!r} is not a number", where="--cascade", fix=f"e.g. {key}=0.3") from None
    return settings
