"""What a bake-off found, per arm: quality with its 95% interval, latency, tokens and cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from tunewise.arms.base import Candidate
from tunewise.models.base import Usage
from tunewise.scoring import bootstrap_ci, resolve_metric
from tunewise.scoring.stats import Estimate
from tunewise.store import PredictionRow
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset, Example

# A second number per kind that the primary metric hides: macro-F1 shows rare labels ignored,
# JSON validity shows answers that could not be used at all.
SECONDARY_METRIC = {Kind.classify: "macro_f1", Kind.extract: "json_validity", Kind.generate: "exact_match",
                    Kind.qa: "exact_match"}


@dataclass
class ArmResult:
    name: str
    status: str  # finished | partial (stopped by the budget) | skipped
    reason: str | None = None  # why skipped or partial
    model_id: str | None = None
    n: int = 0
    estimate: Estimate | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    tokens_in_mean: float | None = None
    tokens_out_mean: float | None = None
    cost_per_1k_usd: float | None = None
    cached_share: float = 0.0
    prepare_s: float | None = None
    prepare_cost_usd: float | None = None
    wall_s: float | None = None

    @classmethod
    def skipped(cls, name: str, reason: str) -> ArmResult:
        return cls(name=name, status="skipped", reason=reason)

    def to_metrics(self) -> dict[str, Any]:
        """What the store keeps on the arm row."""
        data = asdict(self)
        data.pop("name")
        return data

    @classmethod
    def from_metrics(cls, name: str, metrics: dict[str, Any] | None, status: str = "unknown") -> ArmResult:
        """Back from what ``to_metrics`` stored (``status``: the store's, where nothing was)."""
        known = {f.name for f in fields(cls)} - {"name"}
        data = {key: value for key, value in (metrics or {}).items() if key in known}
        data.setdefault("status", status)
        if isinstance(data.get("estimate"), dict):
            data["estimate"] = Estimate(**data["estimate"])
        return cls(name=name, **data)


@dataclass
class BakeoffResult:
    run_id: int
    task: str
    metric: str
    n_examples: int
    arms: list[ArmResult]
    resumed: bool
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """A short summary for the run row: each arm's score and interval."""
        scores = {}
        for arm in self.arms:
            if arm.estimate is not None:
                scores[arm.name] = f"{arm.estimate.value:.3f} [{arm.estimate.low:.3f}, {arm.estimate.high:.3f}]"
            else:
                scores[arm.name] = arm.status
        return {"metric": self.metric, "examples": self.n_examples, "arms": scores}


def score_arm(
    name: str,
    candidate: Candidate | None,
    rows: list[PredictionRow],
    examples: list[tuple[int, Example]],
    metric,
    dataset: Dataset,
    *,
    stopped: str | None,
    prepare_usage: Usage | None,
    wall_s: float,
    model_id: str | None = None,
) -> ArmResult:
    """Score an arm on the selected examples it has answered."""
    by_index = {row.example_index: row for row in rows}
    answered = [(by_index[i], ex) for i, ex in examples if i in by_index]
    result = ArmResult(name=name, status="partial" if stopped else "finished", reason=stopped,
                       model_id=candidate.model_id if candidate else model_id, n=len(answered), wall_s=wall_s)
    if prepare_usage is not None:
        result.prepare_s, result.prepare_cost_usd = prepare_usage.latency_s, prepare_usage.cost_usd
    if not answered:
        return result
    predictions = [row.output or "" for row, _ in answered]
    references = [ex.answers for _, ex in answered]
    result.estimate = bootstrap_ci(metric, predictions, references)
    secondary = SECONDARY_METRIC[dataset.card.kind]
    if secondary != metric.name:
        other = resolve_metric(secondary, dataset.card.kind, labels=dataset.labels, schema=dataset.card.schema_dict())
        result.secondary[secondary] = float(other.score(predictions, references))
    latency = np.array([row.latency_ms or 0.0 for row, _ in answered])
    result.latency_p50_ms = float(np.percentile(latency, 50))
    result.latency_p95_ms = float(np.percentile(latency, 95))
    result.tokens_in_mean = float(np.mean([row.tokens_in or 0 for row, _ in answered]))
    result.tokens_out_mean = float(np.mean([row.tokens_out or 0 for row, _ in answered]))
    result.cost_per_1k_usd = float(np.mean([row.cost_usd or 0.0 for row, _ in answered]) * 1000)
    result.cached_share = sum(row.cached for row, _ in answered) / len(answered)
    return result
