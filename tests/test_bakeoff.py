"""The bake-off runner: storing, scoring, caching, resuming and the time budget.

The arm here is a real `Arm` whose answers come from a rule over the input, so each test
knows the exact expected score; the runner cannot tell it from a model-backed arm.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunewise.arms.base import Arm, ArmContext, Candidate, Prediction
from tunewise.bakeoff import (
    BakeoffOptions,
    Observer,
    plan_arms,
    run_bakeoff,
    select_examples,
)
from tunewise.bakeoff.run import FIRST_TIMED_BATCH
from tunewise.models.base import Usage
from tunewise.store import open_store
from tunewise.task import load_card
from tunewise.task.dataset import Example

LABELS = ["billing", "shipping", "refund"]


def write_task(tmp_path: Path, n: int = 60) -> Path:
    rows = [{"input": f"ticket {i} about {LABELS[i % 3]}", "output": LABELS[i % 3]} for i in range(n)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n // 2]))
    card = tmp_path / "task.yaml"
    card.write_text("name: triage\nkind: classify\ninstruction: route it\n"
                    f"data: {{train: train.jsonl, test: test.jsonl}}\nlabels: {LABELS}\n")
    return card


class RuleCandidate(Candidate):
    def __init__(self, arm: RuleArm):
        self.arm = arm
        self.config = {"wrong_every": arm.wrong_every}
        self.model_id = "rule:v1"

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        out = []
        for example in batch:
            self.arm.calls += 1
            if self.arm.explode_after is not None and self.arm.calls > self.arm.explode_after:
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
            number = int(example.input.split()[1])
            label = example.output if number % self.arm.wrong_every else "refund"
            out.append(Prediction(output=label, usage=Usage(10, 1, 0.002, 0.00001)))
        return out

    def batch_size(self) -> int:
        return 4


@dataclass
class RuleArm(Arm):
    name: str = "rule"
    wrong_every: int = 5  # example numbers divisible by this get "refund"
    calls: int = 0
    prepared: int = 0
    explode_after: int | None = None

    def params(self):
        return {"wrong_every": self.wrong_every}

    def prepare(self, context: ArmContext) -> Candidate:
        self.prepared += 1
        return RuleCandidate(self)


class NotForClassify(Arm):
    name = "generate_only"

    def applies(self, dataset):
        return "only for generate tasks"

    def prepare(self, context):  # pragma: no cover - never prepared
        raise AssertionError("a skipped arm must not be prepared")


def expected_accuracy(card_path: Path, wrong_every: int) -> float:
    from tunewise.task import load_task

    test = load_task(load_card(card_path)).test
    right = sum(1 for ex in test if int(ex.input.split()[1]) % wrong_every or ex.output == "refund")
    return right / len(test)


def no_models(spec):  # the rule arm needs none
    raise AssertionError(f"no backend should be loaded, asked for {spec}")


def run(card_path, arms, store, **options):
    return run_bakeoff(load_card(card_path), arms, store=store, options=BakeoffOptions(**options),
                       load_backend=no_models, load_embedder=lambda: None)


def test_scores_stores_and_skips(tmp_path: Path):
    card = write_task(tmp_path)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run(card, [RuleArm(), NotForClassify()], store)
        rule, skipped = result.arms
        assert rule.status == "finished" and rule.n == 30
        assert rule.estimate.value == pytest.approx(expected_accuracy(card, 5))
        assert rule.estimate.low <= rule.estimate.value <= rule.estimate.high
        assert rule.cost_per_1k_usd == pytest.approx(0.01)
        assert rule.latency_p50_ms == pytest.approx(2.0)
        assert "macro_f1" in rule.secondary
        assert (skipped.status, skipped.reason) == ("skipped", "only for generate tasks")

        detail = store.get_run(result.run_id)
        assert detail.status == "finished" and detail.kind == "bakeoff"
        [arm] = [a for a in detail.arms if a.name == "rule"]
        rows = store.predictions(arm.id)
        assert len(rows) == 30 and all(r.expected in LABELS for r in rows)
        assert {r.score for r in rows} <= {0.0, 1.0}


def test_identical_calls_come_from_the_cache(tmp_path: Path):
    card = write_task(tmp_path)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        first_arm = RuleArm()
        first = run(card, [first_arm], store)
        again_arm = RuleArm()
        again = run(card, [again_arm], store)
        assert again_arm.calls == 0 and again_arm.prepared == 0  # nothing recomputed, nothing loaded
        assert again.arms[0].cached_share == 1.0
        assert again.arms[0].estimate.value == first.arms[0].estimate.value
        assert again.arms[0].latency_p50_ms == first.arms[0].latency_p50_ms  # the measured latency is kept
        assert again.run_id != first.run_id

        fresh_arm = RuleArm()
        run(card, [fresh_arm], store, use_cache=False)
        assert fresh_arm.calls == 30

        changed = RuleArm(wrong_every=7)  # different settings: a different key
        result = run(card, [changed], store)
        assert changed.calls == 30
        assert result.arms[0].estimate.value == pytest.approx(expected_accuracy(card, 7))


def test_a_killed_run_resumes_where_it_stopped(tmp_path: Path):
    card = write_task(tmp_path)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        with pytest.raises(KeyboardInterrupt):
            run(card, [RuleArm(explode_after=10)], store, use_cache=False)
        [interrupted] = store.list_runs()
        assert interrupted.status == "interrupted"

        arm = RuleArm()
        result = run(card, [arm], store, use_cache=False)
        assert result.resumed and result.run_id == interrupted.id
        assert arm.calls == 30 - 8  # two full batches of 4 were stored before the interrupt
        assert result.arms[0].n == 30
        assert result.arms[0].estimate.value == pytest.approx(expected_accuracy(card, 5))
        assert store.get_run(result.run_id).status == "finished"


def test_limit_takes_a_seeded_sample():
    test = [Example(input=f"x{i}", output="a", source="t", line=i + 1) for i in range(100)]
    picked = select_examples(test, 10, seed=3)
    assert len(picked) == 10 and picked == sorted(picked, key=lambda p: p[0])
    assert picked == select_examples(test, 10, seed=3)
    assert picked != select_examples(test, 10, seed=4)
    assert len(select_examples(test, None, 0)) == 100


def test_a_spent_budget_skips_the_remaining_arms(tmp_path: Path):
    card = write_task(tmp_path)

    class SlowCandidate(RuleCandidate):
        def predict(self, batch):
            import time

            time.sleep(0.15)
            return super().predict(batch)

    class Slow(RuleArm):
        def prepare(self, context):
            return SlowCandidate(self)

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run(card, [Slow(name="slow"), RuleArm(name="later")], store, budget_s=0.2)
    slow, later = result.arms
    # The deadline is checked before each batch of 4: at least one batch is answered, not all 30.
    assert slow.status == "partial" and "budget ran out" in slow.reason and 4 <= slow.n < 30
    assert later.status == "skipped" and "budget" in later.reason


def test_under_a_budget_batches_shrink_to_the_time_left(tmp_path: Path):
    """A large batch of slow examples would overrun the budget: the first batch measures the
    rate, the next ones fit the time left. Without a budget the arm's own batch size holds."""
    card = write_task(tmp_path)
    sizes: list[int] = []

    class BigBatches(RuleCandidate):
        def predict(self, batch):
            import time

            sizes.append(len(batch))
            time.sleep(0.05 * len(batch))
            return super().predict(batch)

        def batch_size(self) -> int:
            return 64

    class Slow(RuleArm):
        def prepare(self, context):
            return BigBatches(self)

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        [slow] = run(card, [Slow(name="slow")], store, budget_s=1.2, use_cache=False).arms
        assert sizes[0] == FIRST_TIMED_BATCH and len(sizes) > 1 and all(size < 30 for size in sizes)
        assert slow.status == "partial" and slow.n == sum(sizes) < 30
        sizes.clear()
        [again] = run(card, [Slow(name="unbudgeted")], store, use_cache=False).arms
    assert sizes == [30] and again.n == 30


