"""Real stored bake-off runs for verdict, compare and report tests.

``make_run`` writes a small classify task (real JSONL files and a card), then runs the real
bake-off (``run_bakeoff``) with ``FixtureArm``s: arms whose answers are set in advance (which
test examples each one gets right, and what each answer costs and how long it takes). The
store receives exactly what a bake-off with real models would leave there: the run, its arms
with their config and metrics, every prediction, the data hashes and seeds. Nothing is mocked.

    from verdict_fixtures import FixtureArm, make_run

    run_id = make_run(store, tmp_path, [
        FixtureArm("zero_shot@smollm2-135m-instruct", accuracy=0.80, latency_ms=300),
        FixtureArm("lora@smollm2-135m-instruct", accuracy=0.95, latency_ms=300, prepare_s=1800),
        FixtureArm("zero_shot@openai:gpt-4o-mini", accuracy=0.93, tokens_in=400),
    ], quality_bar=0.9)

Arm names follow the bake-off's convention, ``KIND@MODEL`` (``embed_classifier`` has no
model); the part after ``@`` is stored as the arm's model. An ``openai:`` model costs its
tokens at the price table's price (as the OpenAI-compatible backend charges); any other costs
its latency at the card's ``machine_per_hour`` (as a local backend does), unless ``cost_usd``
says otherwise.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.arms.base import Arm, ArmContext, Candidate, Prediction
from tunewise.bakeoff import BakeoffOptions, run_bakeoff
from tunewise.models.base import Usage
from tunewise.models.prices import cost_usd, price_for
from tunewise.store import Store
from tunewise.task import check_task, load_card
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Example

LABELS = ("billing", "refund_request", "shipping_delay", "account_access")
TOPIC = {
    "billing": "I was charged twice on my invoice",
    "refund_request": "please give me my money back for order",
    "shipping_delay": "my parcel has not arrived, tracking says",
    "account_access": "I cannot log in, the two-factor code fails for user",
}


@dataclass(frozen=True)
class FixtureArm(Arm):
    """An arm whose answers are fixed in advance, run by the real bake-off.

    Which test examples it gets wrong: ``wrong`` (test indexes) when given, else a seeded
    draw of ``round((1 - accuracy) * n)`` of them. Arms with the same ``seed`` draw nested
    sets (the worse arm is wrong everywhere the better one is, and more), so paired tests
    see correlated errors, as with real arms on the same data.
    """

    name: str
    accuracy: float = 0.9
    wrong: tuple[int, ...] | None = None
    latency_ms: float = 100.0  # compute time attributed to each request
    warmup_ms: float = 0.0  # one-time warm-up, shared among the first batch's requests (as a real backend's)
    tokens_in: int = 200
    tokens_out: int = 2
    cost_usd: float | None = None  # per request; None: from the model's price (see the module docstring)
    prepare_s: float | None = None  # one-time preparation (training) time
    prepare_cost_usd: float | None = None  # None: prepare_s at the card's machine price
    skip_reason: str | None = None  # the arm does not apply: the bake-off skips it with this reason
    fail_with: str | None = None  # preparing the arm raises RuntimeError(fail_with): the run fails there
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # more config to store with the arm
    model_spec: str | None = None  # the model, when the name does not end in @MODEL (a cascade)

    @property
    def kind(self) -> str:
        return self.name.split("@", 1)[0].split("[", 1)[0]

    @property
    def model(self) -> str:
        if self.model_spec is not None:
            return self.model_spec
        return self.name.split("@", 1)[1] if "@" in self.name and "[" not in self.name else ""

    def applies(self, dataset) -> str | None:
        return self.skip_reason

    def params(self) -> dict[str, Any]:
        # What a real arm records: its model and settings (not the answer key); its kind is in its name.
        return {"model": self.model, **dict(self.extra)}

    def wrong_indexes(self, n: int) -> set[int]:
        if self.wrong is not None:
            return set(self.wrong)
        order = list(range(n))
        random.Random(self.seed).shuffle(order)
        return set(order[: round((1 - self.accuracy) * n)])

    def prepare(self, context: ArmContext) -> Candidate:
        if self.fail_with is not None:
            raise RuntimeError(self.fail_with)
        card = context.dataset.card
        prepare_usage = None
        if self.prepare_s is not None or self.prepare_cost_usd is not None:
            seconds = self.prepare_s or 0.0
            cost = self.prepare_cost_usd if self.prepare_cost_usd is not None else (
                seconds * card.costs.machine_per_hour / 3600)
            prepare_usage = Usage(tokens_in=0, tokens_out=0, latency_s=seconds, cost_usd=cost)
        return _FixtureCandidate(self, card, len(context.dataset.test), prepare_usage)


class _FixtureCandidate(Candidate):
    def __init__(self, arm: FixtureArm, card: TaskCard, n_test: int, prepare_usage: Usage | None):
        self.arm = arm
        self.config = arm.params()
        self.model_id = f"fixture:{arm.model or arm.kind}"
        self.prepare_usage = prepare_usage
        self._wrong = arm.wrong_indexes(n_test)
        self._request_cost = self._cost(card)
        self._warm = False

    def _cost(self, card: TaskCard) -> float:
        if self.arm.cost_usd is not None:
            return self.arm.cost_usd
        if self.arm.model.startswith("openai:"):
            name = self.arm.model.removeprefix("openai:").partition("@")[0]
            return cost_usd(price_for(name, card.costs.prices), self.arm.tokens_in, self.arm.tokens_out)
        return self.arm.latency_ms / 1000 * card.costs.machine_per_hour / 3600

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        answers = []
        warmup = 0.0 if self._warm else self.arm.warmup_ms / len(batch)
        self._warm = True
        latency_s = (self.arm.latency_ms + warmup) / 1000
        for example in batch:
            index = int(example.meta["index"])
            output = example.output
            if index in self._wrong:
                output = LABELS[(LABELS.index(example.output) + 1) % len(LABELS)]
            usage = Usage(self.arm.tokens_in, self.arm.tokens_out, latency_s, self._request_cost)
            answers.append(Prediction(output=output, usage=usage))
        return answers


def write_task(
    folder: Path,
    *,
    n_test: int = 200,
    n_train: int = 1200,
    name: str = "fixture-triage",
    requests_per_month: int = 60_000,
    horizon_months: int = 12,
    quality_bar: float | None = None,
    latency_p95_ms: float | None = None,
    costs: Mapping[str, Any] | None = None,
    data_seed: int = 0,
    metric: str = "accuracy",
    labels_in_card: bool = True,
) -> Path:
    """Write train/test JSONL files and a task card into ``folder``; returns the card's path.

    Data paths in the card are absolute, so the card stored with a run still finds its data.
    The test row at line i carries ``index: i``, which is its index in the test split.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(data_seed)

    def rows(count: int, prefix: str) -> list[dict[str, Any]]:
        out = []
        for i in range(count):
            label = LABELS[rng.randrange(len(LABELS))]
            out.append({"input": f"{prefix} {i}: {TOPIC[label]} #{rng.randrange(10**6)}", "output": label, "index": i})
        return out

    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n_train, "train ticket")))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n_test, "test ticket")))
    card: dict[str, Any] = {
        "name": name,
        "kind": "classify",
        "instruction": "Route the support ticket to one queue.",
        "data": {"train": str((folder / "train.jsonl").resolve()), "test": str((folder / "test.jsonl").resolve())},
        "labels": list(LABELS) if labels_in_card else None,
        "metric": metric,
        "traffic": {"requests_per_month": requests_per_month, "horizon_months": horizon_months},
        "costs": dict(costs or {}),
        "goals": {"quality_bar": quality_bar, "latency_p95_ms": latency_p95_ms},
    }
    path = folder / "task.yaml"
    path.write_text(json.dumps(card, indent=2))  # JSON is YAML
    return path


