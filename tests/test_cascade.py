"""The cascade arm: routing, the threshold chosen on validation only, failure paths, the plan's
default pairing, and a bake-off on two tiny real models.

Routing and threshold tests use `TableArm`, a real `Arm` whose answers and confidences come from a
table, so each test knows exactly which answers are unsure; the prompting arms on ScriptedBackend
and on tiny random transformers exercise the real answer paths (softmax confidences, JSON validity).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from tunewise.arms.base import Arm, ArmContext, Budget, Candidate, Prediction
from tunewise.arms.cascade import (
    Cascade,
    build_cascade,
    choose_point,
    parse_cascade_option,
    sweep_thresholds,
)
from tunewise.arms.few_shot import FewShot
from tunewise.arms.zero_shot import ZeroShot
from tunewise.bakeoff import BakeoffOptions, PlanOptions, plan_arms, run_bakeoff
from tunewise.errors import TunewiseError
from tunewise.models.base import Chat, Usage
from tunewise.models.scripted import ScriptedBackend
from tunewise.scoring import resolve_metric
from tunewise.task.card import TaskCard, load_card
from tunewise.task.dataset import Dataset, Example

LABELS = ["a", "b"]
SMALL = Usage(tokens_in=10, tokens_out=1, latency_s=0.001, cost_usd=0.0001)
LARGE = Usage(tokens_in=100, tokens_out=2, latency_s=0.1, cost_usd=0.01)


# -- helpers -------------------------------------------------------------------------------------


class TableArm(Arm):
    """An arm that answers from a table: input -> (output, confidence or None, valid). Records
    every input it is asked about, and how often it was prepared."""

    def __init__(self, name: str, table: dict[str, tuple[str, float | None, bool]] | None = None, *,
                 usage: Usage = SMALL, batch: int = 16, fail: Exception | None = None, model: str | None = None,
                 default: str | None = None):
        self.name = name
        self.table = table or {}
        self.usage = usage
        self.batch = batch
        self.fail = fail
        self.model = model
        self.default = default  # answer for inputs not in the table (confidence 0.5)
        self.seen: list[str] = []
        self.prepared = 0

    def params(self):
        return {"model": self.model} if self.model else {"table": sorted(self.table)}

    def prepare(self, context: ArmContext) -> Candidate:
        self.prepared += 1
        if self.fail is not None:
            raise self.fail
        return TableCandidate(self)


class TableCandidate(Candidate):
    def __init__(self, arm: TableArm):
        self.arm = arm
        self.config = {"table": arm.name}
        self.model_id = f"table:{arm.name}"
        self.prepare_usage = Usage(5, 0, 0.5, 0.05)

    def batch_size(self) -> int:
        return self.arm.batch

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        out = []
        for example in batch:
            self.arm.seen.append(example.input)
            output, confidence, valid = self.arm.table.get(example.input, (self.arm.default, 0.5, True))
            extra = {} if confidence is None else {"confidence": confidence}
            out.append(Prediction(output=output, usage=self.arm.usage, valid=valid, extra=extra))
        return out


def examples(rows: Sequence[tuple[str, str]], source: str) -> list[Example]:
    return [Example(input=i, output=o, source=source, line=n) for n, (i, o) in enumerate(rows, 1)]


def dataset(validation=(), test=(), kind: str = "classify", train=None, **card) -> Dataset:
    if kind == "classify":
        card.setdefault("labels", LABELS)
    task = TaskCard.model_validate({"name": "t", "kind": kind, "instruction": "Pick the label.",
                                    "data": {"file": "t.jsonl"}, **card})
    train = train if train is not None else [(f"train {i}", LABELS[i % 2]) for i in range(6)]
    splits = {"train": examples(train, "train.jsonl"), "validation": examples(validation, "validation.jsonl"),
              "test": examples(test, "test.jsonl")}
    return Dataset(task, splits, card.get("labels"), {"file": "0" * 64})


def context(data: Dataset, backends: dict[str, ScriptedBackend] | None = None, **options) -> ArmContext:
    def backend(spec: str):
        if backends is None or spec not in backends:
            raise AssertionError(f"no backend {spec!r} in this test")
        return backends[spec]

    return ArmContext(dataset=data, backend=backend, embedder=lambda: None, **options)


# The validation set of the threshold tests: the first stage's answer and confidence per input,
# and the truth. The second stage is always right. Sorted by confidence: v4 .3 (right), v3 .4
# (wrong), v2 .6 (wrong), v1 .8 (right), v0 .9 (right): escalating below 0.7 fixes every error.
VALIDATION = [("v0", "a", 0.9, "a"), ("v1", "b", 0.8, "b"), ("v2", "a", 0.6, "b"), ("v3", "b", 0.4, "a"),
              ("v4", "a", 0.3, "a")]


def threshold_stages(test_rows=()):
    """(first, second, validation rows, test rows): first answers v* as in VALIDATION and every
    test input right with the same spread of confidences; second answers everything right."""
    first_table = {name: (answer, confidence, True) for name, answer, confidence, _ in VALIDATION}
    second_table = {name: (truth, 0.99, True) for name, _, _, truth in VALIDATION}
    for name, truth, confidence in test_rows:
        first_table[name] = (truth, confidence, True)
        second_table[name] = (truth, 0.99, True)
    first = TableArm("small", first_table, usage=SMALL)
    second = TableArm("large", second_table, usage=LARGE)
    return first, second, [(name, truth) for name, _, _, truth in VALIDATION], [(n, t) for n, t, _ in test_rows]


# -- routing -------------------------------------------------------------------------------------


def test_exactly_the_unsure_answers_escalate_in_order_with_both_costs():
    confidences = [0.9, 0.2, 0.55, 0.49, 0.95, 0.1, 0.5]
    rows = [(f"x{i}", LABELS[i % 2]) for i in range(len(confidences))]
    first = TableArm("small", {f"x{i}": ("a", c, True) for i, c in enumerate(confidences)}, batch=3)
    second = TableArm("large", {f"x{i}": ("b", 0.8, True) for i in range(len(confidences))}, usage=LARGE, batch=2)
    data = dataset(test=rows)
    candidate = Cascade(first, second, threshold=0.5).prepare(context(data))

    predictions = candidate.predict(data.test)

    unsure = [i for i, c in enumerate(confidences) if c < 0.5]  # 0.5 itself is sure enough
    assert unsure == [1, 3, 5]
    assert first.seen == [f"x{i}" for i in range(len(confidences))]
    assert second.seen == [f"x{i}" for i in unsure]  # only the unsure ones, in order
    assert [p.output for p in predictions] == ["b" if i in unsure else "a" for i in range(len(confidences))]
    for i, prediction in enumerate(predictions):
        escalated = i in unsure
        assert prediction.extra["escalated"] is escalated
        assert prediction.extra["first_output"] == "a" and prediction.extra["first_confidence"] == confidences[i]
        assert prediction.extra["escalation_reason"] == ("low_confidence" if escalated else None)
        assert prediction.extra["answered_by"] == ("large" if escalated else "small")
        assert prediction.extra["confidence"] == (0.8 if escalated else confidences[i])  # the answering stage's
        expected = Usage(110, 3, 0.101, 0.0101) if escalated else SMALL
        assert prediction.usage.tokens_in == expected.tokens_in and prediction.usage.tokens_out == expected.tokens_out
        assert prediction.usage.latency_s == pytest.approx(expected.latency_s)
        assert prediction.usage.cost_usd == pytest.approx(expected.cost_usd)
    assert candidate.batch_size() == 3 and candidate.model_id == "table:small -> table:large"
    assert candidate.predict([]) == []


def test_a_given_threshold_needs_no_validation_answers():
    first, second, validation, _ = threshold_stages()
    data = dataset(validation=validation, test=[("x", "a")])
    candidate = Cascade(first, second, threshold=0.7).prepare(context(data))
    assert first.seen == second.seen == []  # nothing answered while preparing
    assert candidate.config["threshold"] == 0.7 and candidate.config["chosen_by"] == "given"
    assert "sweep" not in candidate.config
    usage = candidate.prepare_usage
    assert (usage.tokens_in, usage.cost_usd) == (10, pytest.approx(0.1))  # both stages' own preparing
    assert usage.latency_s >= 0


def test_extract_escalates_invalid_json_and_keeps_valid_answers_without_a_confidence():
    schema = {"type": "object", "required": ["queue"], "properties": {"queue": {"enum": LABELS}}}
    small = ScriptedBackend({"fine": '{"queue": "a"}', "broken": '{"queue": "a"', "off-schema": '{"queue": "z"}'},
                            name="small")
    large = ScriptedBackend(default='{"queue": "b"}', name="large")
    rows = [("fine", '{"queue":"a"}'), ("broken", '{"queue":"b"}'), ("off-schema", '{"queue":"b"}')]
    data = dataset(validation=rows, test=rows, kind="extract", train=[("t", '{"queue":"a"}')], output_schema=schema)
    cascade = Cascade(ZeroShot(model="small"), ZeroShot(model="large"))
    candidate = cascade.prepare(context(data, {"small": small, "large": large}))

    predictions = candidate.predict(data.test)

    assert [p.extra["escalated"] for p in predictions] == [False, True, True]
    assert [p.extra["escalation_reason"] for p in predictions] == [None, "invalid", "invalid"]
    assert [p.output for p in predictions] == ['{"queue":"a"}', '{"queue":"b"}', '{"queue":"b"}']
    assert all(p.valid for p in predictions) and predictions[1].extra["first_valid"] is False
    assert predictions[0].extra["first_confidence"] is None
    # No confidences: one policy only (escalate the invalid), which fixed both errors on validation.
    assert [(p["escalated"], p["quality"]) for p in candidate.config["sweep"]] == [(2, 1.0)]
    assert candidate.config["validation"]["first_quality"] < 1.0


def test_confidences_from_real_label_scoring_route_the_answers():
    """ZeroShot on a scripted backend: the confidence is the softmax share of the chosen label."""
    shares = {"p": 0.95, "q": 0.6, "r": 0.51, "s": 0.8}

    def scores(chat: Chat, options):  # the chosen label "a" gets `share` of the probability mass
        share = shares[chat[-1].content]
        return [math.log(share), math.log(1 - share)]

    small = ScriptedBackend(option_scores=scores, name="small")
    large = ScriptedBackend(option_scores={"b": 0.0}, name="large")
    data = dataset(test=[(text, "a") for text in shares])
    candidate = Cascade(ZeroShot(model="small"), ZeroShot(model="large"), threshold=0.7).prepare(
        context(data, {"small": small, "large": large}))
    predictions = candidate.predict(data.test)
    assert [p.extra["first_confidence"] for p in predictions] == pytest.approx(list(shares.values()))
    assert [p.output for p in predictions] == ["a", "b", "b", "a"]
    assert [m[-1].content for m in large.calls] == ["q", "r"]


# -- the threshold, on validation only -------------------------------------------------------------


def test_the_cheapest_threshold_within_tolerance_of_the_second_stage_is_chosen():
    first, second, validation, _ = threshold_stages()
    data = dataset(validation=validation, test=[("x", "a")])
    candidate = Cascade(first, second).prepare(context(data))
    config = candidate.config
    assert config["threshold"] == pytest.approx(0.7)  # between v2 (0.6) and v1 (0.8)
    assert config["validation"] | {"cost_per_1k_usd": 0} == {
        "n": 5, "of": 5, "seed": 0, "cut_short_by_budget": False, "first_quality": 0.6, "second_quality": 1.0,
        "quality": 1.0, "escalation_rate": 0.6, "cost_per_1k_usd": 0,
        "first_cost_per_1k_usd": pytest.approx(0.1), "second_cost_per_1k_usd": pytest.approx(10.0),
    }
    assert config["validation"]["cost_per_1k_usd"] == pytest.approx(0.1 + 0.6 * 10.0)
    assert [p["threshold"] for p in config["sweep"]] == pytest.approx([0.0, 0.35, 0.5, 0.7, 0.85, 0.95])
    assert [p["escalated"] for p in config["sweep"]] == [0, 1, 2, 3, 4, 5]
    assert [p["quality"] for p in config["sweep"]] == pytest.approx([0.6, 0.6, 0.8, 1.0, 1.0, 1.0])
    assert "within 0.01 of the second stage" in config["chosen_by"]
    # Preparing answered the validation inputs with both stages, and paid for it.
    assert sorted(first.seen) == sorted(second.seen) == ["v0", "v1", "v2", "v3", "v4"]
    assert candidate.prepare_usage.tokens_in == 10 + 5 * 10 + 5 * 100
    assert candidate.prepare_usage.cost_usd == pytest.approx(0.1 + 5 * 0.0001 + 5 * 0.01)


@pytest.mark.parametrize(("settings", "threshold", "why"), [
    ({"tolerance": 0.2}, 0.5, "within 0.2"),
    ({"target_escalation": 0.5}, 0.5, "within the target rate 0.5"),
    ({"target_escalation": 0.1}, 0.0, "within the target rate 0.1"),
    ({"target_escalation": 1.0}, 0.95, "within the target rate 1"),
])
def test_tolerance_and_target_escalation_move_the_threshold(settings, threshold, why):
    first, second, validation, _ = threshold_stages()
    candidate = Cascade(first, second, **settings).prepare(context(dataset(validation=validation, test=[("x", "a")])))
    assert candidate.config["threshold"] == pytest.approx(threshold) and why in candidate.config["chosen_by"]


def test_a_spent_budget_cuts_the_validation_sample_and_says_so():
    first, second, validation, _ = threshold_stages()
    second.batch = 2
    data = dataset(validation=validation, test=[("x", "a")])
    # No time left: the second stage answers one batch (there must be something to sweep), no more.
    config = Cascade(first, second).prepare(context(data, budget=Budget(seconds=0.0))).config
    assert len(second.seen) == 2 and config["validation"]["n"] == 2
    assert config["validation"]["cut_short_by_budget"] is True and config["validation"]["of"] == 5


class Untouchable(list):
    """A split that fails the test if anything reads it."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("the test split was read while choosing the threshold")

    __iter__ = __getitem__ = __len__ = __bool__ = __contains__ = _refuse


