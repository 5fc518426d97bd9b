"""The bundled example (examples/support-tickets): its data is reproducible, valid and
varied enough to train and prompt on, and carries the noise `tunewise check` should find."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import pytest
from conftest import EXAMPLES

from tunewise.task.card import Kind, load_card

HERE = EXAMPLES / "support-tickets"
FILES = ("tickets.jsonl", "tickets-extract.jsonl")


def _rows(name: str) -> list[dict]:
    with (HERE / "data" / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def tickets() -> list[dict]:
    return _rows("tickets.jsonl")


@pytest.fixture(scope="module")
def extracts() -> list[dict]:
    return _rows("tickets-extract.jsonl")


def test_regenerating_reproduces_the_committed_files(tmp_path: Path):
    # A fresh process with its own hash seed: set or dict-order accidents would show here.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, str(HERE / "generate.py"), "--out", str(tmp_path)], check=True, env=env,
                   capture_output=True)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (HERE / "data" / name).read_bytes(), name


def test_both_cards_parse_and_agree_with_the_data(tickets: list[dict]):
    classify = load_card(HERE / "task.yaml")
    extract = load_card(HERE / "task-extract.yaml")
    assert classify.kind is Kind.classify and extract.kind is Kind.extract
    assert classify.resolve(classify.data.file).is_file() and extract.resolve(extract.data.file).is_file()
    assert sorted({t["output"] for t in tickets}) == sorted(classify.labels)
    schema = extract.schema_dict()
    assert schema["properties"]["queue"]["enum"] == classify.labels
    assert classify.data.split == extract.data.split  # a ticket lands in the same split for both tasks


def test_every_extract_output_satisfies_the_schema(tickets: list[dict], extracts: list[dict]):
    schema = load_card(HERE / "task-extract.yaml").schema_dict()
    validator = jsonschema.Draft202012Validator(schema)
    assert len(extracts) == len(tickets)
    for i, (ticket, row) in enumerate(zip(tickets, extracts, strict=True), start=1):
        assert set(row) == {"input", "output"} and isinstance(row["output"], str)
        fields = json.loads(row["output"])
        errors = [e.message for e in validator.iter_errors(fields)]
        assert not errors, f"line {i}: {errors}"
        assert row["input"] == ticket["input"] and fields["queue"] == ticket["output"], f"line {i}"


def test_labels_are_imbalanced_but_every_queue_is_learnable(tickets: list[dict]):
    counts = Counter(t["output"] for t in tickets)
    assert len(counts) == 8
    assert min(counts.values()) >= 40, counts
    assert max(counts.values()) < 0.30 * len(tickets), counts
    assert counts["billing"] > counts["security_concern"] * 3  # like real traffic


def test_about_1500_varied_rows(tickets: list[dict], extracts: list[dict]):
    assert 1400 <= len(tickets) <= 1600
    lengths = sorted(len(t["input"]) for t in tickets)
    assert lengths[0] < 40 and lengths[-1] > 250  # one-liners to short paragraphs
    fields = [json.loads(r["output"]) for r in extracts]
    for key in ("product", "order_id", "customer_name"):
        present = sum(f[key] is not None for f in fields)
        assert 0.1 * len(fields) < present < 0.9 * len(fields), key  # both present and absent
    assert {f["urgency"] for f in fields} == {"low", "normal", "high"}


def test_the_noise_check_should_find_is_there(tickets: list[dict]):
    counts = Counter(t["input"] for t in tickets)
    labels = defaultdict(set)
    for t in tickets:
        labels[t["input"]].add(t["output"])
    conflicts = [text for text, seen in labels.items() if len(seen) > 1]
    exact = [text for text, n in counts.items() if n > 1 and len(labels[text]) == 1]
    assert 2 <= len(conflicts) <= 5
    assert 3 <= len(exact) <= 15
    assert all(t["input"].strip() and t["output"] for t in tickets)  # noisy, never invalid
