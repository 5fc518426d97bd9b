"""The verdict on a stored bake-off: the evidence read back, the costs, the decision, and one
JSON-safe document (``Verdict.to_dict()``, schema version 1) that the report renders.

    from tunewise.verdict import build_verdict

    with open_store() as store:
        verdict = build_verdict(store, run_id)        # the card stored with the run
        print(verdict.text())
        document = verdict.to_dict()

The document's shape is the contract with the report (``tunewise.verdict.report.contract``):
keys are always there; optional sections are null or empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunewise.store import Store
from tunewise.task.card import TaskCard
from tunewise.task.findings import ReadinessItem
from tunewise.task.readiness import metric_item, prompting_gap_item, readiness, task_definition_item
from tunewise.verdict.curves import CurveSummary, summarise_curves
from tunewise.verdict.decide import Decision, Recommendation, decide
from tunewise.verdict.evidence import ArmEvidence, RunEvidence, load_evidence
from tunewise.verdict.pricing import cost_input
from tunewise.verdict.tco import ArmCostInput, Economy, TcoAssumptions

SCHEMA_VERSION = 1
MAX_LATENCIES = 2_000  # per arm, for the report's distribution chart
MAX_ERRORS = 5  # wrong answers shown per arm
MAX_INPUT_CHARS = 1_000  # an error example's input is cut here
VERSION_PACKAGES = ("tunewise", "torch", "transformers", "peft", "sentence-transformers", "openai")


@dataclass
class Verdict:
    """What to do about a task, why, at what cost, and what would change the answer."""

    run_id: int
    task: str
    kind: str
    metric: str
    n_examples: int
    created_at: str
    recommendation: Recommendation
    arms: list[dict[str, Any]]
    tco: dict[str, Any] | None
    learning_curve: list[CurveSummary]
    readiness: list[ReadinessItem]
    check: dict[str, Any] | None
    rebuild: dict[str, Any]
    decision: Decision | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, schema version 1 (see the module docstring)."""
        return _json_safe({
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "task": self.task,
            "kind": self.kind,
            "metric": self.metric,
            "n_examples": self.n_examples,
            "created_at": self.created_at,
            "recommendation": self.recommendation.to_dict(),
            "arms": self.arms,
            "tco": self.tco,
            "learning_curve": [curve.to_dict() for curve in self.learning_curve],
            "readiness": [_readiness_dict(item) for item in self.readiness],
            "check": self.check,
            "rebuild": self.rebuild,
        })

    def text(self) -> str:
        """The recommendation in plain words, for a terminal or a commit message."""
        r = self.recommendation
        lines = [r.headline, ""]
        for title, items in (("Why", r.reasons), ("What would change it", r.flips),
                             ("What the evidence cannot separate", r.ties), ("Caveats", r.caveats)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - {item}" for item in items]
        return "\n".join(lines).rstrip() + "\n"


def build_verdict(store: Store, run_id: int, card: TaskCard | None = None, *,
                  assumptions: TcoAssumptions | None = None) -> Verdict:
    """The verdict on bake-off ``run_id``. ``card``: the task card whose traffic, costs and goals
    to decide with (None: the one stored with the run); ``assumptions``: engineering hours per
    arm kind and the other TCO assumptions not in the card (None: the documented defaults)."""
    evidence = load_evidence(store, run_id, card)
    assumptions = assumptions or TcoAssumptions()
    card = evidence.card
    bar = card.goals.quality_bar
    curves = summarise_curves(evidence.learning_curves, evidence.metric.name, bar)
    needs = {c.arm: c.labels_needed for c in curves}
    costs: list[ArmCostInput] = []
    warnings: list[str] = []
    for arm in evidence.scored_arms:
        short_of_bar = bar is not None and arm.value < bar
        cost, arm_warnings = cost_input(arm, card, labels_needed=needs.get(arm.name, 0) if short_of_bar else 0,
                                        training_examples=evidence.training_examples or 0, eval_examples=arm.n)
        costs.append(cost)
        warnings += arm_warnings
    decision = decide(evidence, costs, Economy.from_card(card), assumptions, curves, warnings)
    by_cost = {c.name: c for c in costs}
    return Verdict(
        run_id=evidence.run.id,
        task=evidence.run.task_name,
        kind=card.kind.value,
        metric=evidence.metric.name,
        n_examples=evidence.n_examples,
        created_at=evidence.run.created_at.isoformat(),
        recommendation=decision.recommendation,
        arms=[_arm_dict(evidence, arm, decision, by_cost.get(arm.name)) for arm in evidence.arms],
        tco=decision.tco.to_dict() if costs else None,
        learning_curve=curves,
        readiness=_readiness(evidence, decision),
        check=_check_dict(evidence),
        rebuild=_rebuild(evidence),
        decision=decision,
    )


# -- arms ---------------------------------------------------------------------------------------


def _arm_dict(evidence: RunEvidence, arm: ArmEvidence, decision: Decision, cost: ArmCostInput | None
              ) -> dict[str, Any]:
    judgement = decision.judgements.get(arm.name)
    estimate = arm.estimate
    total = decision.tco.arms[arm.name].total_usd if arm.name in decision.tco.arms else None
    return {
        "name": arm.name,
        "kind": arm.kind,
        "family": arm.family,
        "model": arm.model,
        "status": arm.status,
        "reason": arm.reason,
        "quality": None if estimate is None else {"value": estimate.value, "low": estimate.low,
                                                  "high": estimate.high, "method": estimate.method},
        "n": arm.n,
        "latency_p50_ms": arm.latency_percentile(50),
        "latency_p95_ms": arm.latency_percentile(95),
        "cost_per_1k_usd": _per_1k(cost, arm),
        "cost_basis": None if cost is None else cost.basis,
        "total_usd": total,
        "prepare_s": arm.prepare_s,
        "prepare_cost_usd": arm.prepare_cost_usd,
        "pareto": bool(judgement.pareto) if judgement else False,
        "meets_bar": judgement.meets_bar if judgement else None,
        "meets_latency": judgement.meets_latency if judgement else None,
        "vs_best_prompt": judgement.vs_best_prompt_dict() if judgement else None,
        "latencies_ms": _sampled(arm.latencies_ms, seed=arm.n),
        "errors": _errors(evidence, arm),
    }


def _per_1k(cost: ArmCostInput | None, arm: ArmEvidence) -> float | None:
    """Dollars per 1,000 requests: the TCO's price when the arm is costed, else as stored."""
    if cost is not None:
        return cost.cost_per_request_usd * 1000
    return None if arm.stored_cost_per_request_usd is None else arm.stored_cost_per_request_usd * 1000


def _sampled(latencies: np.ndarray, seed: int) -> list[float]:
    if latencies.size <= MAX_LATENCIES:
        return [float(v) for v in latencies]
    chosen = np.sort(np.random.default_rng(seed).choice(latencies.size, MAX_LATENCIES, replace=False))
    return [float(v) for v in latencies[chosen]]


def _errors(evidence: RunEvidence, arm: ArmEvidence) -> list[dict[str, Any]]:
    """A few wrong answers: the lowest-scoring, earliest examples first (so arms that fail the same
    examples show them side by side)."""
    if arm.scores is None:
        return []
    wrong = sorted((float(score), position) for position, score in enumerate(arm.scores) if score < 1.0)
    examples = []
    for _, position in wrong[:MAX_ERRORS]:
        index = arm.indexes[position]
        text = (evidence.inputs or {}).get(index)
        if text is None:
            text = f"(input not available: sha256 {arm.input_hashes[position][:12]})"
        elif len(text) > MAX_INPUT_CHARS:
            text = text[:MAX_INPUT_CHARS] + "…"
        examples.append({"input": text, "expected": arm.expected[position], "output": arm.outputs[position],
                         "example_index": index, "score": float(arm.scores[position])})
    return examples


# -- readiness, check, rebuild ---------------------------------------------------------------------


def _readiness(evidence: RunEvidence, decision: Decision) -> list[ReadinessItem]:
    """The checklist of the latest `tunewise check`, its prompting-gap item filled in from this
    bake-off; without a stored check, the items computed from the card (and the data, if it loads)."""
    gap_item = prompting_gap_item(decision.gap)
    if decision.gap is None:  # a bake-off ran, but without a prompting arm that finished
        gap_item = ReadinessItem(gap_item.key, gap_item.title, "unknown",
                                 f"bake-off run {evidence.run.id} has no finished prompting arm to measure",
                                 fix="run `tunewise bakeoff` with --arms zero_shot,few_shot_nearest")
    report = evidence.check_report
    if report is not None and report.get("readiness"):
        items = [ReadinessItem(key=i["key"], title=i.get("title", i["key"]), status=i.get("status", "unknown"),
                               evidence=i.get("evidence", ""), fix=i.get("fix"))
                 for i in report["readiness"] if i.get("key") != "prompting_gap"]
        return [*items, gap_item]
    if evidence.dataset is not None:
        items = readiness(evidence.card, evidence.dataset, (), decision.gap)
        return [item for item in items if item.key != "prompting_gap"] + [gap_item]
    unknown = ReadinessItem("training_examples", "At least 1,000 high-quality training examples", "unknown",
                            "no `tunewise check` of this task is stored and its data could not be reloaded",
                            fix="run `tunewise check` on the task card")
    return [unknown, task_definition_item(evidence.card), metric_item(evidence.card), gap_item]


def _readiness_dict(item: ReadinessItem) -> dict[str, Any]:
    return {"key": item.key, "label": item.title, "status": item.status, "detail": item.evidence, "fix": item.fix}


def _check_dict(evidence: RunEvidence) -> dict[str, Any] | None:
    if evidence.check is None or evidence.check_report is None:
        return None
    report = {k: v for k, v in evidence.check_report.items() if k not in ("readiness", "row_errors")}
    return {"run_id": evidence.check.id, "created_at": evidence.check.created_at.isoformat(), **report}


def _rebuild(evidence: RunEvidence) -> dict[str, Any]:
    run = evidence.run
    config = dict(run.config)
    names = [n for n in config.get("arms", []) if isinstance(n, str)]
    kinds = list(dict.fromkeys(a.kind for a in evidence.arms if a.name in names or not names))
    models = list(dict.fromkeys(a.model for a in evidence.arms if a.model and a.kind != "cascade"))
    source = evidence.card.source or "task.yaml"
    command = f"tunewise bakeoff {source} --arms {','.join(kinds)}"
    if models:
        command += f" --models {','.join(models)}"
    if config.get("limit") is not None:
        command += f" --limit {config['limit']}"
    if config.get("seed"):
        command += f" --seed {config['seed']}"
    packages = (run.package_versions or {}).get("packages") or {}
    versions = {name: packages[name] for name in VERSION_PACKAGES if name in packages}
    versions["python"] = (run.package_versions or {}).get("python")
    return {"command": command, "card": run.card, "data_hashes": run.data_hashes, "seeds": run.seeds,
            "config": config, "models": run.models, "versions": versions,
            "machine": {k: (run.package_versions or {}).get(k) for k in ("platform", "cpu", "cpu_count")}}


def _json_safe(value: Any) -> Any:
    """Plain JSON types; non-finite floats become null (JSON has no NaN or infinity)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