def test_test_labels_never_reach_the_threshold():
    # On test, the first stage is always right: had test labels been read, escalating nothing
    # (threshold 0) would have won. Validation says 0.7.
    test_rows = [("t0", "a", 0.3), ("t1", "b", 0.4), ("t2", "a", 0.6), ("t3", "b", 0.9)]
    first, second, validation, test = threshold_stages(test_rows)
    data = dataset(validation=validation, test=test)
    test_answers = [(first.table[n], second.table[n]) for n, _, _ in test_rows]
    on_test = sweep_thresholds([a[1] for a, _ in test_answers],
                               [Prediction(a[0], SMALL, extra={"confidence": a[1]}) for a, _ in test_answers],
                               [Prediction(b[0], LARGE) for _, b in test_answers],
                               [(t,) for _, t in test], resolve_metric("accuracy", "classify"))
    assert choose_point(on_test, reference_quality=1.0, tolerance=0.01, target_escalation=None)[0].threshold == 0.0

    chosen = Cascade(first, second).prepare(context(data)).config
    assert chosen["threshold"] == pytest.approx(0.7)

    # Proof that nothing of test is read: the same choice with a test split that cannot be read at all.
    first.seen.clear()
    sealed = dataset(validation=validation, test=[("x", "a")])
    sealed.splits["test"] = Untouchable()
    again = Cascade(first, second).prepare(context(sealed)).config
    assert again == chosen and set(first.seen) == {"v0", "v1", "v2", "v3", "v4"}


