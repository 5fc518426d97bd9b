"""A stored bake-off, read back as the evidence a decision needs.

For each arm: its kind and family (prompting, RAG, fine-tune, ...), status, every stored
prediction turned back into the metric's per-example sufficient statistics (so intervals and
paired tests are recomputed here, with today's statistics, from what the arm answered), the
latency and compute time per request, tokens, and the one-time preparation cost. For the run:
the task card, the metric, the test inputs (when the data files are still there and unchanged,
for error examples), the latest `tunewise check` of the task and any learning curves.

Nothing here decides anything; ``decide`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.errors import TunewiseError
from tunewise.scoring.metrics import Metric, resolve_metric
from tunewise.scoring.stats import Comparison, Estimate, bootstrap_ci_from_stats, paired_comparison_from_stats
from tunewise.store import PredictionRow, RunDetail, Store
from tunewise.task.card import TaskCard

SPLIT = "test"  # the bake-off scores every arm on the test split

#: Arm kind -> the family the recommendation names. Order matters when reading names: a
#: longer kind first ("rag_lora" before "rag", "few_shot_nearest" before "few_shot").
FAMILY = {
    "embed_classifier": "no_llm",
    "zero_shot": "prompt",
    "few_shot_random": "prompt",
    "few_shot_nearest": "prompt",
    "few_shot": "prompt",
    "rag_lora": "rag_fine_tune",
    "rag": "rag",
    "lora": "fine_tune",
    "lora_curve": "fine_tune",  # the learning-curve arm: its last point is a LoRA fine-tune on all the data
    "distill": "distill",
    "cascade": "cascade",
}
_KINDS_LONGEST_FIRST = sorted(FAMILY, key=len, reverse=True)


class VerdictError(TunewiseError):
    """A verdict or comparison cannot be built from what was asked for (a check run, a run of
    another task, a card that does not belong to the run, ...)."""


def arm_kind(name: str, config: dict[str, Any] | None = None) -> str:
    """The arm kind from its config (``kind``) or its name: "few_shot_nearest@smollm2-135m-instruct"
    -> "few_shot_nearest", "rag_k8@m" -> "rag", "cascade[a->b]" -> "cascade"."""
    declared = (config or {}).get("kind")
    if isinstance(declared, str) and declared:
        return declared
    for kind in _KINDS_LONGEST_FIRST:
        if name == kind or name.startswith((f"{kind}@", f"{kind}_", f"{kind}[")):
            return kind
    return name.split("@", 1)[0]


def family_of(kind: str) -> str:
    return FAMILY.get(kind, "other")


@dataclass
class ArmEvidence:
    """One arm of a stored bake-off, as measured."""

    name: str
    kind: str
    family: str
    model: str | None  # the model spec the arm ran on ("openai:gpt-4o-mini", a catalog name); None for none
    status: str  # finished | partial | failed | skipped | running
    reason: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    estimate: Estimate | None = None  # recomputed from the stored answers
    indexes: list[int] = field(default_factory=list)  # test-split indexes answered, ascending
    input_hashes: list[str] = field(default_factory=list)
    stats: np.ndarray | None = None  # per-example sufficient statistics, rows as ``indexes``
    scores: np.ndarray | None = None  # one number per example (right = 1 for 0/1 metrics)
    outputs: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    latencies_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tokens_in_mean: float | None = None
    tokens_out_mean: float | None = None
    stored_cost_per_request_usd: float | None = None  # mean of the stored per-answer costs
    prepare_s: float | None = None
    prepare_cost_usd: float | None = None
    model_id: str | None = None
    cached_share: float = 0.0
    errored: int = 0  # answers stored with an error (no usable output)

    @property
    def n(self) -> int:
        return len(self.indexes)

    @property
    def scored(self) -> bool:
        return self.estimate is not None and self.n > 0

    @property
    def value(self) -> float:
        return self.estimate.value if self.estimate is not None else math.nan

    @property
    def compute_s_per_request(self) -> float | None:
        """Mean compute seconds per answer, every answer counted."""
        return float(self.latencies_ms.mean() / 1000) if self.latencies_ms.size else None

    @property
    def steady_compute_s_per_request(self) -> float | None:
        """Mean compute seconds per answer once the arm is warm: the first batch left out when
        there are others.

        The bake-off shares each batch's time equally among its answers, so a batch is a run of
        equal times (in example order). The first batch also pays one-time warm-up - the shared
        prompt prefix computed once, lazy initialisation - which a served model pays once, not
        per request: measured by CPU time on zero-shot, batches of 8, the first took 41 s and the
        next three 26-36 s. Counting it would overprice every request of a small bake-off.
        """
        times = self.latencies_ms
        if times.size == 0:
            return None
        first = int(np.argmax(times != times[0])) if np.any(times != times[0]) else times.size
        steady = times[first:] if first < times.size else times
        return float(steady.mean() / 1000)

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms.size else None


@dataclass
class RunEvidence:
    """A stored bake-off and what surrounds it."""

    run: RunDetail
    card: TaskCard
    metric: Metric
    arms: list[ArmEvidence]
    inputs: dict[int, str] | None  # test inputs by index, when the data could be reloaded unchanged
    training_examples: int | None  # train + validation examples, when known
    dataset: Any = None  # the task's Dataset, when it could be reloaded unchanged
    check: RunDetail | None = None  # the latest clean `tunewise check` of this task
    check_report: dict[str, Any] | None = None
    learning_curves: list[dict[str, Any]] = field(default_factory=list)  # stored curve artifacts' content
    comparisons: dict[tuple[str, str, str], Comparison | None] = field(default_factory=dict)  # paired(), memo
    notes: list[str] = field(default_factory=list)  # what could not be read back, in words

    def arm(self, name: str) -> ArmEvidence:
        for arm in self.arms:
            if arm.name == name:
                return arm
        names = ", ".join(a.name for a in self.arms)
        raise VerdictError(f"run {self.run.id} has no arm {name!r}", fix=f"its arms: {names}")

    @property
    def scored_arms(self) -> list[ArmEvidence]:
        return [arm for arm in self.arms if arm.scored and arm.status == "finished"]

    @property
    def n_examples(self) -> int:
        return int(self.run.config.get("n_examples") or max((a.n for a in self.arms), default=0))


def load_evidence(store: Store, run_id: int, card: TaskCard | None = None, *, reload_data: bool = True
                  ) -> RunEvidence:
    """Read bake-off ``run_id`` back from ``store``. ``card``: the task card to decide with
    (its traffic, costs and goals may be newer than the stored one); None: the stored card.
    ``reload_data=False`` skips reloading the task's data (input texts, training size)."""
    run = store.get_run(run_id)
    if run.kind != "bakeoff":
        raise VerdictError(f"run {run_id} is a {run.kind} run, not a bake-off", where=f"run {run_id}",
                           fix=f"see `tunewise runs list --task {run.task_name}` for its bake-offs")
    notes: list[str] = []
    given = card is not None
    card = _card_for(run, card, notes)
    check, report = _latest_check(store, run)
    dataset = _reload_data(card, run, notes, [] if given else _card_folders(card, report)) if reload_data else None
    labels = card.labels or (dataset.labels if dataset is not None else None)
    metric_name = str(run.config.get("metric") or card.metric_name)
    rows = {summary.id: store.predictions(summary.id, SPLIT) for summary in run.arms}
    if metric_name == "macro_f1" and labels is None:
        # One label set for every arm, or their statistics' columns would not line up.
        labels = sorted({row.expected.strip() for arm_rows in rows.values() for row in arm_rows if row.expected})
        notes.append("macro-F1 was recomputed over the labels in the test answers (the training labels could not "
                     "be reloaded), so it may differ slightly from the bake-off table")
    metric = resolve_metric(metric_name, card.kind, labels=labels, schema=_schema(card, notes))
    arms = [_arm_evidence(summary, rows[summary.id], metric) for summary in run.arms]
    arms += _skipped_arms(run, {arm.name for arm in arms})
    inputs = {i: ex.input for i, ex in enumerate(dataset.test)} if dataset is not None else None
    training = len(dataset.train) + len(dataset.validation) if dataset is not None else None
    if training is None and report is not None:
        sizes = report.get("sizes") or {}
        training = int(sizes.get("train", 0)) + int(sizes.get("validation", 0)) or None
    curves = [dict(a.content) for a in run.artifacts
              if a.kind == "learning_curve" and isinstance(a.content, dict) and a.content.get("points")]
    return RunEvidence(run=run, card=card, metric=metric, arms=arms, inputs=inputs, dataset=dataset,
                       training_examples=training, check=check, check_report=report, learning_curves=curves,
                       notes=notes)