def make_run(
    store: Store,
    folder: Path,
    arms: Sequence[FixtureArm],
    *,
    check: bool = False,
    learning_curves: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    **task: Any,
) -> int:
    """Run a real bake-off of ``arms`` on a task written into ``folder``; returns the run id.

    ``task`` goes to ``write_task`` (n_test, n_train, quality_bar, latency_p95_ms,
    requests_per_month, horizon_months, costs, name, data_seed, metric, labels_in_card). ``check=True`` first records a
    ``tunewise check`` of the task. ``learning_curves`` stores, per arm name, measured points
    ``[{"n": train size, "value", "low", "high"}, ...]`` as a ``learning_curve`` artifact.
    """
    card = load_card(write_task(folder, **task))
    if check:
        store.record_check(card, check_task(card))
    result = run_bakeoff(card, list(arms), store=store, options=BakeoffOptions(use_cache=False))
    for arm_name, points in (learning_curves or {}).items():
        store.add_artifact(result.run_id, kind="learning_curve", name=f"learning_curve {arm_name}",
                           content={"arm": arm_name, "metric": card.metric_name, "points": [dict(p) for p in points]})
    return result.run_id


def load_fixture_card(folder: Path) -> TaskCard:
    """The card ``make_run`` wrote into ``folder``."""
    return load_card(folder / "task.yaml")