def test_the_validation_sample_is_capped_seeded_and_recorded_as_an_artifact(store):
    rows = [(f"v{i}", LABELS[i % 2]) for i in range(40)]
    first = TableArm("small", {n: ("a", 0.3 + 0.01 * i, True) for i, (n, _) in enumerate(rows)})
    second = TableArm("large", {n: (t, 0.9, True) for n, t in rows}, usage=LARGE)
    data = dataset(validation=rows, test=[("x", "a")])
    run_id = store.start_run(data.card, kind="bakeoff", data_hashes=data.data_hashes)

    candidate = Cascade(first, second, validation_limit=12).prepare(context(data, store=store, run_id=run_id, seed=3))
    seen = list(first.seen)
    assert len(seen) == 12 and seen == sorted(seen, key=lambda n: int(n[1:]))  # a sample, in split order
    assert second.seen == seen
    first.seen.clear()
    Cascade(first, second, validation_limit=12).prepare(context(data, seed=3))
    assert first.seen == seen  # the same seed, the same sample
    first.seen.clear()
    Cascade(first, second, validation_limit=12).prepare(context(data, seed=4))
    assert first.seen != seen

    [artifact] = store.get_run(run_id).artifacts
    assert (artifact.kind, artifact.name) == ("cascade_sweep", "cascade[small->large]")
    content = artifact.content
    assert content["threshold"] == candidate.config["threshold"] and content["validation"]["n"] == 12
    assert len(content["examples"]) == 12 and {e["example"] for e in content["examples"]} == {
        f"validation.jsonl:{int(n[1:]) + 1}" for n in seen}
    assert len(content["sweep"]) == 13  # 12 distinct confidences: 13 cuts
    assert all(e["second_score"] in (0.0, 1.0) for e in content["examples"])