# -- the card and the data ------------------------------------------------------------------------


def _card_for(run: RunDetail, card: TaskCard | None, notes: list[str]) -> TaskCard:
    if card is None:
        return TaskCard.model_validate(run.card)
    if card.name != run.task_name:
        raise VerdictError(f"the card is for task {card.name!r}, run {run.id} is a bake-off of {run.task_name!r}",
                           where=str(card.source or "card"),
                           fix="give the card the run was made with, or leave the card out to use the stored one")
    stored = TaskCard.model_validate(run.card)
    changed = [name for name in ("traffic", "costs", "goals") if getattr(stored, name) != getattr(card, name)]
    if changed:
        notes.append(f"the card's {', '.join(changed)} differ from the ones stored with the run; the verdict uses "
                     "the card given")
    return card


def _card_folders(card: TaskCard, report: dict[str, Any] | None) -> list[Path]:
    """Where the task card lived when it was checked. The stored card keeps its data paths as
    written (relative to the card's folder); a check report remembers the resolved paths, and
    taking the relative path off a resolved one leaves the card's folder."""
    folders: list[Path] = []
    resolved = (report or {}).get("files") or {}
    for role, written in card.data.files().items():
        found = resolved.get(role)
        if not isinstance(found, str) or written.is_absolute():
            continue
        parts, tail = Path(found).parts, written.parts
        if len(parts) > len(tail) and parts[-len(tail):] == tail:
            folders.append(Path(*parts[: -len(tail)]))
    source = ((report or {}).get("card") or {}).get("source")
    if isinstance(source, str) and source:
        folders.append(Path(source).resolve().parent)
    return list(dict.fromkeys(folders))


