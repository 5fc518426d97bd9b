"""The distillation arm: choosing the teacher, the inputs it labels, the filters, the report, and
a run end to end that fine-tunes a tiny real student on a teacher's labels.

Teacher answers come from the real prompting arms (zero-shot, few-shot) on ScriptedBackend, so
each test knows the teacher's labels and confidences; the end-to-end tests train LoRA on the
tiny random Llama (tests/tiny_models.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from tunewise.arms.base import ArmContext, Candidate, Prediction
from tunewise.arms.distill import (
    DISAGREEMENT,
    EMPTY,
    INVALID,
    LOW_CONFIDENCE,
    Distill,
    choose_teacher,
    drop_reasons,
    label_pool,
    label_quality,
    pool_inputs,
    same_answer,
    sampled_agreement,
    sampling_unavailable,
    teacher_arm,
)
from tunewise.arms.few_shot import FewShot
from tunewise.arms.zero_shot import ZeroShot
from tunewise.errors import DataError, TunewiseError
from tunewise.models.base import Chat, GenerateOptions, Generation, Usage
from tunewise.models.scripted import ScriptedBackend
from tunewise.scoring import resolve_metric
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Dataset, Example

LABELS = ["billing", "shipping", "login"]
TRAIN = [("charged twice", "billing"), ("wrong invoice", "billing"), ("parcel late", "shipping"),
         ("parcel lost", "shipping"), ("cannot log in", "login"), ("password reset", "login"),
         ("charged twice", "billing")]  # a duplicate input: labelled once
TEST = [("refund my charge", "billing"), ("parcel lost", "shipping")]  # "parcel lost" is also a training input
SCHEMA = {"type": "object", "required": ["queue"], "properties": {"queue": {"enum": LABELS}},
          "additionalProperties": False}


def examples(rows, source="t.jsonl") -> list[Example]:
    return [Example(input=i, output=o, source=source, line=n) for n, (i, o) in enumerate(rows, 1)]


def make_dataset(kind: str = "classify", train=TRAIN, test=TEST, base_dir: Path | None = None) -> Dataset:
    fields = {"labels": LABELS} if kind == "classify" else {"output_schema": SCHEMA} if kind == "extract" else {}
    card = TaskCard.model_validate({"name": "t", "kind": kind, "instruction": "Route the ticket.",
                                    "data": {"file": "t.jsonl"}, **fields})
    if base_dir is not None:
        card._base_dir = base_dir
    return Dataset(card, {"train": examples(train), "validation": examples(train[:2]), "test": examples(test)},
                   LABELS if kind == "classify" else None, {})


def context_for(dataset: Dataset, backends: dict, **kwargs) -> ArmContext:
    return ArmContext(dataset=dataset, backend=lambda spec: backends[spec], embedder=lambda: None, **kwargs)


def confident_scores(table: dict[str, dict[str, float]]):
    """Option scores per input: the label log-probabilities the scripted teacher gives."""
    def score(chat: Chat, options: Sequence[str]) -> list[float]:
        given = table[chat[-1].content]
        return [given.get(option, -math.inf) for option in options]
    return score


# -- the teacher ------------------------------------------------------------------------------------


def test_a_teacher_is_an_arm_spec_or_a_model_spec():
    card = make_dataset().card
    nearest = teacher_arm("few_shot_nearest@gemma3-270m", card)
    assert isinstance(nearest, FewShot) and nearest.selection == "nearest" and nearest.model == "gemma3-270m"
    remote = teacher_arm("openai:gpt-4o-mini@http://localhost:9/v1", card)  # a bare API model teaches by few-shot
    assert remote.name == "few_shot_nearest@openai:gpt-4o-mini@http://localhost:9/v1"
    assert teacher_arm("zero_shot@openai:m", card).name == "zero_shot@openai:m"


@pytest.mark.parametrize("spec, message", [
    ("distill@smollm2-135m-instruct", "cannot be the teacher"),
    ("cascade", "cannot be the teacher"),
    ("zero_shot", "names no model"),
    ("embed_classifier@gemma3-270m", "runs on no language model"),
    ("", "empty"),
])
def test_bad_teacher_specs_are_refused_with_the_fix(spec, message):
    with pytest.raises(TunewiseError, match=message) as caught:
        teacher_arm(spec, make_dataset().card)
    assert caught.value.where == "distill.teacher" and caught.value.fix


def test_a_teacher_arm_that_does_not_fit_the_task_kind_is_refused():
    with pytest.raises(TunewiseError, match="does not apply to a extract task"):
        teacher_arm("embed_classifier", make_dataset("extract").card)


def test_without_a_larger_model_to_teach_the_student_it_says_to_name_one():
    card = make_dataset().card
    with pytest.raises(TunewiseError, match="no model larger than the student") as caught:
        choose_teacher(None, card, "gemma3-270m")
    assert "teacher=" in caught.value.fix


# -- the inputs ---------------------------------------------------------------------------------------


def test_training_inputs_are_labelled_with_their_labels_hidden_and_test_inputs_left_out():
    pool = pool_inputs(make_dataset(), None, None, seed=0)
    texts = [item.example.input for item in pool.items]
    assert "parcel lost" not in texts  # also a test input
    assert texts.count("charged twice") == 1  # one teacher call per distinct input
    assert len(texts) == 5 and pool.available == 7 and pool.left_out == {"test": 1, "validation": 0}
    assert all(item.example.output == "" and item.example.references == () for item in pool.items)
    assert {item.example.input: item.gold for item in pool.items}["cannot log in"] == ("login",)
    assert pool.source == "training inputs, labels hidden"


def test_max_inputs_takes_a_seeded_sample():
    dataset = make_dataset(train=[(f"ticket {i}", LABELS[i % 3]) for i in range(100)])
    first = pool_inputs(dataset, None, 10, seed=1)
    assert len(first.items) == 10
    assert [i.example.input for i in first.items] == [i.example.input for i in pool_inputs(dataset, None, 10, 1).items]
    assert [i.example.input for i in first.items] != [i.example.input for i in pool_inputs(dataset, None, 10, 2).items]


def test_a_pool_file_gives_the_inputs_and_any_output_column_as_hidden_gold(tmp_path: Path):
    (tmp_path / "pool.jsonl").write_text(
        json.dumps({"input": "invoice is wrong", "output": "billing"}) + "\n"
        + json.dumps({"input": "where is my box"}) + "\n" + json.dumps({"input": "refund my charge"}) + "\n")
    (tmp_path / "pool.txt").write_text("first input\n\n  second input  \n")
    dataset = make_dataset(base_dir=tmp_path)
    pool = pool_inputs(dataset, "pool.jsonl", None, seed=0)
    assert [(i.example.input, i.gold) for i in pool.items] == [("invoice is wrong", ("billing",)),
                                                               ("where is my box", None)]
    assert pool.left_out["test"] == 1 and pool.source == "pool file pool.jsonl"
    text = pool_inputs(dataset, "pool.txt", None, seed=0)
    assert [(i.example.input, i.example.line) for i in text.items] == [("first input", 1), ("second input", 3)]


@pytest.mark.parametrize("content, message, where", [
    (None, "pool file was not found", "missing.jsonl"),
    ('{"input": "ok"}\n{"input": \n', "invalid_json", "pool.jsonl:2"),
    ('{"text": "no input column"}\n', "no text in the input column 'input'", "pool.jsonl:1"),
])
def test_a_bad_pool_file_is_refused_with_its_line(tmp_path: Path, content, message, where):
    name = "missing.jsonl" if content is None else "pool.jsonl"
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        pool_inputs(make_dataset(base_dir=tmp_path), name, None, seed=0)
    assert caught.value.where.endswith(where) and caught.value.fix


# -- labelling and filters ------------------------------------------------------------------------------


def test_the_teacher_sees_inputs_never_gold_labels_and_its_confidence_filters_them():
    dataset = make_dataset()
    pool = pool_inputs(dataset, None, None, seed=0)
    scores = {"charged twice": {"billing": 0.0, "shipping": -5.0}, "wrong invoice": {"billing": 0.0, "login": 0.0},
              "parcel late": {"shipping": 0.0}, "cannot log in": {"login": -0.1, "billing": -4.0},
              "password reset": {"billing": 0.0, "login": -3.0}}  # the teacher is wrong on the last one
    backend = ScriptedBackend(option_scores=confident_scores(scores))
    teacher = ZeroShot(model="teacher").prepare(context_for(dataset, {"teacher": backend}))
    predictions, seconds, stopped = label_pool(teacher, pool.items)
    assert stopped is None and seconds >= 0 and len(predictions) == 5
    assert [chat[-1].content for chat in backend.calls] == [i.example.input for i in pool.items]
    assert not any(m.role == "assistant" for chat in backend.calls for m in chat)  # no gold in any prompt
    dropped = drop_reasons(Kind.classify, predictions, [None] * 5, min_confidence=0.6, min_agreement=0.5)
    by_input = dict(zip([i.example.input for i in pool.items], dropped))
    assert by_input == {"charged twice": None, "wrong invoice": LOW_CONFIDENCE, "parcel late": None,
                        "cannot log in": None, "password reset": None}
    metric = resolve_metric("accuracy", Kind.classify, labels=LABELS)
    quality = label_quality(metric, predictions, pool.items, dropped)
    assert quality["n_with_gold"] == 5
    # Wrong on "password reset" only (the 50/50 tie on "wrong invoice" goes to the first label, billing).
    assert quality["all"] == pytest.approx(4 / 5)
    assert quality["kept"] == pytest.approx(3 / 4)
    assert quality["dropped"] == pytest.approx(1.0)


def test_extract_keeps_schema_valid_json_only_and_never_an_empty_answer():
    usage = Usage(1, 1, 0.0, 0.0)
    answers = [Prediction('{"queue":"billing"}', usage), Prediction('{"queue":"nope"}', usage, valid=False),
               Prediction("", usage, valid=False), Prediction('{"queue":"login"}', usage)]
    assert drop_reasons(Kind.extract, answers, [None, None, None, 0.2], min_confidence=0.5,
                        min_agreement=0.5) == [None, INVALID, EMPTY, DISAGREEMENT]


def test_a_teacher_label_is_dropped_when_too_few_sampled_answers_agree_with_it():
    dataset = make_dataset("qa")

    class Sampling(ScriptedBackend):
        """Greedy answers the scripted reply; a sample at seed s answers 'other' for inputs
        whose index is below s (so agreement falls with the input's index)."""

        def generate(self, prompts, options: GenerateOptions | None = None) -> list[Generation]:
            options = options or GenerateOptions()
            done = super().generate(prompts, options)
            if options.temperature == 0:
                return done
            return [Generation("other" if int(p[-1].content.split()[-1]) < options.seed else g.text, g.usage)
                    for p, g in zip(prompts, done)]

    backend = Sampling(default="paris")
    teacher = ZeroShot(model="t").prepare(context_for(dataset, {"t": backend}))
    batch = [Example(f"question {i}", "", "p", i) for i in range(4)]
    greedy = teacher.predict(batch)
    shares, usage = sampled_agreement(teacher, batch, greedy, samples=3, temperature=0.7, seed=0)
    # Samples use seeds 1, 2, 3: input 0 disagrees in all three, input 3 in none.
    assert shares == [0.0, pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert usage.tokens_in > 0
    dropped = drop_reasons(Kind.qa, greedy, shares, min_confidence=0.5, min_agreement=0.5)
    assert dropped == [DISAGREEMENT, DISAGREEMENT, None, None]


def test_sampling_is_unavailable_for_label_scores_and_for_arms_that_do_not_prompt():
    class Fixed(Candidate):
        config, model_id = {}, "fixed"

        def predict(self, batch):
            return [Prediction("x", Usage(0, 0, 0, 0)) for _ in batch]

    assert "confidence filter" in sampling_unavailable(Fixed(), Kind.classify)
    assert "not a prompting arm" in sampling_unavailable(Fixed(), Kind.extract)
    dataset = make_dataset("extract")
    prompting = ZeroShot(model="t").prepare(context_for(dataset, {"t": ScriptedBackend(default="{}")}))
    assert sampling_unavailable(prompting, Kind.extract) is None


def test_answers_agree_on_json_values_and_normalised_text():
    usage = Usage(0, 0, 0, 0)
    assert same_answer(Prediction('{"a":1,"b":2}', usage), Prediction('{"b":2,"a":1}', usage), Kind.extract)
    assert not same_answer(Prediction('{"a":1}', usage), Prediction('{"a":2}', usage), Kind.extract)
    assert not same_answer(Prediction("{", usage, valid=False), Prediction("{", usage, valid=False), Kind.extract)
    assert same_answer(Prediction("The Eiffel tower.", usage), Prediction("eiffel Tower", usage), Kind.qa)


def test_labelling_stops_at_the_deadline_after_one_batch():
    dataset = make_dataset(train=[(f"ticket {i}", "billing") for i in range(40)])
    pool = pool_inputs(dataset, None, None, seed=0)
    teacher = ZeroShot(model="t").prepare(context_for(dataset, {"t": ScriptedBackend(default="billing")}))
    predictions, _, stopped = label_pool(teacher, pool.items, deadline=0.0)  # long past
    assert len(predictions) == teacher.batch_size() and "after 16 of 40 inputs" in stopped


# -- the arm's settings and planning -------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"min_confidence": 1.5}, "min_confidence must be between 0 and 1"),
    ({"min_agreement": -0.1}, "min_agreement must be between 0 and 1"),
    ({"samples": -1}, "samples must be 0 or more"),
    ({"max_inputs": 0}, "max_inputs must be a positive integer"),
    ({"temperature": 0.0}, "temperature must be above 0"),
])
def test_bad_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(TunewiseError, match=message) as caught:
        Distill(**settings)
    assert caught.value.fix