def test_a_long_sweep_is_thinned_in_the_config_but_kept_whole_in_the_artifact(store):
    rows = [(f"v{i}", LABELS[i % 2]) for i in range(60)]
    first = TableArm("small", {n: ("a", 0.2 + 0.01 * i, True) for i, (n, _) in enumerate(rows)})
    second = TableArm("large", {n: (t, 0.9, True) for n, t in rows}, usage=LARGE)
    data = dataset(validation=rows, test=[("x", "a")])
    run_id = store.start_run(data.card, kind="bakeoff", data_hashes=data.data_hashes)
    config = Cascade(first, second).prepare(context(data, store=store, run_id=run_id)).config
    [artifact] = store.get_run(run_id).artifacts
    whole, thinned = artifact.content["sweep"], config["sweep"]
    assert len(whole) == 61 and len(thinned) <= 25
    assert thinned[0] == whole[0] and thinned[-1] == whole[-1] and config["chosen"] in thinned
    assert all(point in whole for point in thinned)


def test_no_threshold_near_the_second_stage_takes_the_best_on_validation():
    # v0 is wrong with full confidence (1.0): no threshold escalates it, so no cut reaches the
    # second stage's 100%; the best cut escalates v1 only (v2 was right either way).
    first = TableArm("small", {"v0": ("a", 1.0, True), "v1": ("a", 0.2, True), "v2": ("a", 0.4, True)})
    second = TableArm("large", {"v0": ("b", 0.9, True), "v1": ("b", 0.9, True), "v2": ("a", 0.9, True)})
    data = dataset(validation=[("v0", "b"), ("v1", "b"), ("v2", "a")], test=[("x", "a")])
    config = Cascade(first, second, tolerance=0.0).prepare(context(data)).config
    assert config["validation"]["second_quality"] == 1.0
    assert [p["escalated"] for p in config["sweep"]] == [0, 1, 2]
    assert config["threshold"] == pytest.approx(0.3) and config["validation"]["quality"] == pytest.approx(2 / 3)
    assert "no threshold came within 0 of the second stage alone" in config["chosen_by"]


