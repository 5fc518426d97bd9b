"""Arm settings from the command line: `--set KIND.FIELD=VALUE` and `--cascade`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from tunewise.bakeoff.plan import PlanOptions, parse_settings, plan_arms
from tunewise.cli import cli
from tunewise.errors import TunewiseError
from tunewise.task import load_card

TICKETS = EXAMPLES / "support-tickets" / "task.yaml"


def test_values_are_typed_and_dotted_fields_nest():
    settings = parse_settings([
        "lora.max_train_examples=1000",
        "lora.settings.epochs=2",
        "lora.settings.learning_rate=2e-4",
        "lora_curve.sizes=[50, 100]",
        "cascade.first=zero_shot@gemma3-270m",
        "rag.k=",
    ])
    assert settings == {
        "lora": {"max_train_examples": 1000, "settings": {"epochs": 2, "learning_rate": 2e-4}},
        "lora_curve": {"sizes": [50, 100]},
        "cascade": {"first": "zero_shot@gemma3-270m"},
        "rag": {"k": None},
    }


@pytest.mark.parametrize(("assignment", "message"), [
    ("lora", "cannot read the setting"),
    ("lora=3", "cannot read the setting"),
    ("lora.=3", "cannot read the setting"),
    ("fine_tune.epochs=3", "unknown arm kind 'fine_tune'"),
    ("lora.settings=[1, 2", "not valid YAML"),
])
def test_bad_assignments_name_the_option_and_the_fix(assignment, message):
    with pytest.raises(TunewiseError, match=message) as caught:
        parse_settings([assignment])
    assert caught.value.where.startswith("--set") and caught.value.fix


def test_a_value_cannot_be_both_a_value_and_a_group():
    with pytest.raises(TunewiseError, match="already set"):
        parse_settings(["lora.settings=3", "lora.settings.epochs=2"])


def test_settings_reach_the_planned_arms():
    card = load_card(TICKETS)
    extra = parse_settings(["lora.max_train_examples=500", "lora_curve.sizes=[50, 100]",
                            "embed_classifier.default_c=2.0"])
    arms = plan_arms(card, ["embed_classifier", "lora", "lora_curve"], ["a-model"], options=PlanOptions(extra=extra))
    by_name = {arm.name.split("@")[0]: arm for arm in arms}
    assert by_name["lora"].max_train_examples == 500
    assert by_name["lora_curve"].sizes == (50, 100)
    assert by_name["embed_classifier"].default_c == 2.0


def test_an_unknown_field_names_the_arm_kind():
    card = load_card(TICKETS)
    with pytest.raises(TunewiseError, match="lora: .*epochs") as caught:
        plan_arms(card, ["lora"], ["a-model"], options=PlanOptions(extra=parse_settings(["lora.epochs=2"])))
    assert caught.value.where == "--set lora.*"


def test_the_cli_reports_bad_settings_in_one_line_before_running_anything(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(cli, ["bakeoff", str(TICKETS), "--arms", "lora", "--set", "lora.epochs=2"])
    assert result.exit_code == 2 and "--set lora.*" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(cli, ["bakeoff", str(TICKETS), "--arms", "cascade", "--cascade", "zero_shot"])
    assert result.exit_code == 2 and "two stages" in result.stderr
    result = runner.invoke(cli, ["bakeoff", str(TICKETS), "--arms", "cascade", "--set", "cascade.flavour=x"])
    assert result.exit_code == 2 and "unknown cascade setting 'flavour'" in result.stderr


def test_kind_at_model_runs_that_kind_on_that_model_only():
    card = load_card(TICKETS)
    arms = plan_arms(card, ["zero_shot", "lora@small", "embed_classifier", "lora@openai:m@http://h/v1"],
                     ["small", "large"])
    assert [arm.name for arm in arms] == [
        "embed_classifier", "zero_shot@small", "zero_shot@large", "lora@small", "lora@openai:m@http://h/v1"]
    assert [arm.name for arm in plan_arms(card, ["lora@large", "lora"], ["small", "large"])] == [
        "lora@large", "lora@small"]


def test_kind_at_model_is_refused_for_an_arm_without_a_model():
    with pytest.raises(TunewiseError, match="runs on no language model") as caught:
        plan_arms(load_card(TICKETS), ["embed_classifier@small"], ["small"])
    assert caught.value.where == "--arms"