def test_where_it_does_not_apply_it_says_why():
    assert "remote model" in Distill(model="openai:gpt-4o-mini").applies(make_dataset())
    assert "no inputs to label" in Distill().applies(make_dataset(train=[]))
    assert Distill().applies(make_dataset()) is None
    assert Distill().name == "distill@smollm2-135m-instruct"
    assert Distill(teacher="zero_shot@openai:m").name == "distill[zero_shot@openai:m]@smollm2-135m-instruct"


def test_the_default_teacher_is_the_best_fine_tune_of_a_larger_model_in_this_bakeoff(store):
    card = make_dataset().card
    run_id = store.start_run(card, kind="bakeoff", data_hashes={}, seeds={}, models={}, config={})
    for name, value in (("lora@gemma3-270m", 0.80), ("lora@smollm2-135m-instruct", 0.90),  # not larger
                        ("zero_shot@gemma3-270m", 0.95), ("lora@/models/big-folder", 0.70)):  # not fine-tuned
        arm_id = store.add_arm(run_id, name, name.partition("@")[2])
        store.finish_arm(arm_id, {"estimate": {"value": value, "low": value - 0.1, "high": value + 0.1}})
    context = context_for(make_dataset(), {}, store=store, run_id=run_id)
    teacher = choose_teacher(None, card, "smollm2-135m-instruct", context, {"lora": {"max_train_examples": 500}})
    assert teacher.spec == "lora@gemma3-270m" and teacher.source == "the best fine-tuned model of this bake-off"
    assert teacher.arm.max_train_examples == 500  # built with the plan's settings for its kind
    alone = choose_teacher(None, card, "smollm2-135m-instruct")  # no bake-off to pick from
    assert alone.spec == "lora@gemma3-270m" and "largest local model" in alone.source
    assert "no local model larger" in Distill(model="gemma3-270m").applies(make_dataset())


