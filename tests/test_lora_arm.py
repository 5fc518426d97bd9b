"""The lora arm: when it applies, what it forecasts, and preparing it for real on the tiny Llama
(classify and extract, directly and through the bake-off); one slow test fine-tunes SmolLM2 on
a CLINC150 subset and compares it with zero-shot."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_models import INSTRUCTION, LABELS
from tiny_training import MAPPING, load_tiny, one_torch_thread

from tunewise.arms import lora as lora_module
from tunewise.arms.base import ArmContext, Budget
from tunewise.arms.lora import Lora, Shape, forecast_training_s, largest_fitting
from tunewise.bakeoff import BakeoffOptions, plan_arms, run_bakeoff
from tunewise.errors import TunewiseError
from tunewise.models.local import LocalBackend
from tunewise.store import open_store
from tunewise.task import load_card
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Dataset, Example
from tunewise.train import LoraSettings

# Learns the tiny mapping in a few seconds (defaults are tuned for real models and data).
TINY = {"rank": 4, "learning_rate": 0.02, "epochs": 6, "batch_size": 4, "threads": 1}


@pytest.fixture(autouse=True)
def _one_thread(request):
    if "slow" in request.keywords:
        yield
        return
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def llama(tiny_llama) -> LocalBackend:
    return load_tiny(tiny_llama)


def examples(rows: Sequence[tuple[str, str]]) -> list[Example]:
    return [Example(input=i, output=o, source="t.jsonl", line=n) for n, (i, o) in enumerate(rows, 1)]


def tiny_rows(copies: int) -> list[tuple[str, str]]:
    return [(f"{text} {i}", label) for i in range(copies) for text, label in MAPPING]


def dataset(kind: str = "classify", train=None, validation=None, test=None, labels=LABELS) -> Dataset:
    fields = {"labels": labels} if kind == "classify" and labels else {}
    card = TaskCard.model_validate({"name": "tiny-intents", "kind": kind, "instruction": INSTRUCTION,
                                    "data": {"file": "t.jsonl"}, **fields})
    train = tiny_rows(6) if train is None else train
    splits = {"train": examples(train), "validation": examples(validation or []),
              "test": examples(test or tiny_rows(1))}
    return Dataset(card, splits, list(labels) if kind == "classify" and labels else None, {"file": "0" * 64})


def context(data: Dataset, backend: LocalBackend, **options) -> ArmContext:
    return ArmContext(dataset=data, backend=lambda spec: backend, embedder=lambda: None, **options)


# -- planning ------------------------------------------------------------------------------------


def test_applies_to_local_models_with_enough_examples():
    assert Lora(model="smollm2-135m-instruct").applies(dataset()) is None
    assert "served by an API" in Lora(model="openai:gpt-4o-mini").applies(dataset())
    assert "at least 8 training examples" in Lora(model="m").applies(dataset(train=tiny_rows(1)))
    assert "label set" in Lora(model="m").applies(dataset(labels=None))
    assert Lora(model="m").applies(dataset(kind="extract", train=[(t, '{"a": 1}') for t, _ in tiny_rows(2)])) is None


def test_the_plan_has_a_lora_arm_per_model_after_the_prompting_arms():
    card = dataset().card
    names = [arm.name for arm in plan_arms(card, ["zero_shot", "lora"], ["m1", "m2"])]
    assert names == ["zero_shot@m1", "zero_shot@m2", "lora@m1", "lora@m2"]
    from tunewise.bakeoff.plan import PlanOptions

    [arm] = plan_arms(card, ["lora"], ["m"], options=PlanOptions(extra={"lora": {"settings": {"rank": 4}}}))
    assert arm.params()["settings"] == {"rank": 4}


def test_bad_settings_fail_at_planning_with_the_field_and_value():
    with pytest.raises(TunewiseError, match=r"lora\.settings\.rank.*got 0"):
        Lora(model="m", settings={"rank": 0})
    with pytest.raises(TunewiseError, match=r"lora\.settings\.epoch"):
        Lora(model="m", settings={"epoch": 3})
    with pytest.raises(TunewiseError, match="max_train_examples"):
        Lora(model="m", max_train_examples=2)


def test_the_forecast_grows_with_examples_and_uses_the_measured_speed(llama, monkeypatch):
    arm = Lora(model="smollm2-135m-instruct")
    small, large = dataset(train=tiny_rows(2)), dataset(train=tiny_rows(40))
    assert 0 < arm.estimated_seconds(small, 10) < arm.estimated_seconds(large, 10) < arm.estimated_seconds(large, 100)
    slower = arm.estimated_seconds(large, 10)
    monkeypatch.setattr(lora_module, "_speed", lambda model, backend=None: 1.0)
    assert arm.estimated_seconds(large, 10) > 10 * slower


def test_largest_fitting_sample_is_the_biggest_within_the_budget():
    shape = Shape(prefix=100, own=20, answer_work=30)
    settings = LoraSettings()
    assert largest_fitting(500, shape, settings, 1e9, budget_s=1.0) == 500  # everything fits
    n = largest_fitting(5000, shape, settings, 500.0, budget_s=200.0)
    assert 64 < n < 5000 and forecast_training_s(n, shape, settings, 500.0) <= 200.0
    assert forecast_training_s(n + 1, shape, settings, 500.0) > 200.0
    assert largest_fitting(5000, shape, settings, 1.0, budget_s=1.0) == 64  # the floor: cut by the budget instead


# -- preparing for real ----------------------------------------------------------------------


def test_prepare_trains_then_answers_like_zero_shot_with_the_adapter(llama):
    arm = Lora(model="tiny", settings=TINY)
    data = dataset(validation=tiny_rows(1), test=tiny_rows(2))
    candidate = arm.prepare(context(data, llama))
    predictions = candidate.predict(data.test)
    assert [p.output for p in predictions] == [e.output for e in data.test]
    assert all(0 < p.extra["confidence"] <= 1 for p in predictions)  # the same answer path as zero-shot
    config = candidate.config
    assert config["arm"] == "lora" and config["answer"] == "option_scores" and not config["reused_adapter"]
    assert config["train_examples"] == 42 and config["validation_examples"] == 7
    assert config["validation_held_out_of_train"] == 0 and config["stopped"] in ("converged", "early_stop")
    usage = candidate.prepare_usage
    assert usage.latency_s > 0 and usage.cost_usd == pytest.approx(usage.latency_s * llama.price_per_hour / 3600)
    assert candidate.model_id.startswith("local:") and "+lora-" in candidate.model_id
    assert "limited_by_budget" not in arm.params()
    again = Lora(model="tiny", settings=TINY).prepare(context(data, llama))
    assert again.config["reused_adapter"] and again.config["adapter"] == config["adapter"]
    assert again.prepare_usage.latency_s == pytest.approx(usage.latency_s)  # what the adapter cost to train


def test_without_a_validation_split_a_seeded_tenth_of_train_is_held_out(llama):
    candidate = Lora(model="tiny", settings={**TINY, "epochs": 1}).prepare(context(dataset(), llama))
    assert candidate.config["validation_held_out_of_train"] == 4
    assert candidate.config["train_examples"] == 38 and candidate.config["validation_examples"] == 4


def test_a_tight_budget_trains_on_a_seeded_sample_and_says_so(llama, monkeypatch):
    monkeypatch.setattr(lora_module, "_speed", lambda model, backend=None: 20.0)  # forecast: far too slow
    arm = Lora(model="tiny", settings={**TINY, "epochs": 1})
    data = dataset(train=tiny_rows(12))  # 84 examples, 8 held out for validation
    candidate = arm.prepare(context(data, llama, budget=Budget(seconds=120.0)))
    assert candidate.config["train_examples"] == 64 and candidate.config["train_examples_available"] == 76
    assert arm.params()["limited_by_budget"]["train_examples"] == 64  # never served from cache as a full run


def test_extraction_learns_to_write_the_json(llama):
    rows = [(f"{text} {i}", json.dumps({"intent": label}, separators=(",", ":")))
            for i in range(6) for text, label in MAPPING]
    data = dataset(kind="extract", train=rows, validation=rows[:7], test=rows[:7])
    candidate = Lora(model="tiny", settings={**TINY, "epochs": 10}).prepare(context(data, llama))
    predictions = candidate.predict(data.test)
    assert [p.output for p in predictions] == [e.output for e in data.test]
    assert all(p.valid for p in predictions)


def write_card(folder: Path) -> Path:
    rows = [{"input": text, "output": label} for text, label in tiny_rows(6)]
    random.Random(0).shuffle(rows)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:14]))
    card = folder / "task.yaml"
    card.write_text(f"name: tiny-intents\nkind: classify\ninstruction: {json.dumps(INSTRUCTION)}\n"
                    f"data: {{train: train.jsonl, test: test.jsonl}}\nlabels: {json.dumps(LABELS)}\n")
    return card


def test_the_bakeoff_trains_records_the_adapter_and_reruns_from_the_cache(llama, tmp_path):
    card = load_card(write_card(tmp_path))
    arm = Lora(model="tiny", settings=TINY)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(card, [arm], store=store, load_backend=lambda spec: llama, load_embedder=lambda: None)
        [scored] = result.arms
        assert scored.status == "finished" and scored.n == 14 and scored.estimate.value == 1.0
        assert scored.prepare_s > 0
        artifacts = store.get_run(result.run_id).artifacts
        [adapter] = [a for a in artifacts if a.kind == "lora_adapter"]
        assert adapter.name.startswith("lora@tiny/") and Path(adapter.path).is_dir()
        rerun = run_bakeoff(card, [Lora(model="tiny", settings=TINY)], store=store, load_backend=lambda spec: llama,
                            load_embedder=lambda: None, options=BakeoffOptions(use_cache=True))
        assert rerun.arms[0].estimate.value == 1.0 and rerun.arms[0].cached_share == 1.0


def test_a_budget_too_small_for_training_skips_the_arm_with_the_reason(llama, tmp_path, monkeypatch):
    monkeypatch.setattr(lora_module, "_speed", lambda model, backend=None: 1.0)
    card = load_card(write_card(tmp_path))
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(card, [Lora(model="tiny", settings=TINY)], store=store, load_backend=lambda spec: llama,
                             load_embedder=lambda: None, options=BakeoffOptions(budget_s=60))
    assert result.arms[0].status == "skipped" and "needs about" in result.arms[0].reason


# -- the real thing (slow) -----------------------------------------------------------------------

TEN_INTENTS = ["weather", "translate", "book_flight", "timer", "pay_bill", "alarm", "calories", "recipe",
               "exchange_rate", "flip_coin"]


@pytest.mark.slow
def test_smollm2_lora_beats_zero_shot_on_ten_clinc150_intents(shared_datasets, tmp_path):
    from tunewise.arms.zero_shot import ZeroShot

    def rows(split: str, per_intent: int) -> list[dict]:
        found = [json.loads(line) for line in (shared_datasets / "clinc150" / f"{split}.jsonl").open()]
        return [r for intent in TEN_INTENTS for r in [x for x in found if x["output"] == intent][:per_intent]]

    for split, per_intent in (("train", 20), ("validation", 5), ("test", 8)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(split, per_intent)))
    card_path = tmp_path / "task.yaml"
    card_path.write_text("name: clinc10\nkind: classify\ninstruction: Classify the intent of the user's message.\n"
                         "data: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}\n"
                         f"labels: {json.dumps(TEN_INTENTS)}\n")
    card = load_card(card_path)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(card, [ZeroShot(model="smollm2-135m-instruct"),
                                    Lora(model="smollm2-135m-instruct", settings={"epochs": 3})], store=store)
    zero_shot, lora = result.arms
    print(f"zero-shot {zero_shot.estimate}, lora {lora.estimate}, training {lora.prepare_s:.0f} s")
    assert lora.estimate.value > zero_shot.estimate.value and lora.estimate.value >= 0.7