def test_an_arm_that_spends_the_budget_preparing_is_skipped_not_scored_on_nothing(tmp_path: Path):
    card = write_task(tmp_path)

    class SlowToPrepare(RuleArm):
        def prepare(self, context):
            import time

            time.sleep(0.3)
            return super().prepare(context)

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run(card, [SlowToPrepare(name="slow")], store, budget_s=0.2)
        [slow] = result.arms
        assert slow.status == "skipped" and "nothing was answered" in slow.reason and slow.estimate is None
        assert store.get_run(result.run_id).status == "finished"


def test_an_arm_forecast_to_overrun_the_budget_is_skipped_with_its_forecast(tmp_path: Path):
    card = write_task(tmp_path)

    class Heavy(RuleArm):
        def estimated_seconds(self, dataset, n_examples):
            return 600.0 + n_examples  # e.g. a fine-tune

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run(card, [Heavy(name="heavy"), RuleArm(name="cheap")], store, budget_s=120)
    heavy, cheap = result.arms
    assert heavy.status == "skipped" and "needs about 10.5 min" in heavy.reason and "raise --budget" in heavy.reason
    assert cheap.status == "finished" and cheap.n == 30


def test_observer_hears_progress(tmp_path: Path):
    card = write_task(tmp_path)
    seen = []

    class Recorder(Observer):
        def arm_progress(self, name, done):
            seen.append((name, done))

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        run_bakeoff(load_card(card), [RuleArm()], store=store, observer=Recorder(), load_backend=no_models,
                    load_embedder=lambda: None)
    assert seen[-1] == ("rule", 30) and [d for _, d in seen] == sorted(d for _, d in seen)


def test_plan_orders_cheap_arms_first_and_rejects_unknown_ones(tmp_path: Path):
    card = load_card(write_task(tmp_path))
    names = [arm.name for arm in plan_arms(card, models=["m1", "m2"])]
    assert names[0] == "embed_classifier"
    assert names[1:3] == ["zero_shot@m1", "zero_shot@m2"]
    from tunewise.errors import TunewiseError

    with pytest.raises(TunewiseError, match="unknown arm 'fine_tune'"):
        plan_arms(card, ["fine_tune"])


def test_another_embedding_model_is_not_served_from_the_cache(tmp_path: Path):
    card = write_task(tmp_path)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        run(card, [RuleArm()], store, embedder="model-a")
        same, other = RuleArm(), RuleArm()
        run(card, [same], store, embedder="model-a")
        run(card, [other], store, embedder="model-b")
    assert (same.calls, other.calls) == (0, 30)
