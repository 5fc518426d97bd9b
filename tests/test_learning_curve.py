"""The learning curve: nested subsets, the curve fit and its words, and the curve run.

The fit is tested on synthetic points drawn from a known curve (so the right answer is
known); the runs train real LoRA adapters on the tiny random Llama (tests/tiny_models.py).
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from tiny_training import TINY_ARM_SETTINGS, load_tiny, run_tiny_bakeoff, write_tiny_task

from tunewise.errors import TunewiseError
from tunewise.scoring import resolve_metric
from tunewise.task.card import Kind
from tunewise.train.curve import (
    CurvePoint,
    curve_sizes,
    describe_curve,
    fit_learning_curve,
    joint_replicates,
    nested_order,
    power_law,
)

TRUE = {"a": 0.92, "b": 2.0, "c": 0.5}  # a learning curve of the usual shape: 0.64 at 50, 0.88 at 2000
SIZES = (50, 100, 250, 500, 1000, 2000)


def true_value(n: float) -> float:
    return float(power_law(n, **TRUE))


def synthetic_points(sizes=SIZES, *, noise: float = 0.0, half_width: float = 0.02, seed: int = 0,
                     curve=true_value) -> list[CurvePoint]:
    rng = np.random.default_rng(seed)
    points = []
    for n in sizes:
        value = curve(n) + (rng.normal(0, noise) if noise else 0.0)
        points.append(CurvePoint(n, value, value - half_width, value + half_width))
    return points


# -- subsets ----------------------------------------------------------------------------------


def test_sizes_are_the_standard_ones_below_the_training_size_then_all():
    assert curve_sizes(15_000) == [50, 100, 250, 500, 1000, 15_000]
    assert curve_sizes(300) == [50, 100, 250, 300]
    assert curve_sizes(250) == [50, 100, 250]  # 250 is "all": measured once
    assert curve_sizes(30) == [30]
    with pytest.raises(TunewiseError, match="needs training examples"):
        curve_sizes(0)


def test_nested_order_is_seeded_and_every_prefix_is_a_subset_of_the_next():
    keys = [f"example {i}" for i in range(500)]
    order = nested_order(keys, seed=3)
    assert sorted(order) == list(range(500))
    assert order == nested_order(keys, seed=3)
    assert order != nested_order(keys, seed=4)
    assert order != list(range(500))  # shuffled, not the file order
    subsets = [set(order[:n]) for n in (50, 100, 250, 500)]
    assert all(small < large for small, large in itertools.pairwise(subsets))


def test_stratified_prefixes_hold_each_label_in_its_share():
    # An imbalanced label set, sorted by label as data files often are.
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 90 + ["d"] * 10
    order = nested_order(range(len(labels)), seed=0, strata=labels)
    assert sorted(order) == list(range(len(labels)))
    share = Counter(labels)
    for n in (10, 50, 100, 250, 500, 1000):
        counts = Counter(labels[i] for i in order[:n])
        for label, total in share.items():
            expected = n * total / len(labels)
            assert abs(counts[label] - expected) <= 1.0 + 1e-9, (n, label, counts[label], expected)
    # Without strata a prefix of 50 misses the rare label's share often; with them it never does.
    assert Counter(labels[i] for i in order[:100])["d"] == 1


def test_nested_order_rejects_strata_of_another_length():
    with pytest.raises(ValueError, match="strata"):
        nested_order(range(5), seed=0, strata=["a", "b"])


# -- the fit ----------------------------------------------------------------------------------


def test_power_law_fit_recovers_a_known_curve_and_its_doubling_gain():
    fit = fit_learning_curve(synthetic_points(), quality_bar=0.9)
    assert fit.form == "power_law"
    assert fit.params["a"] == pytest.approx(TRUE["a"], abs=0.01)
    assert fit.params["c"] == pytest.approx(TRUE["c"], abs=0.05)
    assert fit.predict(4000) == pytest.approx(true_value(4000), abs=0.003)
    true_gain = true_value(4000) - true_value(2000)
    assert fit.doubling_gain.value == pytest.approx(true_gain, abs=0.003)
    assert fit.doubling_gain.low <= true_gain <= fit.doubling_gain.high
    assert fit.doubling_gain.low < fit.doubling_gain.value < fit.doubling_gain.high
    true_n = (TRUE["b"] / (TRUE["a"] - 0.9)) ** (1 / TRUE["c"])  # 10,000 examples
    assert fit.n_for_bar.value == pytest.approx(true_n, rel=0.25)
    assert fit.replicates > 150 and fit.failed_replicates < 20


def test_noisy_points_put_the_true_gain_inside_the_interval():
    true_gain = true_value(4000) - true_value(2000)
    hits = 0
    for seed in range(5):
        fit = fit_learning_curve(synthetic_points(noise=0.01, half_width=0.02, seed=seed), n_replicates=100,
                                 seed=seed)
        hits += fit.doubling_gain.low <= true_gain <= fit.doubling_gain.high
    assert hits >= 4


def test_few_points_fall_back_to_a_log_linear_fit():
    points = synthetic_points(SIZES[:3])
    fit = fit_learning_curve(points)
    assert fit.form == "log_linear"
    slope = (points[2].value - points[0].value) / math.log(points[2].n / points[0].n)
    assert fit.params["slope"] == pytest.approx(slope, rel=0.1)
    assert fit.doubling_gain.value == pytest.approx(fit.params["slope"] * math.log(2))
    assert fit.ceiling is None
    text = describe_curve(points, fit, metric="accuracy")
    assert "log-linear" in text and "Doubling the data to 500 examples" in text


def test_one_point_fits_nothing_and_says_why():
    points = synthetic_points(SIZES[:1])
    fit = fit_learning_curve(points)
    assert fit.form == "none" and fit.doubling_gain is None
    with pytest.raises(ValueError, match="no curve"):
        fit.predict(100)
    assert "Too few points to fit a curve" in describe_curve(points, fit, metric="accuracy")
    assert "no point was measured" in describe_curve([], fit_learning_curve([]), metric="accuracy")


def test_a_still_steep_curve_says_collect_more_data_first():
    points = synthetic_points(SIZES[:4], half_width=0.01)  # 50..500: the steep part
    fit = fit_learning_curve(points, worthwhile_gain=0.02)
    assert fit.steepness == "steep"
    text = describe_curve(points, fit, metric="accuracy", subject="LoRA on tiny")
    assert text.startswith("LoRA on tiny: accuracy")
    assert "still steep: collect more data first" in text


def test_a_flat_curve_says_more_data_buys_little():
    points = synthetic_points(curve=lambda n: 0.8, noise=0.002, half_width=0.01)
    fit = fit_learning_curve(points)
    assert fit.steepness == "flat"
    assert abs(fit.doubling_gain.value) < 0.005
    assert "flattened" in describe_curve(points, fit, metric="accuracy")


def test_a_bar_above_the_ceiling_is_never_reached_and_that_is_valid_json():
    fit = fit_learning_curve(synthetic_points(), quality_bar=0.99)
    assert math.isinf(fit.n_for_bar.value)
    assert "never reaches the quality bar 0.990" in describe_curve(synthetic_points(), fit, metric="accuracy")
    document = json.dumps(fit.to_dict(), allow_nan=False)  # the store keeps JSON: no Infinity
    assert json.loads(document)["n_for_bar"]["value"] is None


def test_fit_rejects_duplicate_sizes_and_misshapen_replicates():
    points = synthetic_points()
    with pytest.raises(ValueError, match="distinct sizes"):
        fit_learning_curve([*points, points[0]])
    with pytest.raises(ValueError, match="replicates"):
        fit_learning_curve(points, replicates=np.zeros((10, 3)))


def test_joint_replicates_resample_the_test_examples_once_for_all_points():
    metric = resolve_metric("accuracy", Kind.classify, labels=["x", "y"])
    rng = np.random.default_rng(0)
    gold = rng.choice(["x", "y"], size=400)
    right_small = rng.random(400) < 0.6
    right_large = right_small | (rng.random(400) < 0.5)  # the larger model gets right what the smaller did
    stats = [metric.stats([g if r else ("y" if g == "x" else "x") for g, r in zip(gold, right)], list(gold))
             for right in (right_small, right_large)]
    replicates = joint_replicates(metric, stats, n_replicates=500, seed=1)
    assert replicates.shape == (500, 2)
    assert replicates[:, 0].mean() == pytest.approx(right_small.mean(), abs=0.01)
    # Shared resamples: the points move together, so their difference varies less than each.
    assert np.corrcoef(replicates.T)[0, 1] > 0.5
    assert np.std(replicates[:, 1] - replicates[:, 0]) < np.std(replicates[:, 0])


# -- the runs (the tiny task, its settings and bake-off: tests/tiny_training.py) -------------------


class ClockedTrainer:
    """A trainer for the budget logic: it 'trains' instantly and reports a fixed number of seconds
    per example, answering through the real zero-shot arm on a scripted model."""

    def __init__(self, dataset, seconds_per_example: float, cut_short_at: int | None = None):
        from tunewise.arms.base import ArmContext
        from tunewise.arms.zero_shot import ZeroShot
        from tunewise.models.scripted import ScriptedBackend

        self.dataset = dataset
        self.seconds_per_example = seconds_per_example
        self.cut_short_at = cut_short_at
        self.sizes: list[int] = []
        self.budgets: list[float | None] = []
        backend = ScriptedBackend(answers=lambda chat: "b" if "b" in chat[-1].content else "a")
        self.candidate = ZeroShot(model="s").prepare(ArmContext(dataset=dataset, backend=lambda spec: backend,
                                                                embedder=lambda: None))

    def __call__(self, subset, budget_s):
        from tunewise.train.curve import TrainedPoint

        self.sizes.append(len(subset))
        self.budgets.append(budget_s)
        return TrainedPoint(self.candidate, self.seconds_per_example * len(subset), float(len(subset)),
                            cut_short=len(subset) == self.cut_short_at)


def scripted_dataset(n_train: int = 2000):
    from tunewise.task.card import TaskCard
    from tunewise.task.dataset import Dataset, Example

    card = TaskCard.model_validate({"name": "t", "kind": "classify", "instruction": "Pick a or b.",
                                    "data": {"file": "t.jsonl"}, "labels": ["a", "b"]})
    train = [Example(f"item {i} {'ab'[i % 2]}", "ab"[i % 2], "t.jsonl", i + 1) for i in range(n_train)]
    test = [Example(f"test {i} {'ab'[i % 3 == 0]}", "ab"[i % 2], "t.jsonl", i + 1) for i in range(60)]
    return Dataset(card, {"train": train, "validation": [], "test": test}, ["a", "b"], {})


def test_the_curve_stops_at_the_first_size_its_forecast_cannot_fit():
    from tunewise.train.curve import run_learning_curve

    dataset = scripted_dataset()
    metric = resolve_metric("accuracy", Kind.classify, labels=["a", "b"])
    trainer = ClockedTrainer(dataset, seconds_per_example=2.0)
    # 50 examples "take" 100 s, so 100 are forecast at 200 s and 250 at 500 s: both fit 600 s;
    # 500 are forecast at 1,000 s and do not (the clock barely moves: the trainer is instant).
    run = run_learning_curve(trainer, dataset.train, dataset.test, metric, budget_s=600.0, seed=0, stratify=True)
    assert trainer.sizes == [50, 100, 250]
    # The first size trains in the lora arm's share of the budget, the rest keeps the answering time free.
    assert trainer.budgets[0] <= 0.6 * 600 < trainer.budgets[1] < 600
    assert [p.n for p in run.points] == [50, 100, 250]
    assert [r["n"] for r in run.not_run] == [500, 1000, 2000]
    assert "needs about 16.7 min (forecast from n=250)" in run.not_run[0]["reason"]
    assert "Not run: n=500, 1,000, 2,000 (the time budget)." in run.text
    assert run.fit.form == "log_linear"  # three points
    assert all(p.low <= p.value <= p.high for p in run.points)
    assert run.last.candidate is trainer.candidate


def test_without_a_budget_every_size_runs_and_a_cut_short_point_is_left_out_of_the_fit():
    from tunewise.train.curve import run_learning_curve

    dataset = scripted_dataset(300)
    metric = resolve_metric("accuracy", Kind.classify, labels=["a", "b"])
    trainer = ClockedTrainer(dataset, seconds_per_example=0.1, cut_short_at=300)
    run = run_learning_curve(trainer, dataset.train, dataset.test, metric, seed=0)
    assert trainer.sizes == [50, 100, 250, 300] and trainer.budgets == [None] * 4
    assert run.points[-1].detail["cut_short"] is True
    assert "Left out of the fit: n=300" in run.text
    assert run.fit.largest_n == 250
    document = run.document("lora_curve@x")
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert document["arm"] == "lora_curve@x" and document["metric"] == "accuracy"
    assert [p["n"] for p in document["points"]] == [50, 100, 250]  # what the fit stands on
    assert [p["n"] for p in document["cut_short"]] == [300]


def test_a_curve_whose_only_point_was_cut_short_says_so():
    from tunewise.train.curve import run_learning_curve

    dataset = scripted_dataset(2000)
    metric = resolve_metric("accuracy", Kind.classify, labels=["a", "b"])
    trainer = ClockedTrainer(dataset, seconds_per_example=100.0, cut_short_at=50)
    run = run_learning_curve(trainer, dataset.train, dataset.test, metric, budget_s=600.0, seed=0,
                             subject="LoRA on m")
    assert trainer.sizes == [50] and run.fit.form == "none"
    assert run.text.startswith("LoRA on m: no training size finished within the time budget, so there is no "
                               "curve; cut short, n=50 scored accuracy")
    assert "Not run: n=100, 250, 500, 1,000, 2,000 (the time budget)." in run.text
    assert run.document("a")["points"] == [] and [p["n"] for p in run.document("a")["cut_short"]] == [50]


def test_answering_time_is_measured_on_a_few_examples_before_training(tiny_llama, tmp_path):
    from tunewise.arms.learning_curve import ANSWER_SAMPLE, LoraRecipe
    from tunewise.task.card import load_card
    from tunewise.task.load import load_task

    dataset = load_task(load_card(write_tiny_task(tmp_path)))
    backend = load_tiny(tiny_llama)
    recipe = LoraRecipe(dataset, backend, seed=0)
    assert recipe.validation == dataset.validation and recipe.train == dataset.train
    assert recipe.answer_seconds([]) == 0.0
    assert recipe.answer_seconds(dataset.test) > 0
    assert len(dataset.test) > ANSWER_SAMPLE  # the measurement ran on a sample and scaled up


def test_the_curve_arm_refuses_what_cannot_make_a_curve():
    from tunewise.arms.learning_curve import LearningCurve

    with pytest.raises(TunewiseError, match="sizes must be positive integers") as caught:
        LearningCurve(model="m", sizes=(50, 0))
    assert caught.value.fix
    with pytest.raises(TunewiseError, match="worthwhile_gain"):
        LearningCurve(model="m", worthwhile_gain=2.0)
    assert "remote model" in LearningCurve(model="openai:gpt-4o-mini").applies(scripted_dataset(100))
    assert "at least two training sizes" in LearningCurve(model="m").applies(scripted_dataset(40))
    assert LearningCurve(model="m").applies(scripted_dataset(100)) is None
    assert LearningCurve(model="m").name == "lora_curve@m"


def test_a_budget_that_cannot_fit_two_sizes_skips_the_arm_with_its_forecast(tmp_path):
    from tunewise.bakeoff import BakeoffOptions, plan_arms, run_bakeoff
    from tunewise.store import open_store
    from tunewise.task.card import load_card

    card = load_card(write_tiny_task(tmp_path, copies=30))
    [arm] = plan_arms(card, ["lora_curve"], ["smollm2-135m-instruct"])
    assert arm.estimated_seconds(__import__("tunewise.task.load", fromlist=["x"]).load_task(card), 14) > 1
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(card, [arm], store=store, options=BakeoffOptions(budget_s=1.0),
                             load_backend=lambda spec: pytest.fail("a skipped arm must not load its model"))
    [row] = result.arms
    assert row.status == "skipped" and "needs about" in row.reason and "of the time budget is left" in row.reason


def test_a_bakeoff_draws_the_curve_on_a_tiny_model_and_reuses_the_lora_arms_adapter(tiny_llama, tmp_path):
    spec = str(tiny_llama)
    result, detail = run_tiny_bakeoff(tmp_path, spec, {
        "lora": {"settings": TINY_ARM_SETTINGS},
        "lora_curve": {"sizes": (10, 30), "settings": TINY_ARM_SETTINGS},
    })
    lora, curve = result.arms
    assert curve.name == f"lora_curve@{spec}" and curve.status == "finished" and curve.n == 14
    [artifact] = [a for a in detail.artifacts if a.kind == "learning_curve"]
    document = artifact.content
    assert document["arm"] == curve.name and artifact.arm_id is not None
    assert [p["n"] for p in document["points"]] == [10, 30, 84]
    for point in document["points"]:
        assert point["low"] <= point["value"] <= point["high"]
        assert point["steps"] > 0 and point["adapter"]
    assert document["fit"]["form"] == "log_linear" and "Doubling the data to 168 examples" in document["text"]
    # The full-data point is the lora arm's adapter (same content key), trained once, and the
    # curve's row in the table is that point, answered on the same test examples.
    assert document["points"][-1]["reused_adapter"] is True
    assert not document["points"][0]["reused_adapter"]
    assert curve.estimate.value == pytest.approx(document["points"][-1]["value"])
    assert curve.estimate.value == pytest.approx(lora.estimate.value)
    assert curve.prepare_s > 0
    recorded = [a.name for a in detail.artifacts if a.kind == "lora_adapter" and a.name.startswith(curve.name)]
    assert [name.removeprefix(f"{curve.name}/").split("/")[0] for name in recorded] == ["n=10", "n=30", "n=84"]