def test_a_first_stage_as_good_as_the_second_escalates_nothing():
    first = TableArm("small", {"v0": ("a", 0.9, True), "v1": ("a", 0.2, True), "v2": ("a", 0.4, True)})
    worse = TableArm("large", {"v0": ("b", 0.9, True), "v1": ("a", 0.9, True), "v2": ("a", 0.9, True)})
    data = dataset(validation=[("v0", "a"), ("v1", "b"), ("v2", "b")], test=[("x", "a")])
    config = Cascade(first, worse, tolerance=0.0).prepare(context(data)).config
    assert config["threshold"] == 0.0 and config["validation"]["escalation_rate"] == 0.0
    assert config["validation"]["quality"] == config["validation"]["first_quality"] == pytest.approx(1 / 3)


# -- failure paths ---------------------------------------------------------------------------------


def test_a_stage_that_fails_to_prepare_is_named():
    first, second, validation, _ = threshold_stages()
    data = dataset(validation=validation, test=[("x", "a")])
    second.fail = TunewiseError("model not found", where="gemma3-270m", fix="tunewise models pull gemma3-270m")
    with pytest.raises(TunewiseError, match="second stage large failed to prepare: model not found") as caught:
        Cascade(first, second).prepare(context(data))
    assert caught.value.where == "cascade[small->large] (gemma3-270m)"
    assert caught.value.fix == "tunewise models pull gemma3-270m"

    second.fail = RuntimeError("out of memory")
    with pytest.raises(TunewiseError, match="RuntimeError: out of memory") as caught:
        Cascade(first, second).prepare(context(data))
    assert "run the arm large alone" in caught.value.fix


