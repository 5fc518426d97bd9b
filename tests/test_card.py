"""The task card: validation, error messages with line numbers and fixes, schema export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunewise.errors import TaskCardError
from tunewise.task.card import Kind, TaskCard, load_card, parse_card

MINIMAL = """\
name: triage
kind: classify
instruction: Route the ticket.
data:
  train: train.jsonl
  test: test.jsonl
"""


def test_minimal_card_gets_defaults():
    card = parse_card(MINIMAL)
    assert card.kind is Kind.classify
    assert card.metric_name == "accuracy"
    assert card.data.split.seed == 0
    assert card.traffic.horizon_months == 12
    assert card.labels is None


@pytest.mark.parametrize(
    ("kind", "metric"), [("classify", "accuracy"), ("extract", "field_f1"), ("generate", "rouge_l"), ("qa", "token_f1")]
)
def test_default_metric_per_kind(kind, metric):
    assert parse_card(MINIMAL.replace("classify", kind)).metric_name == metric


def test_unknown_field_names_line_and_suggests_spelling():
    with pytest.raises(TaskCardError) as err:
        parse_card(MINIMAL + "lables: [a, b]\n", source=Path("cards/task.yaml"))
    text = str(err.value)
    assert "task.yaml:7" in text
    assert "unknown field `lables`" in text
    assert "did you mean `labels`" in text


def test_unknown_nested_field_is_located():
    with pytest.raises(TaskCardError) as err:
        parse_card(MINIMAL.replace("  test: test.jsonl", "  test: test.jsonl\n  tset: x.jsonl"))
    assert ":7" in str(err.value) and "data.tset" in str(err.value)


def test_missing_required_field():
    with pytest.raises(TaskCardError, match="required field `instruction` is missing"):
        parse_card(MINIMAL.replace("instruction: Route the ticket.\n", ""))


def test_yaml_syntax_error_has_line():
    with pytest.raises(TaskCardError, match=r"task card:4: not valid YAML: .*at line 3"):
        parse_card("name: x\nkind: classify\ninstruction: [unclosed\ndata: {}\n")


def test_card_must_be_a_mapping():
    with pytest.raises(TaskCardError, match="must be a YAML mapping"):
        parse_card("- just\n- a list\n")


def test_data_layout_needs_file_or_train_and_test():
    with pytest.raises(TaskCardError, match="give `file`"):
        parse_card(MINIMAL.replace("  test: test.jsonl\n", ""))
    with pytest.raises(TaskCardError, match="not both"):
        parse_card(MINIMAL.replace("  test: test.jsonl", "  test: test.jsonl\n  file: all.jsonl"))


def test_split_fractions_must_sum_to_one():
    card = MINIMAL.replace("data:\n  train: train.jsonl\n  test: test.jsonl", "data:\n  file: all.jsonl\n  split: {train: 0.9}")
    with pytest.raises(TaskCardError, match="must add up to 1, got 1.1"):
        parse_card(card)


def test_labels_only_for_classify_and_unique():
    with pytest.raises(TaskCardError, match="classify only"):
        parse_card(MINIMAL.replace("classify", "generate") + "labels: [a]\n")
    with pytest.raises(TaskCardError, match="listed twice"):
        parse_card(MINIMAL + "labels: [a, b, a]\n")
    with pytest.raises(TaskCardError, match="empty label list"):
        parse_card(MINIMAL + "labels: []\n")


def test_output_schema_must_be_a_valid_json_schema():
    extract = MINIMAL.replace("classify", "extract")
    card = parse_card(extract + "output_schema: {type: object, required: [intent]}\n")
    assert card.schema_dict() == {"type": "object", "required": ["intent"]}
    with pytest.raises(TaskCardError, match="not a valid JSON Schema"):
        parse_card(extract + "output_schema: {type: 12}\n")
    with pytest.raises(TaskCardError, match="extract only"):
        parse_card(MINIMAL + "output_schema: {type: object}\n")


def test_output_schema_from_file(tmp_path: Path):
    (tmp_path / "schema.json").write_text('{"type": "object", "required": ["a"]}')
    (tmp_path / "task.yaml").write_text(MINIMAL.replace("classify", "extract") + "output_schema: schema.json\n")
    card = load_card(tmp_path / "task.yaml")
    assert card.schema_dict() == {"type": "object", "required": ["a"]}

    (tmp_path / "schema.json").write_text('{"type": ')
    with pytest.raises(TaskCardError, match="schema.json:1"):
        card.schema_dict()
    (tmp_path / "schema.json").unlink()
    with pytest.raises(TaskCardError, match="output_schema file not found"):
        card.schema_dict()


def test_paths_resolve_against_the_card_folder(tmp_path: Path):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "task.yaml").write_text(MINIMAL)
    card = load_card(tmp_path / "cards" / "task.yaml")
    assert card.resolve(card.data.train) == (tmp_path / "cards" / "train.jsonl").resolve()
    assert card.source == tmp_path / "cards" / "task.yaml"


def test_missing_card_file_says_how_to_create_one(tmp_path: Path):
    with pytest.raises(TaskCardError, match="tunewise init"):
        load_card(tmp_path / "nope.yaml")


def test_negative_traffic_is_rejected_with_field_name():
    with pytest.raises(TaskCardError, match=r"traffic\.requests_per_month"):
        parse_card(MINIMAL + "traffic: {requests_per_month: -5}\n")


def test_to_yaml_round_trips():
    card = parse_card(MINIMAL + "labels: [a, b]\ngoals: {quality_bar: 0.9}\n")
    again = parse_card(card.to_yaml())
    assert again.model_dump() == card.model_dump()


def test_json_schema_documents_every_field():
    schema = TaskCard.model_json_schema()
    json.dumps(schema)  # serialisable for editors

    def walk(properties: dict, where: str):
        for name, prop in properties.items():
            assert prop.get("description"), f"{where}.{name} has no help text"

    walk(schema["properties"], "TaskCard")
    for name, definition in schema["$defs"].items():
        if "properties" in definition:
            walk(definition["properties"], name)
    assert schema["additionalProperties"] is False
