"""Loading a task: all-or-nothing, deterministic splits, labels, hashes, example fields."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewise.errors import DataError, TaskCardError
from tunewise.task.card import TaskCard, load_card
from tunewise.task.load import file_sha256, load_task, split_position


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def make_card(tmp_path: Path, data: dict[str, Any], **fields: Any) -> TaskCard:
    card = {"name": "t", "kind": "classify", "instruction": "Label it.", "data": data, **fields}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(card), encoding="utf-8")
    return load_card(path)


def labelled(n: int, prefix: str = "text", labels: tuple[str, ...] = ("a", "b", "c")) -> list[dict[str, str]]:
    return [{"input": f"{prefix} number {i}", "output": labels[i % len(labels)]} for i in range(n)]


def membership(dataset) -> dict[str, str]:
    return {ex.input: split for split, examples in dataset.splits.items() for ex in examples}


# -- happy paths -------------------------------------------------------------------------------


def test_train_validation_test_files_load_as_they_are(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled(30))
    write_jsonl(tmp_path / "val.jsonl", labelled(6, "val"))
    write_jsonl(tmp_path / "test.jsonl", labelled(9, "test"))
    card = make_card(tmp_path, {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"})
    dataset = load_task(card)
    assert dataset.sizes() == {"train": 30, "validation": 6, "test": 9}
    assert dataset.labels == ["a", "b", "c"]
    first = dataset.train[0]
    assert (first.input, first.output, first.source, first.line) == ("text number 0", "a", "train.jsonl", 1)
    assert dataset.data_hashes["train"] == hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    assert set(dataset.data_hashes) == {"train", "validation", "test"}


def test_labels_are_inferred_from_train_only_and_sorted(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"input": "x", "output": "zeta"}, {"input": "y", "output": "alpha"}])
    write_jsonl(tmp_path / "test.jsonl", [{"input": "z", "output": "only_in_test"}])
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl", "split": {"validation": 0,
                                                                                        "train": 0.9, "test": 0.1}})
    assert load_task(card).labels == ["alpha", "zeta"]


def test_card_labels_win_over_inference(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled(6))
    write_jsonl(tmp_path / "test.jsonl", labelled(3, "t"))
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl"}, labels=["c", "b", "a", "d"])
    assert load_task(card).labels == ["c", "b", "a", "d"]


def test_other_kinds_have_no_labels(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled(6))
    write_jsonl(tmp_path / "test.jsonl", labelled(3, "t"))
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl"}, kind="generate")
    assert load_task(card).labels is None


def test_csv_data_loads_with_meta_from_other_columns(tmp_path):
    (tmp_path / "train.csv").write_text("input,output,source\n\"multi\nline\",a,web\nplain,b,mail\n")
    (tmp_path / "test.csv").write_text("input,output,source\nq,a,web\n")
    card = make_card(tmp_path, {"train": "train.csv", "test": "test.csv", "split": {"validation": 0, "train": 0.9,
                                                                                     "test": 0.1}})
    dataset = load_task(card)
    assert [(ex.input, ex.line, ex.meta) for ex in dataset.train] == [
        ("multi\nline", 2, {"source": "web"}), ("plain", 4, {"source": "mail"})]


def test_custom_field_names(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q1", "intent": "a", "id": 7}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "q2", "intent": "a", "id": 8}])
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl", "input_field": "question",
                                "output_field": "intent", "split": {"validation": 0, "train": 0.9, "test": 0.1}})
    [ex] = load_task(card).train
    assert (ex.input, ex.output, ex.meta) == ("q1", "a", {"id": 7})


# -- extract and qa normalisation --------------------------------------------------------------


def test_extract_outputs_as_string_or_object_become_the_same_compact_json(tmp_path):
    rows = [
        {"input": "one", "output": '{"b": 1, "a": {"z": "é", "y": [1, 2]}}'},
        {"input": "two", "output": {"b": 1, "a": {"z": "é", "y": [1, 2]}}},
    ]
    write_jsonl(tmp_path / "all.jsonl", rows)
    card = make_card(tmp_path, {"file": "all.jsonl", "split": {"train": 1.0, "validation": 0, "test": 0}},
                     kind="extract")
    outputs = {ex.input: ex.output for ex in load_task(card).train}
    assert outputs == {"one": '{"b":1,"a":{"z":"é","y":[1,2]}}', "two": '{"b":1,"a":{"z":"é","y":[1,2]}}'}


def test_qa_answers_become_references_with_the_output_first_when_missing(tmp_path):
    rows = [
        {"input": "q1", "output": "Paris", "answers": ["Paris", "paris, France"], "source": {"doc": "a.md"}},
        {"input": "q2", "output": "1990", "answers": ["in 1990"]},
        {"input": "q3", "output": "blue"},
    ]
    write_jsonl(tmp_path / "all.jsonl", rows)
    card = make_card(tmp_path, {"file": "all.jsonl", "split": {"train": 1.0, "validation": 0, "test": 0}}, kind="qa")
    by_input = {ex.input: ex for ex in load_task(card).train}
    assert by_input["q1"].references == ("Paris", "paris, France")
    assert by_input["q1"].meta == {"source": {"doc": "a.md"}}
    assert by_input["q2"].references == ("1990", "in 1990")
    assert by_input["q3"].references == () and by_input["q3"].answers == ("blue",)


def test_qa_answers_in_csv_are_a_json_list(tmp_path):
    (tmp_path / "all.csv").write_text('input,output,answers\nq1,Paris,"[""Paris"", ""City of Light""]"\nq2,x,\n')
    card = make_card(tmp_path, {"file": "all.csv", "split": {"train": 1.0, "validation": 0, "test": 0}}, kind="qa")
    by_input = {ex.input: ex for ex in load_task(card).train}
    assert by_input["q1"].references == ("Paris", "City of Light")
    assert by_input["q2"].references == ()


def test_answers_is_just_meta_for_other_kinds(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", [{"input": "q", "output": "a", "answers": ["a", "b"]}])
    card = make_card(tmp_path, {"file": "all.jsonl", "split": {"train": 1.0, "validation": 0, "test": 0}},
                     kind="generate")
    [ex] = load_task(card).train
    assert ex.references == () and ex.meta == {"answers": ["a", "b"]}


# -- failure paths ---------------------------------------------------------------------------


def test_a_missing_file_names_the_role_the_path_and_the_fix(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled(3))
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "missing/test.jsonl"})
    with pytest.raises(DataError, match=r"data file not found \(data.test\)") as caught:
        load_task(card)
    assert caught.value.where == str(tmp_path / "missing" / "test.jsonl")
    assert "data.test" in caught.value.fix


def test_bad_rows_stop_loading_naming_the_first_and_the_count(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "x"}\n{"input": ""}\nnot json\n')
    write_jsonl(tmp_path / "test.jsonl", [{"input": "b", "output": 5}])
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl"})
    with pytest.raises(DataError) as caught:
        load_task(card)
    error = caught.value
    assert error.where == "train.jsonl:2"
    assert error.message.startswith("3 bad rows") and "missing_field" in error.message
    assert error.fix == "run `tunewise check` to see every bad row"


def test_an_unsupported_data_file_type_is_a_data_error(tmp_path):
    (tmp_path / "train.json").write_text("[]")
    write_jsonl(tmp_path / "test.jsonl", labelled(2))
    card = make_card(tmp_path, {"train": "train.json", "test": "test.jsonl"})
    with pytest.raises(DataError, match="unsupported data file type"):
        load_task(card)


def test_a_missing_output_schema_file_is_a_card_error(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", [{"input": "q", "output": "{}"}])
    card = make_card(tmp_path, {"file": "all.jsonl"}, kind="extract", output_schema="schema.json")
    with pytest.raises(TaskCardError, match="output_schema file not found"):
        load_task(card)


# -- splits ------------------------------------------------------------------------------------


def test_split_position_is_uniform_in_unit_interval_and_seeded():
    positions = [split_position(0, f"text {i}") for i in range(2000)]
    assert all(0.0 <= p < 1.0 for p in positions)
    assert 0.45 < sum(positions) / len(positions) < 0.55
    assert split_position(0, "hello") == split_position(0, "hello")
    assert split_position(0, "hello") != split_position(1, "hello")
    assert split_position(0, "What's the time?") == split_position(0, "whats the  TIME")  # normalised


def test_one_file_splits_by_the_fractions(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", labelled(3000))
    card = make_card(tmp_path, {"file": "all.jsonl", "split": {"train": 0.6, "validation": 0.1, "test": 0.3}})
    sizes = load_task(card).sizes()
    assert sum(sizes.values()) == 3000
    assert abs(sizes["train"] - 1800) < 120 and abs(sizes["validation"] - 300) < 60 and abs(sizes["test"] - 900) < 90


def test_the_split_does_not_depend_on_row_order(tmp_path):
    rows = labelled(500)
    write_jsonl(tmp_path / "all.jsonl", rows)
    card = make_card(tmp_path, {"file": "all.jsonl"})
    before = membership(load_task(card))
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    write_jsonl(tmp_path / "all.jsonl", shuffled)
    assert membership(load_task(card)) == before


def test_appending_rows_never_moves_old_ones(tmp_path):
    rows = labelled(400)
    write_jsonl(tmp_path / "all.jsonl", rows)
    card = make_card(tmp_path, {"file": "all.jsonl"})
    before = membership(load_task(card))
    write_jsonl(tmp_path / "all.jsonl", rows + labelled(300, "appended"))
    after = membership(load_task(card))
    assert {text: after[text] for text in before} == before
    assert len(after) == 700


def test_identical_and_normalised_equal_inputs_share_a_split(tmp_path):
    rows = []
    for i in range(200):
        rows += [{"input": f"Question {i}?", "output": "a"}, {"input": f"question {i}", "output": "a"},
                 {"input": f"Question {i}?", "output": "b"}]
    write_jsonl(tmp_path / "all.jsonl", rows)
    dataset = load_task(make_card(tmp_path, {"file": "all.jsonl"}))
    split_of: dict[str, set[str]] = {}
    for split, examples in dataset.splits.items():
        for ex in examples:
            split_of.setdefault(ex.input.lower().rstrip("?"), set()).add(split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert {s for splits in split_of.values() for s in splits} == {"train", "validation", "test"}


def test_the_seed_changes_the_split(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", labelled(300))
    first = membership(load_task(make_card(tmp_path, {"file": "all.jsonl"})))
    second = membership(load_task(make_card(tmp_path, {"file": "all.jsonl", "split": {"seed": 7}})))
    assert first != second


def test_validation_is_carved_from_train_when_absent(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", labelled(2000))
    write_jsonl(tmp_path / "test.jsonl", labelled(50, "test"))
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl",
                                "split": {"train": 0.7, "validation": 0.2, "test": 0.1}})
    dataset = load_task(card)
    assert dataset.sizes()["test"] == 50
    assert dataset.sizes()["train"] + dataset.sizes()["validation"] == 2000
    assert abs(dataset.sizes()["validation"] - 400) < 60  # split.validation of train, not of the whole
    assert all(ex.source == "train.jsonl" for ex in dataset.validation)
    assert all(split_position(0, ex.input) < 0.2 for ex in dataset.validation)
    assert membership(load_task(card)) == membership(dataset)


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