def test_a_first_stage_without_confidences_is_refused():
    first = TableArm("small", {"v0": ("a", None, True), "x": ("a", None, True)})
    second = TableArm("large", default="b")
    data = dataset(validation=[("v0", "a")], test=[("x", "a")])
    with pytest.raises(TunewiseError, match="first stage small reports no confidence") as caught:
        Cascade(first, second).prepare(context(data))
    assert "embed_classifier" in caught.value.fix
    candidate = Cascade(first, second, threshold=0.5).prepare(context(data))  # found out on the first answer
    with pytest.raises(TunewiseError, match="reports no confidence"):
        candidate.predict(data.test)

    odd = TableArm("odd", {"v0": ("a", 3.5, True)})
    with pytest.raises(TunewiseError, match="confidence 3.5, not a probability"):
        Cascade(odd, second).prepare(context(data))


def test_where_it_does_not_apply_it_says_why():
    first, second, validation, _ = threshold_stages()
    assert Cascade(first, second).applies(dataset(validation=validation)) is None
    assert "has none" in Cascade(first, second).applies(dataset(validation=()))
    assert Cascade(first, second, threshold=0.5).applies(dataset(validation=())) is None
    qa = Cascade(first, second).applies(dataset(validation=validation, kind="qa", train=[("q", "a")]))
    assert "no first stage reports a confidence for free-text (qa)" in qa
    same = Cascade(ZeroShot(model="m"), FewShot(model="m", selection="nearest"))
    assert "both stages run m" in same.applies(dataset(validation=validation))
    tiny = dataset(validation=validation, train=[("only", "a")])
    assert "its second stage few_shot_nearest@big does not apply: few-shot with k=5" in Cascade(
        first, FewShot(model="big", selection="nearest")).applies(tiny)
    with pytest.raises(TunewiseError, match="has none"):
        Cascade(first, second).prepare(context(dataset(validation=())))


@pytest.mark.parametrize(("settings", "message"), [
    ({"threshold": 1.5}, "threshold must be between 0 and 1"),
    ({"target_escalation": -0.1}, "target_escalation must be between 0 and 1"),
    ({"threshold": 0.5, "target_escalation": 0.2}, "not both"),
    ({"tolerance": -1}, "tolerance must be between 0 and 1"),
    ({"validation_limit": 0}, "validation_limit must be a positive integer"),
])
def test_bad_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(TunewiseError, match=message) as caught:
        Cascade(TableArm("s"), TableArm("l"), **settings)
    assert caught.value.fix


# -- the plan --------------------------------------------------------------------------------------


def card(kind: str = "classify") -> TaskCard:
    fields = {"labels": LABELS} if kind == "classify" else {}
    return TaskCard.model_validate({"name": "t", "kind": kind, "instruction": "x", "data": {"file": "t.jsonl"},
                                    **fields})


def test_the_plan_pairs_the_cheapest_confident_stage_with_the_last_model():
    planned = plan_arms(card(), models=["small", "large"])
    assert planned[-1].name == "cascade[embed_classifier->few_shot_nearest@large]"  # last in the run order
    extract = plan_arms(card("extract"), ["cascade"], ["small", "large"])[0]
    assert extract.name == "cascade[zero_shot@small->few_shot_nearest@large]"
    one_model = plan_arms(card("extract"), ["cascade"], ["only"])[0]
    assert "both stages run only" in one_model.applies(dataset(validation=[("v", "{}")], kind="extract"))
    assert plan_arms(card(), ["cascade"], ["only"])[0].name == "cascade[embed_classifier->few_shot_nearest@only]"