def _reload_data(card: TaskCard, run: RunDetail, notes: list[str], folders: Sequence[Path] = ()):
    """The task's data, if it still loads and hashes as the run recorded (for input texts).
    Relative data paths are tried against the card's folder, then against ``folders``."""
    from tunewise.task.load import load_task

    problem = "its data files changed since the run"
    for folder in [None, *folders]:
        candidate = card if folder is None else card.model_copy()
        if folder is not None:
            candidate._base_dir = folder
        try:
            dataset = load_task(candidate)
        except TunewiseError as error:
            problem = f"it could not be reloaded ({error.message})"
            continue
        if dataset.data_hashes == run.data_hashes:
            return dataset
        problem = "its data files changed since the run"
    notes.append(f"The task's data is not available as the run saw it ({problem}): error examples show input "
                 "hashes instead of inputs; pass the task card to show them.")
    return None


def _schema(card: TaskCard, notes: list[str]) -> dict[str, Any] | None:
    try:
        return card.schema_dict()
    except TunewiseError as error:
        notes.append(f"the output schema could not be read ({error.message}); JSON validity ignores it")
        return None


# -- arms ---------------------------------------------------------------------------------------


def _arm_status(arm_status: str, metrics: dict[str, Any]) -> str:
    if arm_status == "failed":
        return "failed"
    if arm_status == "running":
        return "running"
    if metrics.get("status") == "partial" or arm_status == "interrupted":
        return "partial"
    return "finished"


def _arm_evidence(summary, rows: list[PredictionRow], metric: Metric) -> ArmEvidence:
    metrics = dict(summary.metrics or {})
    kind = arm_kind(summary.name, summary.config)
    status = _arm_status(summary.status, metrics)
    reason = metrics.get("reason") or metrics.get("error")
    arm = ArmEvidence(
        name=summary.name, kind=kind, family=family_of(kind), model=summary.model or None, status=status,
        reason=reason, config=dict(summary.config or {}), model_id=metrics.get("model_id"),
        prepare_s=_number(metrics.get("prepare_s")), prepare_cost_usd=_number(metrics.get("prepare_cost_usd")),
    )
    if not rows:
        return arm
    arm.indexes = [row.example_index for row in rows]
    arm.input_hashes = [row.input_hash for row in rows]
    arm.outputs = [row.output if row.output is not None else "" for row in rows]
    arm.expected = [row.expected if row.expected is not None else "" for row in rows]
    arm.errored = sum(1 for row in rows if row.output is None)
    arm.stats = example_stats(metric, rows)
    arm.scores = metric.per_example(arm.stats)
    arm.estimate = bootstrap_ci_from_stats(metric, arm.stats)
    arm.latencies_ms = np.array([row.latency_ms for row in rows if row.latency_ms is not None], dtype=float)
    arm.tokens_in_mean = float(np.mean([row.tokens_in or 0 for row in rows]))
    arm.tokens_out_mean = float(np.mean([row.tokens_out or 0 for row in rows]))
    arm.stored_cost_per_request_usd = float(np.mean([row.cost_usd or 0.0 for row in rows]))
    arm.cached_share = sum(row.cached for row in rows) / len(rows)
    return arm


