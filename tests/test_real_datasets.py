"""`tunewise check` and loading on the real public datasets in ../shared/datasets.

These rows are exactly as their authors published them (see the datasets README for
sources and licences), noise included, so they test the checks against real mess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewise.task.card import TaskCard, load_card
from tunewise.task.check import check_task
from tunewise.task.load import load_task


def card_for(tmp_path: Path, kind: str, data: dict[str, Path], **fields: Any) -> TaskCard:
    card = {"name": f"real-{kind}", "kind": kind, "instruction": "Do the task.",
            "data": {role: str(path) for role, path in data.items()}, **fields}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(card), encoding="utf-8")
    return load_card(path)


@pytest.fixture
def clinc(tmp_path, shared_datasets) -> TaskCard:
    folder = shared_datasets / "clinc150"
    return card_for(tmp_path, "classify", {"train": folder / "train.jsonl", "validation": folder / "validation.jsonl",
                                           "test": folder / "test.jsonl"})


@pytest.fixture
def snips(tmp_path, shared_datasets) -> TaskCard:
    folder = shared_datasets / "snips"
    return card_for(tmp_path, "extract", {"train": folder / "train.jsonl", "test": folder / "test.jsonl"})


@pytest.fixture
def squad(tmp_path, shared_datasets) -> TaskCard:
    folder = shared_datasets / "squad"
    return card_for(tmp_path, "qa", {"train": folder / "train.jsonl", "test": folder / "test.jsonl"},
                    knowledge=str(folder / "documents"))


def test_clinc150_loads_with_151_labels_inferred_from_train(clinc):
    dataset = load_task(clinc)
    assert dataset.sizes() == {"train": 15_100, "validation": 3_100, "test": 5_500}
    assert len(dataset.labels) == 151 and "oos" in dataset.labels
    assert dataset.labels == sorted(dataset.labels)


def test_clinc150_checks_clean_and_finds_its_leakage(clinc):
    report = check_task(clinc)
    print(f"CLINC150 check: {report.elapsed_s:.2f} s")
    assert report.ok and len(report.labels) == 151
    codes = {f.code: f for f in report.findings}
    assert codes["train_test_leakage"].count > 0  # paraphrases of train queries sit in test
    assert codes["conflicting_outputs"].count > 0
    readiness = {item.key: item.status for item in report.readiness}
    assert readiness == {"training_examples": "met", "task_definition": "met", "metric": "met",
                         "prompting_gap": "unknown"}


def test_snips_encoding_damage_is_found_with_line_numbers(snips, shared_datasets):
    report = check_task(snips)
    print(f"SNIPS check: {report.elapsed_s:.2f} s")
    assert report.ok
    damage = next(f for f in report.findings if f.code == "encoding_damage")
    assert damage.count >= 10
    train = (shared_datasets / "snips" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    for example in damage.examples:  # each points at the very line that holds the damaged text
        assert example["file"].endswith("train.jsonl")
        row = json.loads(train[example["line"] - 1])
        if example["field"] == "input":
            assert row["input"] == example["text"]
        else:
            assert json.loads(row["output"]) == json.loads(example["text"])
        assert example["suggested"] != example["text"]
    assert any("Ã" in example["text"] for example in damage.examples)
    definition = next(item for item in report.readiness if item.key == "task_definition")
    assert definition.status == "not_met" and definition.fix == "add output_schema"


def test_snips_outputs_are_normalised_json_objects(snips):
    dataset = load_task(snips)
    first = dataset.splits["train"][0] if dataset.train[0].line == 1 else dataset.validation[0]
    assert first.output.startswith('{"intent":"') and ", " not in first.output[:20]
    assert dataset.sizes()["train"] + dataset.sizes()["validation"] == 13_784


def test_squad_answers_become_references(squad):
    dataset = load_task(squad)
    by_line = {ex.line: ex for ex in dataset.train + dataset.validation}
    third = by_line[3]
    assert third.input == "What were the two forms of environmental determinism?"
    assert third.references == ("orientalism and tropicality", "orientalism and tropicality.")
    assert third.meta["source"] == {"document": "Imperialism.md", "paragraph": 20}
    assert all(ex.output in ex.answers for ex in dataset.test)


def test_squad_checks_clean(squad):
    report = check_task(squad)
    print(f"SQuAD check: {report.elapsed_s:.2f} s")
    assert report.ok and report.labels is None
    assert report.sizes["test"] == 5_285