# -- end to end on a tiny real model ---------------------------------------------------------------------

def test_a_bakeoff_distills_a_fine_tuned_teacher_into_a_tiny_student(tiny_llama, tmp_path):
    from tiny_training import TINY_ARM_SETTINGS, run_tiny_bakeoff

    spec = str(tiny_llama)
    result, detail = run_tiny_bakeoff(tmp_path, spec, {
        "lora": {"settings": TINY_ARM_SETTINGS},
        "distill": {"teacher": f"lora@{spec}", "settings": TINY_ARM_SETTINGS, "max_inputs": 40, "min_confidence": 0.3},
    })
    lora, distill = result.arms
    assert distill.name == f"distill[lora@{spec}]@{spec}" and distill.status == "finished" and distill.n == 14
    [artifact] = [a for a in detail.artifacts if a.kind == "distillation"]
    report = artifact.content
    assert artifact.arm_id is not None and report["arm"] == distill.name
    assert report["teacher"] == {"spec": f"lora@{spec}", "chosen": "named", "model_id": report["teacher"]["model_id"]}
    assert report["inputs"]["source"] == "training inputs, labels hidden"
    assert report["inputs"]["labelled"] == 40 and report["inputs"]["available"] == 84
    labels = report["labels"]
    assert 0 < labels["kept"] <= 40 and labels["kept_share"] == pytest.approx(labels["kept"] / 40)
    assert sum(labels["dropped"].values()) == 40 - labels["kept"]
    assert set(labels["dropped"]) <= {LOW_CONFIDENCE}
    gold = labels["accuracy_against_gold"]
    assert gold["n_with_gold"] == 40 and 0 <= gold["all"] <= 1 and "seen these inputs' gold labels" in gold["caveat"]
    cost = report["teacher_cost"]
    assert cost["labelling"]["tokens_in"] > 0 and cost["labelling"]["seconds"] > 0 and cost["labelling"]["usd"] > 0
    assert cost["preparing"]["seconds"] > 0  # the teacher's LoRA training (found finished: its recorded time)
    assert report["student"]["pairs"] == labels["kept"] and report["student"]["steps"] > 0
    quality = report["quality"]
    assert quality["n"] == 14 and quality["metric"] == "accuracy"
    for side in ("student", "teacher"):
        assert quality[side]["low"] <= quality[side]["value"] <= quality[side]["high"]
    # The teacher is the bake-off's own lora arm: its adapter reused, its test answers reused.
    assert quality["teacher"]["scored"] == "this bake-off's answers"
    assert quality["teacher"]["value"] == pytest.approx(lora.estimate.value)
    assert quality["student"]["value"] == pytest.approx(distill.estimate.value)
    difference = quality["student_minus_teacher"]
    assert difference["difference"] == pytest.approx(quality["student"]["value"] - quality["teacher"]["value"])
    assert distill.prepare_cost_usd > 0 and distill.prepare_s > 0
    [student_adapter] = [a for a in detail.artifacts if a.kind == "lora_adapter" and a.name.startswith(distill.name)]
    assert student_adapter.name.endswith(report["student"]["adapter"]) and student_adapter.sha256
