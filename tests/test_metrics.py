"""Metrics on hand-computed cases, their edge cases, name resolution and custom hooks."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tunewise.errors import MetricError
from tunewise.scoring.metrics import (
    BUILTIN_METRICS,
    field_report,
    flatten_fields,
    normalize_answer,
    per_example_scores,
    resolve_metric,
)
from tunewise.task.card import DEFAULT_METRIC, Kind

# -- classify ------------------------------------------------------------------------------


def test_accuracy_strips_whitespace_and_counts_empty_and_none_as_wrong():
    accuracy = resolve_metric("accuracy", Kind.classify)
    predictions = [" cat\n", "dog", "", None]
    references = ["cat", "cat", "dog", "dog"]
    assert accuracy.score(predictions, references) == pytest.approx(1 / 4)
    assert per_example_scores(accuracy, predictions, references).tolist() == [1, 0, 0, 0]


def test_accuracy_accepts_any_listed_reference():
    accuracy = resolve_metric("accuracy", "classify")
    assert accuracy.score(["b", "c"], [("a", "b"), ["a"]]) == 0.5


MACRO_REFS = ["cat", "cat", "dog", "dog", "bird"]
MACRO_PREDS = ["cat", "dog", "dog", "junk", "cat"]


def test_macro_f1_by_hand_with_a_label_never_predicted_and_a_prediction_outside_the_set():
    # cat: tp 1, fp 1 (bird->cat), fn 1 (cat->dog): F1 = 2/(2+1+1) = 0.5
    # dog: tp 1, fp 1 (cat->dog), fn 1 (dog->junk; junk is no label's false positive): 0.5
    # bird: never predicted, tp 0, fn 1: F1 = 0
    macro = resolve_metric("macro_f1", Kind.classify, labels=["cat", "dog", "bird"])
    assert macro.score(MACRO_PREDS, MACRO_REFS) == pytest.approx(1 / 3)
    # sklearn with an explicit label list treats out-of-set predictions the same way.
    expected = f1_score(MACRO_REFS, MACRO_PREDS, labels=["cat", "dog", "bird"], average="macro")
    assert macro.score(MACRO_PREDS, MACRO_REFS) == pytest.approx(expected)


def test_macro_f1_leaves_out_labels_that_neither_occur_nor_are_predicted():
    with_unused = resolve_metric("macro_f1", Kind.classify, labels=["cat", "dog", "bird", "fish"])
    assert with_unused.score(MACRO_PREDS, MACRO_REFS) == pytest.approx(1 / 3)


def test_macro_f1_counts_a_predicted_label_that_never_occurs_as_zero():
    macro = resolve_metric("macro_f1", Kind.classify, labels=["cat", "dog"])
    # cat: tp 1, fn 1 -> 2/3; dog: fp 1 -> 0
    assert macro.score(["cat", "dog"], ["cat", "cat"]) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_infers_labels_from_references_when_none_are_given():
    macro = resolve_metric("macro_f1", Kind.classify)
    assert macro.label_set(MACRO_REFS) == ("bird", "cat", "dog")
    assert macro.score(MACRO_PREDS, MACRO_REFS) == pytest.approx(1 / 3)


def test_macro_f1_matches_sklearn_on_random_labels():
    rng = np.random.default_rng(3)
    labels = [f"l{i}" for i in range(12)]
    truth = rng.choice(labels, 400).tolist()
    predicted = [t if rng.random() < 0.6 else rng.choice(labels) for t in truth]
    macro = resolve_metric("macro_f1", Kind.classify, labels=labels)
    assert macro.score(predicted, truth) == pytest.approx(f1_score(truth, predicted, labels=labels, average="macro"))


def test_macro_f1_rejects_a_reference_outside_the_label_set():
    macro = resolve_metric("macro_f1", Kind.classify, labels=["cat"])
    with pytest.raises(MetricError, match="not in the label set") as caught:
        macro.stats(["cat"], ["horse"])
    assert caught.value.where == "example #0"


def test_macro_f1_needs_the_label_set_for_a_single_example():
    with pytest.raises(MetricError, match="needs the label set") as caught:
        resolve_metric("macro_f1", Kind.classify).example_stats("cat", "dog")
    assert "labels=" in caught.value.fix


def test_macro_f1_per_example_score_is_correctness():
    macro = resolve_metric("macro_f1", Kind.classify)
    assert per_example_scores(macro, MACRO_PREDS, MACRO_REFS).tolist() == [1, 0, 1, 0, 0]


# -- extract -------------------------------------------------------------------------------


def test_json_validity_requires_a_json_object():
    validity = resolve_metric("json_validity", Kind.extract)
    predictions = ['{"a": 1}', " {} ", "[1, 2]", "not json", "", None, '{"a": 1']
    assert per_example_scores(validity, predictions, ["{}"] * 7).tolist() == [1, 1, 0, 0, 0, 0, 0]


def test_json_validity_checks_the_schema_when_given():
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    validity = resolve_metric("json_validity", Kind.extract, schema=schema)
    assert per_example_scores(validity, ['{"a": 1}', '{"a": "x"}', "{}"], ["{}"] * 3).tolist() == [1, 0, 0]


REFERENCE = '{"name": "Ada", "address": {"city": "London", "zip": "N1"}, "tags": ["x", "y", "y"]}'
PREDICTION = '{"name": " ada ", "address": {"city": "Paris"}, "tags": ["y", "x"], "extra": 1}'


def test_flatten_fields_dots_nested_keys_and_counts_list_items():
    fields = flatten_fields({"a": {"b": {"c": 1}}, "l": ["X", "x ", 2.0], "n": None, "e": {}, "z": []})
    assert set(fields) == {"a.b.c", "l"}
    assert fields["l"] == {"x": 2, "2": 1}


def test_field_f1_by_hand_on_nested_fields_and_lists():
    # name: tp; address.city: fp + fn; address.zip: fn; tags {x, y, y} vs {y, x}: 2 tp + 1 fn;
    # extra: fp. tp 3, fp 2, fn 3 -> F1 = 6 / (6 + 5)
    field_f1 = resolve_metric("field_f1", Kind.extract)
    assert field_f1.example_stats(PREDICTION, [REFERENCE]).tolist() == [3, 2, 3]
    assert field_f1.score([PREDICTION], [REFERENCE]) == pytest.approx(6 / 11)


def test_field_f1_is_micro_over_examples_and_an_invalid_prediction_misses_every_field():
    field_f1 = resolve_metric("field_f1", Kind.extract)
    predictions = [PREDICTION, "Sure! Here is the JSON"]
    references = [REFERENCE, '{"a": 1, "b": 2}']
    # totals tp 3, fp 2, fn 3 + 2 -> 6 / (6 + 2 + 5)
    assert field_f1.score(predictions, references) == pytest.approx(6 / 13)
    assert per_example_scores(field_f1, predictions, references) == pytest.approx([6 / 11, 0.0])


def test_field_values_compare_normalised():
    field_f1 = resolve_metric("field_f1", Kind.extract)
    same = '{"n": 5, "s": "New  York", "b": true, "missing": null}'
    assert field_f1.score([same], ['{"n": 5.0, "s": "new york", "b": true}']) == 1.0
    assert field_f1.score(['{"n": "5"}'], ['{"n": 5}']) == 1.0


def test_field_f1_takes_the_best_of_several_references():
    field_f1 = resolve_metric("field_f1", Kind.extract)
    assert field_f1.score(['{"a": 2}'], [('{"a": 1}', '{"a": 2}')]) == 1.0


def test_field_f1_with_nothing_expected_and_nothing_predicted_is_perfect():
    assert resolve_metric("field_f1", Kind.extract).score(["{}"], ["{}"]) == 1.0


def test_field_f1_rejects_a_reference_that_is_not_a_json_object():
    with pytest.raises(MetricError, match="not a JSON object") as caught:
        resolve_metric("field_f1", Kind.extract).score(["{}"], ["oops"])
    assert caught.value.where == "example #0"


def test_field_report_per_field_and_consistent_with_field_f1():
    predictions = [PREDICTION, "not json"]
    references = [REFERENCE, '{"name": "Bob"}']
    report = field_report(predictions, references)
    assert list(report) == ["address.city", "address.zip", "extra", "name", "tags"]
    assert report["name"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2, "predicted": 1}
    assert report["tags"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": 0.8, "support": 3, "predicted": 2}
    assert report["address.zip"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert report["extra"]["support"] == 0 and report["extra"]["predicted"] == 1
    tp = sum(round(r["recall"] * r["support"]) for r in report.values())
    support = sum(r["support"] for r in report.values())
    predicted = sum(r["predicted"] for r in report.values())
    overall = resolve_metric("field_f1", Kind.extract).score(predictions, references)
    assert overall == pytest.approx(2 * tp / (support + predicted))


# -- generate / qa ---------------------------------------------------------------------------


def test_squad_normalisation():
    assert normalize_answer("  The Eiffel-Tower, in  PARIS! ") == "eiffeltower in paris"


def test_exact_match_normalises_and_takes_any_reference():
    exact = resolve_metric("exact_match", Kind.qa)
    predictions = ["The Eiffel Tower!", "Paris", ""]
    references = [["eiffel tower"], ["London", "paris."], ["an answer"]]
    assert per_example_scores(exact, predictions, references).tolist() == [1, 1, 0]


def test_token_f1_by_hand():
    token_f1 = resolve_metric("token_f1", Kind.qa)
    # [big, cat, sat] vs [cat, sat, down]: 2 shared tokens, P = R = 2/3
    assert token_f1.score(["the big cat sat"], ["a cat sat down"]) == pytest.approx(2 / 3)


def test_token_f1_takes_the_max_over_references_and_handles_empty_answers():
    token_f1 = resolve_metric("token_f1", Kind.qa)
    predictions = ["cat sat", "", "the", "sat sat"]
    references = [("dog", "cat sat down", "cat"), ["something"], ["a"], ["sat"]]
    # 2*(1*2/3)/(1+2/3) = 0.8; empty vs non-empty 0; both empty after normalising 1;
    # repeated tokens count once each: P = 1/2, R = 1 -> 2/3
    assert per_example_scores(token_f1, predictions, references) == pytest.approx([0.8, 0.0, 1.0, 2 / 3])


def test_rouge_l_by_hand_and_against_rouge_score_on_ascii():
    from rouge_score import rouge_scorer

    rouge_l = resolve_metric("rouge_l", Kind.generate)
    # LCS of [the cat sat on the mat] and [the cat is on the mat] is 5 of 6 tokens.
    assert rouge_l.score(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(5 / 6)
    reference_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    pairs = [("Running dogs were barking loudly.", "The dog barks; runners run."), ("A-B c_d 12", "a b c d 12")]
    for prediction, reference in pairs:
        expected = reference_scorer.score(reference, prediction)["rougeL"].fmeasure
        assert rouge_l.score([prediction], [reference]) == pytest.approx(expected)


def test_rouge_l_keeps_non_ascii_words_and_takes_the_best_reference():
    rouge_l = resolve_metric("rouge_l", Kind.generate)
    assert rouge_l.score(["καλημέρα κόσμε"], ["καλημέρα κόσμε"]) == 1.0  # rouge-score's default: 0
    assert rouge_l.score(["the cat"], [("a dog", "the cat")]) == 1.0
    assert rouge_l.score([""], ["the cat"]) == 0.0


# -- resolution ------------------------------------------------------------------------------


def test_every_default_metric_resolves_for_its_kind_and_builtins_declare_their_kinds():
    for kind, name in DEFAULT_METRIC.items():
        metric = resolve_metric(name, kind)
        assert metric.name == name and kind in metric.kinds
    for name, kinds in BUILTIN_METRICS.items():
        for kind in kinds:
            assert resolve_metric(name, kind).kinds == kinds


def test_unknown_metric_suggests_a_close_match_and_lists_valid_names():
    with pytest.raises(MetricError, match="unknown metric 'acuracy'") as caught:
        resolve_metric("acuracy", Kind.classify)
    assert "did you mean `accuracy`?" in caught.value.fix
    assert "accuracy, macro_f1" in caught.value.fix and "package.module:function" in caught.value.fix


def test_dotted_name_without_colon_suggests_the_hook_form():
    with pytest.raises(MetricError) as caught:
        resolve_metric("my_project.metrics.polite", Kind.generate)
    assert "`my_project.metrics:polite`" in caught.value.fix


def test_builtin_for_the_wrong_kind_says_which_kinds_it_applies_to():
    with pytest.raises(MetricError, match="applies to kind generate, qa, not classify") as caught:
        resolve_metric("rouge_l", Kind.classify)
    assert "accuracy, macro_f1" in caught.value.fix


def test_length_mismatch_and_missing_references_are_errors():
    accuracy = resolve_metric("accuracy", Kind.classify)
    with pytest.raises(MetricError, match="2 predictions but 1 reference sets"):
        accuracy.score(["a", "b"], ["a"])
    with pytest.raises(MetricError, match="no reference"):
        accuracy.score(["a"], [[]])


# -- custom hooks ----------------------------------------------------------------------------

HOOK_MODULE = "tunewise_test_hooks"


@pytest.fixture
def hooks(tmp_path, monkeypatch):
    """A real module on sys.path holding good and bad hooks."""
    (tmp_path / f"{HOOK_MODULE}.py").write_text(textwrap.dedent("""
        def length_ratio(prediction, references):
            return min(1.0, len(prediction) / max(len(r) for r in references))

        def says_yes(prediction, references):
            return prediction == "yes"

        def wrong_type(prediction, references):
            return "high"

        def not_finite(prediction, references):
            return float("nan")

        def fails(prediction, references):
            raise KeyError(prediction)

        not_a_function = 3
    """))
    (tmp_path / "tunewise_broken_hooks.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "tunewise_failing_hooks.py").write_text("RATIO = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (HOOK_MODULE, "tunewise_broken_hooks", "tunewise_failing_hooks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return HOOK_MODULE


def test_custom_hook_is_averaged_and_applies_to_every_kind(hooks):
    metric = resolve_metric(f"{hooks}:length_ratio", Kind.extract)
    assert metric.name == f"{hooks}:length_ratio"
    assert metric.kinds == frozenset(Kind)
    assert metric.score(["ab", "abcd", ""], [["abcd"], ["ab", "xy"], ["x"]]) == pytest.approx((0.5 + 1 + 0) / 3)


def test_custom_hook_may_return_a_bool(hooks):
    assert resolve_metric(f"{hooks}:says_yes", Kind.qa).score(["yes", "no"], ["y", "y"]) == 0.5


@pytest.mark.parametrize(
    ("name", "message", "fix"),
    [
        ("tunewise_test_hooks:", "not of the form package.module:function", "name the module and the function"),
        (":length_ratio", "not of the form", "name the module"),
        ("no_such_module_xyz:score", "cannot import module 'no_such_module_xyz'", "PYTHONPATH"),
        ("tunewise_broken_hooks:score", "importing 'tunewise_broken_hooks' failed: No module", "install no_such_dep"),
        ("tunewise_failing_hooks:score", "'tunewise_failing_hooks' failed: ZeroDivisionError", "fix the error"),
        ("tunewise_test_hooks:missing", "has no function 'missing'", "def missing(prediction: str, references"),
        ("tunewise_test_hooks:not_a_function", "is a int, not a function", "make it a function"),
    ],
)
def test_custom_hook_resolution_errors_name_the_hook_and_the_fix(hooks, name, message, fix):
    with pytest.raises(MetricError, match=message) as caught:
        resolve_metric(name, Kind.generate)
    assert fix in caught.value.fix


@pytest.mark.parametrize(
    ("function", "message"),
    [("wrong_type", "returned str .* for example #0, not a number"), ("not_finite", "returned nan for example #0"),
     ("fails", "raised KeyError: 'p' on example #0")],
)
def test_custom_hook_failures_on_call_are_metric_errors(hooks, function, message):
    metric = resolve_metric(f"{hooks}:{function}", Kind.generate)
    with pytest.raises(MetricError, match=message) as caught:
        metric.score(["p"], ["r"])
    assert caught.value.where == f"metric {hooks}:{function}"


# -- the statistics interface ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_METRICS))
def test_score_is_the_aggregate_of_summed_stats_and_example_stats_are_rows(name):
    kind = sorted(BUILTIN_METRICS[name])[0]
    predictions, references = _sample(kind)
    metric = resolve_metric(name, kind, labels=["cat", "dog", "bird"] if kind is Kind.classify else None)
    stats = metric.stats(predictions, references)
    assert stats.shape[0] == len(predictions)
    assert metric.score(predictions, references) == pytest.approx(metric.aggregate(stats.sum(axis=0), len(stats)))
    np.testing.assert_array_equal(metric.example_stats(predictions[1], references[1]), stats[1])
    assert not math.isnan(metric.score(predictions, references))


def _sample(kind: Kind) -> tuple[list[str], list[list[str]]]:
    if kind is Kind.classify:
        return MACRO_PREDS, [[r] for r in MACRO_REFS]
    if kind is Kind.extract:
        return [PREDICTION, "{}", "oops"], [[REFERENCE], ['{"a": 1}'], ['{"b": [1, 2]}']]
    return ["the cat sat", "a dog", ""], [["the cat sat down"], ["dogs", "a dog"], ["x"]]
