"""The readiness checklist: is this task a candidate for fine-tuning at all?

Four items, each ``met``, ``not_met`` or ``unknown`` with the evidence behind it:

1. ``training_examples``: at least 1,000 high-quality training examples (train +
   validation, after dropping duplicates, conflicting rows and encoding damage).
2. ``task_definition``: the task is strictly defined (a closed label set, or a JSON
   schema for extraction), so "correct" has one meaning a model can be trained toward.
3. ``metric``: a clear metric, named in the card or a sound default for the kind.
4. ``prompting_gap``: prompting demonstrably falls short. Only a bake-off can show it, so
   it stays ``unknown`` until one passes a ``PromptingGap`` (the verdict builds it: the best
   prompting arm against the quality bar and against the best other arm, paired and
   Holm-corrected), and then says yes or no and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunewise.errors import MetricError
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Dataset
from tunewise.task.findings import QualityFinding, ReadinessItem
from tunewise.task.quality import TrainingCount, training_count

MIN_TRAINING_EXAMPLES = 1_000


@dataclass(frozen=True)
class PromptingGap:
    """What a bake-off measured about prompting, enough to decide item 4.

    Scores are on the task's metric, higher is better; a CI is a (low, high) interval.
    """

    metric: str
    best_prompting_arm: str  # e.g. "few_shot"
    prompting_score: float
    prompting_ci: tuple[float, float] | None = None
    quality_bar: float | None = None  # the card's goals.quality_bar, if any
    best_other_arm: str | None = None  # the best arm that is not prompting (lora, distill, ...)
    other_score: float | None = None
    other_significantly_better: bool | None = None  # from a paired test; None if not run
    difference: tuple[float, float, float] | None = None  # other - prompting: (estimate, CI low, CI high)
    p_holm: float | None = None  # the paired test's p-value, Holm-corrected across the arms compared


def readiness(
    card: TaskCard,
    data: Dataset | TrainingCount | None,
    findings: Sequence[QualityFinding] = (),
    prompting_gap: PromptingGap | None = None,
) -> list[ReadinessItem]:
    """The four checklist items. ``data`` is None when the data could not be loaded."""
    count = training_count(data) if isinstance(data, Dataset) else data
    labels = data.labels if isinstance(data, Dataset) else None
    return [
        training_examples_item(count, findings),
        task_definition_item(card, labels),
        metric_item(card),
        prompting_gap_item(prompting_gap),
    ]


def training_examples_item(count: TrainingCount | None, findings: Sequence[QualityFinding] = ()) -> ReadinessItem:
    title = f"At least {MIN_TRAINING_EXAMPLES:,} high-quality training examples"
    if count is None:
        return ReadinessItem("training_examples", title, "unknown",
                             "the data has bad rows, so the examples could not be counted",
                             fix="fix the bad rows `tunewise check` lists, then check again")
    dropped = [f"{n:,} {what}" for n, what in ((count.duplicates, "duplicate copies"),
                                                (count.conflicting, "rows with conflicting outputs"),
                                                (count.damaged, "rows with encoding damage")) if n]
    evidence = (f"{count.usable:,} usable training examples (train + validation: {count.total:,}"
                + (f"; dropped {', '.join(dropped)})" if dropped else ")"))
    near = next((f for f in findings if f.code == "near_duplicate_input"), None)
    if near is not None:
        evidence += f"; {near.count:,} rows also have near-duplicates, kept"
    if count.usable >= MIN_TRAINING_EXAMPLES:
        return ReadinessItem("training_examples", title, "met", evidence)
    missing = MIN_TRAINING_EXAMPLES - count.usable
    return ReadinessItem("training_examples", title, "not_met", evidence,
                         fix=f"collect about {missing:,} more distinct, labelled examples "
                             "(or distill: label inputs with a large model)")


def task_definition_item(card: TaskCard, labels: list[str] | None = None) -> ReadinessItem:
    key, title = "task_definition", "A strictly defined task"
    if card.kind is Kind.classify:
        if card.labels is not None:
            return ReadinessItem(key, title, "met", f"classify with a closed set of {len(card.labels):,} labels "
                                                    "listed in the card")
        inferred = f"{len(labels):,} labels" if labels is not None else "the labels"
        return ReadinessItem(key, title, "met", f"classify with a closed set of {inferred} inferred from train",
                             fix=None)
    if card.kind is Kind.extract:
        if card.output_schema is not None:
            return ReadinessItem(key, title, "met", "extract with an output_schema that every output must satisfy")
        return ReadinessItem(key, title, "not_met",
                             "extract without an output_schema: any JSON object counts as well-formed",
                             fix="add output_schema")
    if card.kind is Kind.generate:
        return ReadinessItem(key, title, "not_met",
                             "free-text generation has many acceptable outputs, so there is no single target "
                             "to train toward or to score against",
                             fix="if the outputs have a fixed structure, make the task kind extract with an "
                                 "output_schema, or classify if they come from a closed set")
    return ReadinessItem(key, title, "unknown",
                         "qa answers are short but open-ended: strict when each question has few accepted "
                         "answers, loose when the right answer depends on documents that change",
                         fix="list every accepted answer in each row's `answers`")


def metric_item(card: TaskCard) -> ReadinessItem:
    key, title = "metric", "A clear metric"
    name = card.metric_name
    if card.metric is None:
        if card.kind is Kind.generate:
            return ReadinessItem(key, title, "not_met",
                                 f"default {name} for generate: ROUGE-L is a weak proxy, name a task metric",
                                 fix="set `metric:` to a built-in metric or to `package.module:function`")
        return ReadinessItem(key, title, "met", f"default {name} for {card.kind.value}")
    try:
        from tunewise.scoring.metrics import resolve_metric
    except ImportError:
        return ReadinessItem(key, title, "unknown",
                             f"the card names metric {name!r}, but the metrics module is not available to check it")
    try:
        resolve_metric(name, card.kind)
    except MetricError as e:
        return ReadinessItem(key, title, "not_met", str(e), fix=e.fix)
    return ReadinessItem(key, title, "met", f"the card names metric {name!r}")


def prompting_gap_item(gap: PromptingGap | None) -> ReadinessItem:
    key, title = "prompting_gap", "Prompting demonstrably falls short"
    if gap is None:
        return ReadinessItem(key, title, "unknown", "run `tunewise bakeoff` first",
                             fix="run `tunewise bakeoff` to measure prompting against the other arms")
    prompt = f"{gap.best_prompting_arm} scores {gap.prompting_score:.3g} {gap.metric}"
    low, high = gap.prompting_ci or (gap.prompting_score, gap.prompting_score)
    if gap.prompting_ci is not None:
        prompt += f" (95% CI {low:.3g}-{high:.3g})"
    other = _other_arm_words(gap)
    if gap.quality_bar is not None:
        short = gap.quality_bar - gap.prompting_score
        if high < gap.quality_bar:
            return ReadinessItem(key, title, "met", f"yes, by {short:.3g} {gap.metric}: {prompt}, below the quality "
                                                    f"bar {gap.quality_bar:.3g} even at its interval's top{other}")
        if low >= gap.quality_bar:
            return ReadinessItem(key, title, "not_met", f"no: {prompt}, which meets the quality bar "
                                                        f"{gap.quality_bar:.3g}: prompting is good enough{other}")
    if gap.other_significantly_better is None or gap.best_other_arm is None:
        bar = f", straddling the quality bar {gap.quality_bar:.3g}" if gap.quality_bar is not None else ""
        return ReadinessItem(key, title, "unknown", f"{prompt}{bar}; no paired comparison with another arm yet")
    if gap.other_significantly_better:
        return ReadinessItem(key, title, "met", f"yes: {prompt}{other}")
    return ReadinessItem(key, title, "not_met", f"no: {prompt}{other}")


def _other_arm_words(gap: PromptingGap) -> str:
    """"; lora scores 0.93, 0.12 higher (95% CI 0.07-0.17, Holm p 0.001): significantly better"."""
    if gap.best_other_arm is None:
        return ""
    text = f"; {gap.best_other_arm}"
    if gap.other_score is not None:
        text += f" scores {gap.other_score:.3g}"
    if gap.difference is not None:
        delta, low, high = gap.difference
        text += f", {abs(delta):.3g} {'higher' if delta >= 0 else 'lower'} (95% CI {low:+.3g} to {high:+.3g}"
        text += f", Holm p {gap.p_holm:.2g})" if gap.p_holm is not None else ")"
    if gap.other_significantly_better is True:
        text += ", significantly better"
    elif gap.other_significantly_better is False:
        text += ", not significantly better"
    return text