def test_the_plan_takes_stages_and_settings_from_the_options():
    options = PlanOptions(extra={"cascade": parse_cascade_option("zero_shot,few_shot_random@openai:gpt-4o@http://h/v1,"
                                                                 "escalate=0.25,validation=50")})
    [arm] = plan_arms(card(), ["cascade"], ["small", "large"], options=options)
    assert isinstance(arm, Cascade) and arm.name.startswith("cascade[zero_shot@small->few_shot_random@openai:gpt-4o@")
    assert (arm.second.model, arm.target_escalation, arm.validation_limit) == ("openai:gpt-4o@http://h/v1", 0.25, 50)
    assert arm.name.endswith("]@escalate=0.25")
    assert parse_cascade_option(",few_shot_random,threshold=0.6") == {"second": "few_shot_random", "threshold": 0.6}


@pytest.mark.parametrize(("settings", "message"), [
    ({"first": "fine_tune"}, "unknown cascade stage 'fine_tune'"),
    ({"first": "embed_classifier@m"}, "runs on no language model"),
    ({"first": "cascade"}, "unknown cascade stage"),
    ({"threshhold": 0.5}, "unknown cascade setting 'threshhold'"),
])
def test_bad_stage_specs_are_refused(settings, message):
    with pytest.raises(TunewiseError, match=message) as caught:
        build_cascade(card(), PlanOptions(extra={"cascade": settings}), ["m"])
    assert caught.value.where == "--cascade" and caught.value.fix


@pytest.mark.parametrize("text", ["embed_classifier", "a,b,threshold", "a,b,speed=3", "a,b,threshold=high"])
def test_bad_cascade_options_are_refused(text):
    with pytest.raises(TunewiseError) as caught:
        parse_cascade_option(text)
    assert caught.value.where == "--cascade" and caught.value.fix


# -- a bake-off on two tiny real models ------------------------------------------------------------


