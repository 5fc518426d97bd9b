"""Bootstrap intervals (vectorised = naive, coverage), paired comparisons and Holm correction."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2
from statsmodels.stats.multitest import multipletests

from tunewise.errors import MetricError
from tunewise.scoring.metrics import PerExampleMetric, resolve_metric
from tunewise.scoring.stats import (
    WILSON_MIN_RARE,
    Comparison,
    bootstrap_ci,
    bootstrap_ci_from_stats,
    bootstrap_distribution,
    holm,
    holm_adjust,
    paired_comparison,
    paired_comparison_from_stats,
    resample_counts,
    wilson_interval,
)
from tunewise.task.card import Kind

MEAN = PerExampleMetric("score", lambda prediction, references: float(prediction))


def _classify_arms(n: int, labels: list[str], accuracy: float, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(labels, n).tolist()
    predicted = [t if rng.random() < accuracy else str(rng.choice(labels)) for t in truth]
    return predicted, truth


# -- the vectorised bootstrap ------------------------------------------------------------------


def _naive_values(metric, predictions, references, n_resamples, seed):
    """The metric re-scored on each resample, one at a time: what the vectorised form replaces."""
    values = []
    for block in resample_counts(len(predictions), n_resamples, seed):
        for counts in block:
            drawn = np.repeat(np.arange(len(predictions)), counts.astype(int))
            values.append(metric.score([predictions[i] for i in drawn], [references[i] for i in drawn]))
    return values


QA_PREDICTIONS = ["the cat sat", "a dog", "", "paris", "blue whale", "42", "seven", "no idea"]
QA_REFERENCES = [["the cat sat down"], ["dogs", "a dog"], ["x"], ["Paris"], ["whale"], ["42"], ["7"], ["idk"]]
EXTRACT_PREDICTIONS = ['{"a": 1, "b": [1, 2]}', "oops", '{"a": 2}', '{"c": {"d": "x"}}', "{}", '{"a": 1}']
EXTRACT_REFERENCES = ['{"a": 1, "b": [2, 2]}', '{"a": 1}', '{"a": 2, "e": 3}', '{"c": {"d": "X"}}', '{"z": 0}', "{}"]


@pytest.mark.parametrize(
    ("name", "kind", "labels"),
    [("macro_f1", Kind.classify, None), ("macro_f1", Kind.classify, ["cat", "dog", "bird", "fish"]),
     ("accuracy", Kind.classify, None), ("field_f1", Kind.extract, None), ("token_f1", Kind.qa, None)],
)
def test_vectorised_bootstrap_equals_rescoring_each_resample(name, kind, labels):
    metric = resolve_metric(name, kind, labels=labels)
    if kind is Kind.classify:
        predictions, references = _classify_arms(25, ["cat", "dog", "bird"], 0.6, seed=1)
    elif kind is Kind.extract:
        predictions, references = EXTRACT_PREDICTIONS, EXTRACT_REFERENCES
    else:
        predictions, references = QA_PREDICTIONS, QA_REFERENCES
    (values,) = bootstrap_distribution(metric, [metric.stats(predictions, references)], 60, seed=7)
    assert values == pytest.approx(_naive_values(metric, predictions, references, 60, seed=7))


def test_resample_counts_draw_n_examples_per_resample_reproducibly():
    blocks = list(resample_counts(1_000, 2_500, seed=3))
    assert len(blocks) > 1  # 2,500 x 1,000 cells come in several blocks
    counts = np.vstack(blocks)
    assert counts.shape == (2_500, 1_000)
    assert (counts.sum(axis=1) == 1_000).all()
    np.testing.assert_array_equal(counts, np.vstack(list(resample_counts(1_000, 2_500, seed=3))))
    # each example is drawn about once per resample on average
    assert counts.mean(axis=0) == pytest.approx(np.ones(1_000), abs=0.1)


def test_bootstrap_ci_is_reproducible_and_json_serialisable():
    predictions, references = _classify_arms(300, ["a", "b", "c"], 0.7, seed=2)
    accuracy = resolve_metric("accuracy", Kind.classify)
    first = bootstrap_ci(accuracy, predictions, references, seed=5)
    assert first == bootstrap_ci(accuracy, predictions, references, seed=5)
    assert first != bootstrap_ci(accuracy, predictions, references, seed=6)
    assert first.low < first.value < first.high
    assert (first.confidence, first.n, first.metric, first.method) == (0.95, 300, "accuracy", "bca")
    assert json.loads(json.dumps(asdict(first)))["n"] == 300


def test_wider_confidence_gives_a_wider_interval_and_percentile_is_available():
    predictions, references = _classify_arms(300, ["a", "b", "c"], 0.7, seed=2)
    accuracy = resolve_metric("accuracy", Kind.classify)
    narrow = bootstrap_ci(accuracy, predictions, references, confidence=0.8)
    wide = bootstrap_ci(accuracy, predictions, references, confidence=0.99)
    assert wide.low < narrow.low and wide.high > narrow.high
    percentile = bootstrap_ci(accuracy, predictions, references, method="percentile")
    assert percentile.method == "percentile" and percentile.low < percentile.value < percentile.high


def test_a_perfect_arm_on_few_examples_still_gets_an_interval():
    # 50 of 50 right does not prove a rate of 1: Wilson's interval keeps the doubt that the
    # bootstrap (every resample all right) threw away.
    estimate = bootstrap_ci(resolve_metric("accuracy", Kind.classify), ["a"] * 50, ["a"] * 50)
    assert (estimate.value, estimate.high, estimate.method) == (1.0, 1.0, "wilson")
    assert estimate.low == pytest.approx(0.92865, abs=1e-5)


def test_an_interval_on_a_constant_continuous_score_collapses_to_the_value():
    stats = np.full((50, 1), 0.5)
    estimate = bootstrap_ci_from_stats(MEAN, stats)
    assert (estimate.value, estimate.low, estimate.high, estimate.method) == (0.5, 0.5, 0.5, "bca")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"confidence": 1.5}, "not between 0 and 1"), ({"n_resamples": 0}, "n_resamples=0"),
     ({"method": "student"}, "unknown interval method")],
)
def test_bad_bootstrap_settings_are_metric_errors(kwargs, message):
    with pytest.raises(MetricError, match=message):
        bootstrap_ci(MEAN, ["1", "0"], ["", ""], **kwargs)


def test_no_examples_is_a_metric_error():
    with pytest.raises(MetricError, match="no examples"):
        bootstrap_ci(MEAN, [], [])


# -- coverage: do 95% intervals cover the truth 95% of the time? ----------------------------

COVERAGE_TRIALS = 2_000  # standard error of a 95% rate: 0.5 points; the window is 93-97%


def _coverage(simulate, truth: float, n: int) -> float:
    hits = 0
    for trial in range(COVERAGE_TRIALS):
        stats = simulate(np.random.default_rng(10_000 + trial), n).reshape(-1, 1)
        estimate = bootstrap_ci_from_stats(MEAN, stats, n_resamples=1_000, seed=trial)
        hits += estimate.low <= truth <= estimate.high
    return hits / COVERAGE_TRIALS


def test_intervals_cover_a_bernoulli_rate_95_percent_of_the_time():
    coverage = _coverage(lambda rng, n: (rng.random(n) < 0.8).astype(float), 0.8, n=200)
    assert 0.93 <= coverage <= 0.97, coverage


# -- proportions on few examples: Wilson ------------------------------------------------------

RIGHT_WRONG = PerExampleMetric("right", lambda prediction, references: float(prediction), binary=True)


def test_wilson_matches_its_formula_and_the_reference_implementation():
    from statsmodels.stats.proportion import proportion_confint

    for successes, n in ((37, 40), (0, 10), (10, 10), (120, 150), (5, 7)):
        expected = proportion_confint(successes, n, alpha=0.05, method="wilson")
        assert wilson_interval(successes, n) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(MetricError, match="no examples"):
        wilson_interval(0, 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_always_holds_the_observed_share_within_0_and_1(pair):
    successes, n = pair
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    assert (low == 0.0) == (successes == 0) and (high == 1.0) == (successes == n)


def test_37_of_40_right_gets_a_tight_honest_interval_not_the_wide_bootstrap_one():
    stats = np.array([1.0] * 37 + [0.0] * 3).reshape(-1, 1)
    auto = bootstrap_ci_from_stats(RIGHT_WRONG, stats)
    bca = bootstrap_ci_from_stats(RIGHT_WRONG, stats, method="bca")
    assert auto.method == "wilson" and auto.n_resamples == 0
    assert (auto.low, auto.high) == pytest.approx((0.80136, 0.97416), abs=1e-5)
    assert auto.high - auto.low < bca.high - bca.low  # the BCa interval's low end sits far below
    assert auto.low > bca.low + 0.03
    assert auto == bootstrap_ci_from_stats(RIGHT_WRONG, stats, seed=99)  # no resampling, no seed


@pytest.mark.parametrize(
    ("right", "n", "method"),
    [(210, 300, "bca"),  # enough examples and enough of each outcome: the bootstrap is fine
     (150, 199, "wilson"),  # below WILSON_BELOW_N
     (995, 1000, "wilson"),  # only 5 wrong: too few to resample, whatever n is
     (WILSON_MIN_RARE, 1000, "bca")],  # 10 right is just enough of the rarer outcome
)
def test_auto_takes_wilson_for_small_or_lopsided_proportions(right, n, method):
    stats = np.array([1.0] * right + [0.0] * (n - right)).reshape(-1, 1)
    assert bootstrap_ci_from_stats(RIGHT_WRONG, stats, n_resamples=500).method == method


def test_continuous_scores_never_get_wilson_and_forcing_it_is_an_error():
    stats = np.array([0.2, 0.9, 1.0, 0.0, 0.5] * 8).reshape(-1, 1)
    assert bootstrap_ci_from_stats(MEAN, stats, n_resamples=500).method == "bca"
    with pytest.raises(MetricError, match="needs 0/1 per-example scores"):
        bootstrap_ci_from_stats(MEAN, stats, method="wilson")
    macro = resolve_metric("macro_f1", Kind.classify, labels=["a", "b"])
    estimate = bootstrap_ci(macro, ["a", "b", "a"] * 10, ["a", "b", "b"] * 10, n_resamples=500)
    assert estimate.method == "bca"  # a ratio metric is not a proportion even though its stats are 0/1


def test_a_custom_metric_with_0_1_scores_counts_as_a_proportion():
    stats = np.array([1.0] * 18 + [0.0] * 2).reshape(-1, 1)
    assert bootstrap_ci_from_stats(MEAN, stats).method == "wilson"


def _proportion_coverage(n: int, method: str, trials: int) -> float:
    # The true rate differs per data set, spread over 0.85-0.99 where the bootstrap fails most,
    # so Wilson's known oscillation in p averages out and the test measures the method.
    hits = 0
    for trial in range(trials):
        rng = np.random.default_rng(20_000 + trial)
        truth = rng.uniform(0.85, 0.99)
        stats = (rng.random(n) < truth).astype(float).reshape(-1, 1)
        estimate = bootstrap_ci_from_stats(RIGHT_WRONG, stats, n_resamples=1_000, seed=trial, method=method)
        hits += estimate.low <= truth <= estimate.high
    return hits / trials


def test_intervals_cover_a_rate_near_1_on_40_examples_95_percent_of_the_time():
    coverage = _proportion_coverage(40, "auto", COVERAGE_TRIALS)
    assert 0.93 <= coverage <= 0.97, coverage


def test_the_bootstrap_under_covers_a_rate_near_1_on_40_examples():
    # Why the small-sample fix exists: the same data sets with BCa forced.
    coverage = _proportion_coverage(40, "bca", 500)
    assert coverage < 0.90, coverage


def test_intervals_cover_a_skewed_continuous_mean_95_percent_of_the_time():
    # Beta(0.5, 2): most per-example scores near 0, a long tail up to 1 (like token F1 on a
    # hard QA set); mean 0.2. Percentile intervals under-cover here; BCa should not.
    coverage = _coverage(lambda rng, n: rng.beta(0.5, 2.0, n), 0.2, n=200)
    assert 0.93 <= coverage <= 0.97, coverage


# -- paired comparison -------------------------------------------------------------------------


def test_identical_arms_show_no_difference():
    predictions, references = _classify_arms(200, ["a", "b"], 0.7, seed=4)
    for metric in (resolve_metric("accuracy", Kind.classify), resolve_metric("macro_f1", Kind.classify)):
        same = paired_comparison(metric, predictions, predictions, references)
        assert (same.difference, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    token_f1 = resolve_metric("token_f1", Kind.qa)
    same = paired_comparison(token_f1, QA_PREDICTIONS, QA_PREDICTIONS, QA_REFERENCES)
    assert (same.difference, same.p_value, same.effect_size, same.test) == (0.0, 1.0, 0.0, "paired bootstrap")


def test_a_clearly_better_arm_has_a_small_p_value_under_mcnemar():
    references = ["yes"] * 200
    better = ["yes"] * 180 + ["no"] * 20
    worse = ["yes"] * 120 + ["no"] * 80
    result = paired_comparison(resolve_metric("accuracy", Kind.classify), better, worse, references,
                               arm_a="lora", arm_b="zero_shot")
    assert result.test == "mcnemar" and result.p_value < 1e-9
    assert result.difference == pytest.approx(0.3) and 0 < result.ci_low < 0.3 < result.ci_high
    assert (result.a_right_b_wrong, result.a_wrong_b_right) == (60, 0)
    assert result.effect_size == pytest.approx(2 * math.asin(math.sqrt(0.9)) - 2 * math.asin(math.sqrt(0.6)))
    assert result.effect_size_name == "cohen_h"
    assert (result.arm_a, result.arm_b) == ("lora", "zero_shot")


def test_a_clearly_better_arm_has_a_small_p_value_under_the_paired_bootstrap():
    rng = np.random.default_rng(8)
    truth = rng.beta(2, 2, 300)
    better, worse = truth + rng.normal(0, 0.05, 300), truth + rng.normal(-0.1, 0.05, 300)
    result = paired_comparison_from_stats(MEAN, better.reshape(-1, 1), worse.reshape(-1, 1), n_resamples=2_000)
    assert result.test == "paired bootstrap"
    assert result.p_value == pytest.approx(2 / 2_001)  # no resample reaches 0; +1 keeps p above 0
    assert result.ci_low > 0.08
    differences = better - worse
    assert result.effect_size == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert result.effect_size_name.startswith("cohen_dz")


def _arms_with_discordance(a_only: int, b_only: int, both: int, neither: int) -> tuple[list[str], list[str], list[str]]:
    a = ["y"] * a_only + ["n"] * b_only + ["y"] * both + ["n"] * neither
    b = ["n"] * a_only + ["y"] * b_only + ["y"] * both + ["n"] * neither
    return a, b, ["y"] * len(a)


def test_mcnemar_exact_binomial_matches_a_hand_computation():
    a, b, references = _arms_with_discordance(8, 2, 5, 5)
    result = paired_comparison(resolve_metric("accuracy", Kind.classify), a, b, references)
    # two-sided exact binomial on 10 discordant pairs, 2 of them one way: 2 * P(X <= 2)
    assert result.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert "exact binomial, 10 discordant pairs" == result.test_detail


def test_mcnemar_chi_square_with_continuity_correction_when_discordant_pairs_are_many():
    a, b, references = _arms_with_discordance(30, 12, 50, 8)
    result = paired_comparison(resolve_metric("exact_match", Kind.qa), a, b, references)
    statistic = (abs(30 - 12) - 1) ** 2 / (30 + 12)
    assert result.test == "mcnemar" and result.p_value == pytest.approx(chi2.sf(statistic, df=1))
    assert (result.a_right_b_wrong, result.a_wrong_b_right) == (30, 12)


def test_ratio_metrics_are_compared_by_paired_bootstrap_without_a_standardised_effect():
    labels = [f"l{i}" for i in range(5)]
    a, references = _classify_arms(300, labels, 0.8, seed=9)
    b, _ = _classify_arms(300, labels, 0.5, seed=9)
    result = paired_comparison(resolve_metric("macro_f1", Kind.classify, labels=labels), a, b, references)
    assert result.test == "paired bootstrap" and result.p_value < 0.01 and result.ci_low > 0
    assert result.effect_size is None and "not a mean of per-example scores" in result.effect_size_name
    assert json.loads(json.dumps(asdict(result)))["effect_size"] is None


def test_the_two_arms_share_resamples():
    # With shared resamples, the difference's spread comes only from examples where the arms
    # differ: a single disagreement among 400 examples gives a tiny interval.
    references = ["1"] * 400
    a = ["1"] * 400
    b = ["1"] * 399 + ["0"]
    result = paired_comparison(resolve_metric("accuracy", Kind.classify), a, b, references)
    assert result.ci_high - result.ci_low <= 3 / 400


def test_arms_of_different_lengths_are_an_error():
    with pytest.raises(MetricError, match="arm a has 2 predictions, arm b 1"):
        paired_comparison(MEAN, ["1", "0"], ["1"], ["", ""])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=40))
def test_paired_results_are_well_formed(pairs):
    a = np.array([[x] for x, _ in pairs])
    b = np.array([[y] for _, y in pairs])
    result = paired_comparison_from_stats(MEAN, a, b, n_resamples=200)
    assert 0 < result.p_value <= 1
    assert result.ci_low <= result.ci_high
    assert result.difference == pytest.approx(a.mean() - b.mean())


# -- Holm --------------------------------------------------------------------------------------


def test_holm_matches_a_hand_computation_and_statsmodels():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([]) == []
    for p_values in ([0.01, 0.04, 0.03, 0.005], [0.5, 0.5, 0.01], [0.9, 0.2, 0.6, 0.02, 0.049, 0.3]):
        assert holm_adjust(p_values) == pytest.approx(multipletests(p_values, method="holm")[1].tolist())


def _holm_by_definition(p_values: list[float]) -> list[float]:
    m = len(p_values)
    ranked = sorted(range(m), key=lambda i: p_values[i])
    steps = [min(1.0, (m - k) * p_values[i]) for k, i in enumerate(ranked)]
    adjusted = [0.0] * m
    for k, i in enumerate(ranked):
        adjusted[i] = max(steps[: k + 1])
    return adjusted


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_is_monotone_never_below_raw_and_follows_its_definition(p_values):
    adjusted = holm_adjust(p_values)
    assert adjusted == pytest.approx(_holm_by_definition(p_values))
    assert all(raw <= adj <= 1 for raw, adj in zip(p_values, adjusted))
    order = np.argsort(p_values, kind="stable")
    assert all(adjusted[i] <= adjusted[j] for i, j in zip(order, order[1:]))


def test_holm_on_comparisons_keeps_order_and_fills_the_adjusted_p_value():
    references = ["y"] * 100
    baseline = ["y"] * 60 + ["n"] * 40
    arms = {"close": ["y"] * 62 + ["n"] * 38, "far": ["y"] * 90 + ["n"] * 10}
    accuracy = resolve_metric("accuracy", Kind.classify)
    comparisons = [paired_comparison(accuracy, preds, baseline, references, arm_a=name, arm_b="zero_shot")
                   for name, preds in arms.items()]
    adjusted = holm(comparisons)
    assert [c.arm_a for c in adjusted] == ["close", "far"]
    assert [c.p_value_adjusted for c in adjusted] == pytest.approx(holm_adjust([c.p_value for c in comparisons]))
    assert all(isinstance(c, Comparison) and c.p_value_adjusted >= c.p_value for c in adjusted)
    assert all(c.p_value_adjusted is None for c in comparisons)  # the inputs are left as they were