def example_stats(metric: Metric, rows: Sequence[PredictionRow]) -> np.ndarray:
    """The metric's per-example statistics from stored answers.

    A metric that is the mean of one per-example score stored that score with each answer
    (``score``), which is all its statistics are. A ratio metric (macro-F1, field F1) needs the
    answer and the expected output again; the store keeps both.
    """
    if metric.mean_of_examples:
        return np.array([[row.score if row.score is not None else 0.0] for row in rows], dtype=float)
    return metric.stats([row.output or "" for row in rows], [row.expected or "" for row in rows])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _skipped_arms(run: RunDetail, stored: set[str]) -> list[ArmEvidence]:
    """Arms the bake-off planned but never started (it records no arm row for them)."""
    planned = [name for name in run.config.get("arms", []) if isinstance(name, str)]
    summary = run.summary or {}
    reasons = summary.get("skipped") if isinstance(summary.get("skipped"), dict) else {}
    skipped = []
    for name in planned:
        if name in stored:
            continue
        kind = arm_kind(name)
        reason = reasons.get(name) or "skipped by the bake-off (not applicable, or no time left in its budget)"
        model = name.split("@", 1)[1] if "@" in name else None
        skipped.append(ArmEvidence(name=name, kind=kind, family=family_of(kind), model=model, status="skipped",
                                   reason=reason))
    return skipped


# -- paired comparisons ---------------------------------------------------------------------------


def paired(metric: Metric, a: ArmEvidence, b: ArmEvidence, *, by: str = "index", seed: int = 0,
           memo: dict[tuple[str, str, str], Comparison | None] | None = None) -> Comparison | None:
    """Arm ``a`` against arm ``b`` on the examples both answered (``by="index"`` within a run,
    ``by="input"`` across runs, matching input hashes). None when they share no example.
    ``memo``: a dict to remember comparisons in (the decision asks for some pairs twice)."""
    if memo is None:
        return _paired(metric, a, b, by, seed)
    key = (a.name, b.name, by)
    if key not in memo:
        memo[key] = _paired(metric, a, b, by, seed)
    return memo[key]


def _paired(metric: Metric, a: ArmEvidence, b: ArmEvidence, by: str, seed: int) -> Comparison | None:
    if a.stats is None or b.stats is None:
        return None
    keys_a = a.indexes if by == "index" else a.input_hashes
    keys_b = b.indexes if by == "index" else b.input_hashes
    position_b = {key: i for i, key in enumerate(keys_b)}
    rows = [(i, position_b[key]) for i, key in enumerate(keys_a) if key in position_b]
    if not rows:
        return None
    take_a = np.array([i for i, _ in rows])
    take_b = np.array([j for _, j in rows])
    stats_a, stats_b = a.stats[take_a], b.stats[take_b]
    if stats_a.shape[1] != stats_b.shape[1]:
        return None  # a ratio metric over different label sets: not comparable row by row
    return paired_comparison_from_stats(metric, stats_a, stats_b, seed=seed, arm_a=a.name, arm_b=b.name)


def _latest_check(store: Store, run: RunDetail) -> tuple[RunDetail | None, dict[str, Any] | None]:
    """The newest finished check of this task, preferring one of the same data."""
    checks = [s for s in store.list_runs(task_name=run.task_name, limit=200)
              if s.kind == "check" and s.status == "finished"]
    if not checks:
        return None, None
    details = [store.get_run(s.id) for s in checks[:20]]
    same_data = [d for d in details if d.data_hashes == run.data_hashes]
    chosen = (same_data or details)[0]
    report = next((a.content for a in chosen.artifacts if a.kind == "check_report" and isinstance(a.content, dict)),
                  None)
    return chosen, report