def write_tiny_task(folder: Path) -> Path:
    from tiny_models import LABELS as TINY_LABELS

    words = ["cancel", "book", "flight", "hotel", "weather", "translate", "paris", "today", "my", "please",
             "reservation", "hello", "city", "what", "is"]
    rows = [{"input": " ".join(words[(i * k) % len(words)] for k in (1, 3, 7)) + f" {i}",
             "output": TINY_LABELS[i % len(TINY_LABELS)]} for i in range(44)]
    for name, part in (("train", rows[:14]), ("validation", rows[14:30]), ("test", rows[30:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part))
    (folder / "task.yaml").write_text(
        "name: tiny-intents\nkind: classify\ninstruction: Classify the intent of the message.\n"
        "data: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}\n"
        f"labels: {json.dumps(TINY_LABELS)}\n")
    return folder / "task.yaml"


def test_a_bakeoff_runs_the_cascade_on_two_tiny_real_models(tiny_llama, tmp_path):
    import torch
    from tiny_models import write_gemma3, write_tokenizer

    from tunewise.models.local import LocalBackend
    from tunewise.store import open_store

    large = tmp_path / "tiny-gemma3"
    large.mkdir()
    write_tokenizer(large)
    write_gemma3(large)
    task = load_card(write_tiny_task(tmp_path))
    small_spec, large_spec = str(tiny_llama), str(large)
    options = PlanOptions(extra={"cascade": {"first": "zero_shot", "second": "few_shot_random",
                                             "target_escalation": 0.5}})
    arms = plan_arms(task, ["zero_shot", "few_shot_random", "cascade"], [small_spec, large_spec], shots=2,
                     options=PlanOptions(shots=2, extra=options.extra))
    cascade = arms[-1]
    assert cascade.name == f"cascade[zero_shot@{small_spec}->few_shot_random_k2@{large_spec}]@escalate=0.5"
    loaded: list[str] = []

    def load(spec: str):
        loaded.append(spec)
        return LocalBackend.load(spec, device="cpu", dtype="float32")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models gain nothing from a second thread on a busy machine
    store = open_store(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        result = run_bakeoff(task, arms, store=store, options=BakeoffOptions(), load_backend=load,
                             load_embedder=lambda: None)
        check_the_cascade_against_its_stages(store, result, task, cascade, small_spec, large_spec)
    finally:
        torch.set_num_threads(threads)
        store.close()
    assert sorted(loaded) == sorted([small_spec, large_spec])  # each model loaded once, shared by the stages
    by_name = {arm.name: arm for arm in result.arms}
    assert by_name[cascade.name].status == "finished" and by_name[cascade.name].n == 14
    assert by_name[cascade.name].prepare_cost_usd > 0  # the validation answers were paid for


def check_the_cascade_against_its_stages(store, result, task, cascade, small_spec, large_spec):
    """Per test example: the cascade answered as its first stage alone did, or (escalated, exactly
    when the first confidence is below the threshold) as its second stage alone did, paying both."""
    from tunewise.bakeoff.cache import CallCache
    from tunewise.task.load import load_task

    detail = store.get_run(result.run_id)
    rows = {arm.name: {row.example_index: row for row in store.predictions(arm.id)} for arm in detail.arms}
    dataset = load_task(task)
    cache = CallCache(store, task, dataset, embedder=BakeoffOptions().embedder)
    calls = store.cached_calls([cache.key(cascade, example) for example in dataset.test])
    extras = [calls[cache.key(cascade, example)].output["extra"] for example in dataset.test]
    escalated = [extra["escalated"] for extra in extras]
    assert 0 < sum(escalated) < len(escalated)  # some answers stayed with the small model, some went on

    small, large_rows = rows[f"zero_shot@{small_spec}"], rows[f"few_shot_random_k2@{large_spec}"]
    threshold = detail.artifacts[0].content["threshold"]
    for i, (extra, went_on) in enumerate(zip(extras, escalated, strict=True)):
        row = rows[cascade.name][i]
        assert extra["first_output"] == small[i].output  # the first stage answered as it does alone
        assert went_on == (extra["first_confidence"] < threshold)
        alone = large_rows[i] if went_on else small[i]
        assert row.output == alone.output
        tokens = small[i].tokens_in + (large_rows[i].tokens_in if went_on else 0)
        assert row.tokens_in == tokens  # an escalated answer pays for both prompts

    [artifact] = detail.artifacts
    assert artifact.kind == "cascade_sweep" and artifact.content["validation"]["n"] == 16
    assert artifact.content["validation"]["escalation_rate"] <= 0.5


# -- the bundled models on real data (slow) -----------------------------------------------------------


@pytest.mark.slow
def test_embed_classifier_in_front_of_smollm_on_a_clinc150_slice(shared_datasets, tmp_path):
    """The default pairing on real data: the cascade's accuracy is near or above the better stage
    alone while it escalates only part of the traffic."""
    from collections import defaultdict

    intents_wanted, per_split = 10, {"train": 15, "validation": 4, "test": 4}
    rows = {s: [json.loads(line) for line in (shared_datasets / "clinc150" / f"{s}.jsonl").read_text().splitlines()
                if line.strip()] for s in per_split}
    intents = sorted({row["output"] for row in rows["train"]} - {"oos"})[::15][:intents_wanted]
    for split, wanted in per_split.items():
        kept: dict[str, list[dict]] = defaultdict(list)
        for row in rows[split]:
            if row["output"] in intents and len(kept[row["output"]]) < wanted:
                kept[row["output"]].append(row)
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for i in intents for r in kept[i]))
    (tmp_path / "task.yaml").write_text(
        "name: clinc-slice\nkind: classify\ninstruction: Name the intent of the request.\n"
        "data: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}\n")
    task = load_card(tmp_path / "task.yaml")
    arms = plan_arms(task, ["embed_classifier", "few_shot_nearest", "cascade"], ["smollm2-135m-instruct"])
    from tunewise.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(task, arms, store=store)
        [artifact] = store.get_run(result.run_id).artifacts
    first, second, cascade = result.arms
    assert cascade.name == "cascade[embed_classifier->few_shot_nearest@smollm2-135m-instruct]"
    assert all(arm.status == "finished" and arm.n == 40 for arm in result.arms)
    rate = artifact.content["validation"]["escalation_rate"]
    assert rate < 1.0  # the embedding classifier keeps a share of the traffic
    assert cascade.estimate.value >= max(first.estimate.value, second.estimate.value) - 0.1
    # Tokens, unlike measured seconds, do not depend on the machine's load: the escalated share
    # of the few-shot prompts, on top of every input's embedding.
    assert cascade.tokens_in_mean < first.tokens_in_mean + second.tokens_in_mean
