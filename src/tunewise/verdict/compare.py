"""What changed between two bake-offs of the same task (a new base model, more data, another
prompt): the differences in what rebuilds each run, and per arm the change in quality with a
paired test, plus cost and latency.

Arms pair by name; arms left over pair by kind when each run has exactly one of that kind
(``zero_shot@smollm2-135m-instruct`` then ``zero_shot@gemma3-270m``: a new base model). Examples
pair by the hash of their input, so a run on more data still compares on the examples both
runs answered; with none in common the difference is tested unpaired, and says so. Paired
p-values are Holm-corrected across the arm pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.special import ndtr

from tunewise.scoring.stats import Comparison, holm
from tunewise.store import RunDetail, Store
from tunewise.verdict import words
from tunewise.verdict.evidence import ArmEvidence, RunEvidence, VerdictError, load_evidence, paired

ALPHA = 0.05
Z95 = 1.959964


@dataclass
class ArmChange:
    """One arm in run A against its counterpart in run B (delta = B - A)."""

    kind: str
    arm_a: str
    arm_b: str
    value_a: float
    value_b: float
    delta: float
    low: float
    high: float
    p_value: float
    p_holm: float
    significant: bool
    test: str
    paired: bool
    n_shared: int
    n_a: int
    n_b: int
    cost_per_1k_a: float | None = None
    cost_per_1k_b: float | None = None
    latency_p95_a: float | None = None
    latency_p95_b: float | None = None


@dataclass
class RunComparison:
    """Run B against run A of one task."""

    task: str
    metric: str
    run_a: int
    run_b: int
    changes: list[str]  # what differs in what rebuilds the runs, in words
    arms: list[ArmChange]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "run_a": self.run_a, "run_b": self.run_b,
                "changes": list(self.changes), "arms": [_finite(asdict(arm)) for arm in self.arms],
                "only_in_a": list(self.only_in_a), "only_in_b": list(self.only_in_b), "summary": self.summary()}

    def summary(self) -> str:
        """One line per significant change, or that nothing changed beyond noise."""
        moved = [arm for arm in self.arms if arm.significant]
        if not self.arms:
            return "The two runs have no arm in common to compare."
        if not moved:
            return (f"No arm changed significantly between run {self.run_a} and run {self.run_b} "
                    f"({len(self.arms)} compared, Holm-corrected).")
        parts = [f"{arm.arm_b}: {words.points(arm.delta, self.metric)} "
                 f"({words.points_range(arm.low, arm.high, self.metric)}, {words.p_value(arm.p_holm)})"
                 for arm in moved]
        return f"Significant changes from run {self.run_a} to run {self.run_b}: " + "; ".join(parts) + "."


def compare_runs(store: Store, run_a: int, run_b: int) -> RunComparison:
    """Run ``run_b`` against ``run_a``: both bake-offs of the same task, scored by the same metric."""
    if run_a == run_b:
        raise VerdictError(f"both runs are run {run_a}", where="compare", fix="give two different bake-off runs")
    detail_a, detail_b = store.get_run(run_a), store.get_run(run_b)  # an unknown id is a StoreError
    for detail in (detail_a, detail_b):
        if detail.kind != "bakeoff":
            raise VerdictError(f"run {detail.id} is a {detail.kind} run, not a bake-off", where=f"run {detail.id}",
                               fix=f"see `tunewise runs list --task {detail.task_name}` for its bake-offs")
    if detail_a.task_name != detail_b.task_name:
        raise VerdictError(
            f"run {run_a} is of task {detail_a.task_name!r} and run {run_b} of task {detail_b.task_name!r}",
            where="compare", fix="compare two bake-offs of one task; `tunewise runs list --task NAME` lists them")
    a = load_evidence(store, run_a, reload_data=False)
    b = load_evidence(store, run_b, reload_data=False)
    if a.metric.name != b.metric.name:
        raise VerdictError(f"run {run_a} is scored by {a.metric.name} and run {run_b} by {b.metric.name}",
                           where="compare", fix="compare runs scored by the same metric (the card's `metric`)")
    pairs, only_a, only_b = _pair_arms(a, b)
    raw = [(arm_a, arm_b, paired(b.metric, arm_b, arm_a, by="input")) for arm_a, arm_b in pairs]
    tested = [c for _, _, c in raw if c is not None]
    adjusted = iter(holm(tested))
    changes = []
    for arm_a, arm_b, comparison in raw:
        if comparison is not None:
            changes.append(_paired_change(arm_a, arm_b, next(adjusted)))
        else:
            changes.append(_unpaired_change(arm_a, arm_b))
    return RunComparison(task=detail_a.task_name, metric=a.metric.name, run_a=run_a, run_b=run_b,
                         changes=what_changed(detail_a, detail_b, a, b), arms=changes, only_in_a=only_a,
                         only_in_b=only_b)


def _pair_arms(a: RunEvidence, b: RunEvidence) -> tuple[list[tuple[ArmEvidence, ArmEvidence]], list[str], list[str]]:
    left = [arm for arm in a.arms if arm.scored]
    right = [arm for arm in b.arms if arm.scored]
    by_name = {arm.name: arm for arm in right}
    pairs = [(arm, by_name[arm.name]) for arm in left if arm.name in by_name]
    taken_a = {x.name for x, _ in pairs}
    taken_b = {y.name for _, y in pairs}
    rest_a = [arm for arm in left if arm.name not in taken_a]
    rest_b = [arm for arm in right if arm.name not in taken_b]
    for arm in list(rest_a):
        same_a = [x for x in rest_a if x.kind == arm.kind]
        same_b = [y for y in rest_b if y.kind == arm.kind]
        if len(same_a) == 1 and len(same_b) == 1:
            pairs.append((arm, same_b[0]))
            rest_a.remove(arm)
            rest_b.remove(same_b[0])
    return pairs, [arm.name for arm in rest_a], [arm.name for arm in rest_b]


def _common(arm_a: ArmEvidence, arm_b: ArmEvidence) -> dict[str, Any]:
    def per_1k(arm: ArmEvidence) -> float | None:
        return None if arm.stored_cost_per_request_usd is None else arm.stored_cost_per_request_usd * 1000

    return {"kind": arm_b.kind, "arm_a": arm_a.name, "arm_b": arm_b.name, "value_a": arm_a.value,
            "value_b": arm_b.value, "n_a": arm_a.n, "n_b": arm_b.n, "cost_per_1k_a": per_1k(arm_a),
            "cost_per_1k_b": per_1k(arm_b), "latency_p95_a": arm_a.latency_percentile(95),
            "latency_p95_b": arm_b.latency_percentile(95)}


def _paired_change(arm_a: ArmEvidence, arm_b: ArmEvidence, c: Comparison) -> ArmChange:
    p_holm = c.p_value_adjusted if c.p_value_adjusted is not None else c.p_value
    # The paired difference is on the shared examples; the arm values are each run's own.
    return ArmChange(**_common(arm_a, arm_b), delta=c.difference, low=c.ci_low, high=c.ci_high, p_value=c.p_value,
                     p_holm=p_holm, significant=bool(p_holm < ALPHA), test=c.test, paired=True, n_shared=c.n)


def _unpaired_change(arm_a: ArmEvidence, arm_b: ArmEvidence) -> ArmChange:
    """No example in common: the two estimates are independent, so their difference has the
    variance of both (each read off its 95% interval) and a normal two-sided p-value."""
    assert arm_a.estimate is not None and arm_b.estimate is not None
    se = math.hypot((arm_a.estimate.high - arm_a.estimate.low) / (2 * Z95),
                    (arm_b.estimate.high - arm_b.estimate.low) / (2 * Z95))
    delta = arm_b.value - arm_a.value
    p = 1.0 if se == 0 else float(2 * ndtr(-abs(delta) / se))
    return ArmChange(**_common(arm_a, arm_b), delta=delta, low=delta - Z95 * se, high=delta + Z95 * se,
                     p_value=p, p_holm=p, significant=bool(p < ALPHA),
                     test="unpaired (normal, no examples in common)", paired=False, n_shared=0)


def what_changed(run_a: RunDetail, run_b: RunDetail, a: RunEvidence, b: RunEvidence) -> list[str]:
    """The differences in what rebuilds the two runs, in words."""
    found: list[str] = []
    card_a, card_b = run_a.card or {}, run_b.card or {}
    fields = [key for key in sorted(set(card_a) | set(card_b)) if card_a.get(key) != card_b.get(key)]
    if fields:
        found.append(f"task card: {', '.join(fields)} changed")
    roles = sorted(set(run_a.data_hashes) | set(run_b.data_hashes))
    data = [role for role in roles if run_a.data_hashes.get(role) != run_b.data_hashes.get(role)]
    if data:
        found.append(f"data: {', '.join(data)} file{'s' if len(data) > 1 else ''} changed (different sha256)")
    models_a = sorted({arm.model for arm in a.arms if arm.model})
    models_b = sorted({arm.model for arm in b.arms if arm.model})
    if models_a != models_b:
        found.append(f"models: {', '.join(models_a) or 'none'} -> {', '.join(models_b) or 'none'}")
    if a.n_examples != b.n_examples:
        found.append(f"test examples: {a.n_examples:,} -> {b.n_examples:,}")
    for key in ("limit", "seed"):
        if run_a.config.get(key) != run_b.config.get(key):
            found.append(f"{key}: {run_a.config.get(key)} -> {run_b.config.get(key)}")
    packages_a = (run_a.package_versions or {}).get("packages") or {}
    packages_b = (run_b.package_versions or {}).get("packages") or {}
    moved = [f"{name} {packages_a.get(name, '-')} -> {packages_b.get(name, '-')}"
             for name in sorted(set(packages_a) | set(packages_b)) if packages_a.get(name) != packages_b.get(name)]
    if moved:
        found.append("packages: " + ", ".join(moved))
    return found or ["nothing that rebuilds the runs differs (same card, data, models and packages)"]


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def comparison_table(comparison: RunComparison):
    """A rich Table of the arm changes (the CLI prints it; the library never prints)."""
    from rich.table import Table

    metric = comparison.metric
    table = Table(title=f"{comparison.task}: run {comparison.run_b} against run {comparison.run_a} ({metric})")
    for column in ("arm (A -> B)", f"{metric} A", f"{metric} B", "change [95% CI]", "p (Holm)", "n shared",
                   "$ / 1k A -> B", "p95 ms A -> B"):
        table.add_column(column, justify="left" if column.startswith("arm") else "right")
    for arm in comparison.arms:
        name = arm.arm_a if arm.arm_a == arm.arm_b else f"{arm.arm_a} -> {arm.arm_b}"
        change = f"{words.points(arm.delta, metric)} [{words.points_range(arm.low, arm.high, metric)}]"
        style = ("green" if arm.delta > 0 else "red") if arm.significant else None
        table.add_row(name, words.share(arm.value_a, metric), words.share(arm.value_b, metric), change,
                      f"{arm.p_holm:.3g}" + ("" if arm.paired else " (unpaired)"),
                      f"{arm.n_shared:,}", _pair(arm.cost_per_1k_a, arm.cost_per_1k_b, "{:.4f}"),
                      _pair(arm.latency_p95_a, arm.latency_p95_b, "{:,.0f}"), style=style)
    return table


def _pair(a: float | None, b: float | None, pattern: str) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else pattern.format(value)

    return f"{show(a)} -> {show(b)}"
