"""`check_task`: every bad row with its reason and line, the report, and the readiness checklist."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewise.errors import DataError, MetricError, TaskCardError
from tunewise.task import findings as F
from tunewise.task.card import TaskCard, load_card
from tunewise.task.check import check_task
from tunewise.task.load import load_task
from tunewise.task.quality import TrainingCount
from tunewise.task.readiness import (
    PromptingGap,
    metric_item,
    prompting_gap_item,
    readiness,
    task_definition_item,
    training_examples_item,
)

GOOD = {"input": "a fine input", "output": "a"}


def make_card(tmp_path: Path, data: dict[str, Any] | None = None, **fields: Any) -> TaskCard:
    card = {"name": "t", "kind": "classify", "instruction": "Do it.",
            "data": data or {"train": "train.jsonl", "test": "test.jsonl"}, **fields}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(card), encoding="utf-8")
    if not (tmp_path / "test.jsonl").exists():
        (tmp_path / "test.jsonl").write_text(json.dumps(GOOD) + "\n")
    return load_card(path)


def bad_row_errors(tmp_path: Path, bad_line: bytes, suffix: str = ".jsonl", header: bytes = b"", good: bytes = b"",
                   **card_fields: Any) -> list[tuple[str, int, str]]:
    """Check a train file of: [header], good row, blank line, the bad row, good row."""
    good = good or json.dumps(GOOD).encode()
    lines = ([header] if header else []) + [good, b"", bad_line, good]
    name = f"train{suffix}"
    (tmp_path / name).write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "test.jsonl").write_bytes((good if suffix == ".jsonl" else json.dumps(GOOD).encode()) + b"\n")
    card = make_card(tmp_path, {"train": name, "test": "test.jsonl", **card_fields.pop("data", {})}, **card_fields)
    report = check_task(card)
    return [(e.file, e.line, e.reason) for e in report.row_errors]


# -- every reason code, at its exact line --------------------------------------------------------


@pytest.mark.parametrize("bad, reason, card_fields", [
    (b'{"input": "x", "output": "a"', F.INVALID_JSON, {}),
    (b'["x", "a"]', F.NOT_AN_OBJECT, {}),
    (b'{"input": "x", "input": "y", "output": "a"}', F.DUPLICATE_KEY, {}),
    ('{"input": "Espa\xf1a", "output": "a"}'.encode("latin-1"), F.ENCODING_ERROR, {}),
    (b'{"text": "x", "output": "a"}', F.MISSING_FIELD, {}),
    (b'{"input": "x"}', F.MISSING_FIELD, {}),
    (b'{"input": 42, "output": "a"}', F.NOT_A_STRING, {}),
    (b'{"input": null, "output": "a"}', F.NOT_A_STRING, {}),
    (b'{"input": "x", "output": ["a"]}', F.NOT_A_STRING, {}),
    (b'{"input": "", "output": "a"}', F.EMPTY_INPUT, {}),
    (b'{"input": " \\n\\t", "output": "a"}', F.EMPTY_INPUT, {}),
    (b'{"input": "x", "output": "  "}', F.EMPTY_OUTPUT, {}),
    (b'{"input": "' + b"x" * 51 + b'", "output": "a"}', F.TOO_LONG, {"data": {"max_input_chars": 50}}),
    (b'{"input": "x", "output": "' + b"y" * 21 + b'"}', F.TOO_LONG,
     {"kind": "generate", "data": {"max_output_chars": 20}}),
    (b'{"input": "x", "output": "c"}', F.UNKNOWN_LABEL, {"labels": ["a", "b"]}),
    (b'{"input": "x", "output": "{not json"}', F.INVALID_OUTPUT_JSON, {"kind": "extract"}),
    (b'{"input": "x", "output": "[1, 2]"}', F.INVALID_OUTPUT_JSON, {"kind": "extract"}),
    (b'{"input": "x", "output": 3}', F.INVALID_OUTPUT_JSON, {"kind": "extract"}),
    (b'{"input": "x", "output": "{\\"a\\": NaN}"}', F.INVALID_OUTPUT_JSON, {"kind": "extract"}),
    (b'{"input": "x", "output": "{\\"a\\": 1, \\"a\\": 2}"}', F.INVALID_OUTPUT_JSON, {"kind": "extract"}),
    (b'{"input": "x", "output": {"intent": 7}}', F.SCHEMA_VIOLATION,
     {"kind": "extract", "output_schema": {"type": "object", "required": ["intent"],
                                           "properties": {"intent": {"type": "string"}}}}),
    (b'{"input": "x", "output": "{}"}', F.SCHEMA_VIOLATION,
     {"kind": "extract", "output_schema": {"type": "object", "required": ["intent"]}}),
    (b'{"input": "x", "output": "a", "answers": "a"}', F.INVALID_ANSWERS, {"kind": "qa"}),
    (b'{"input": "x", "output": "a", "answers": ["a", 1]}', F.INVALID_ANSWERS, {"kind": "qa"}),
    (b'{"input": "x", "output": "a", "answers": [""]}', F.INVALID_ANSWERS, {"kind": "qa"}),
])
def test_each_row_reason_is_reported_at_its_exact_line(tmp_path, bad, reason, card_fields):
    good = b'{"input": "fine", "output": "{\\"intent\\": \\"a\\"}"}' if card_fields.get("kind") == "extract" else b""
    assert bad_row_errors(tmp_path, bad, good=good, **card_fields) == [("train.jsonl", 3, reason)]


@pytest.mark.parametrize("bad, reason", [
    (b'"open quote,a', F.INVALID_CSV),
    (b'"x"y,a', F.INVALID_CSV),
    (b"one,two,three", F.WRONG_COLUMN_COUNT),
    (b"caf\xe9,a", F.ENCODING_ERROR),
    (b",a", F.EMPTY_INPUT),
    (b"x,c", F.UNKNOWN_LABEL),
])
def test_csv_reasons_are_reported_at_their_exact_line(tmp_path, bad, reason):
    errors = bad_row_errors(tmp_path, bad, ".csv", header=b"input,output", good=b"fine,a", labels=["a", "b"])
    assert errors == [("train.csv", 4, reason)]


def test_duplicate_column_and_empty_file_reasons(tmp_path):
    (tmp_path / "train.csv").write_text("input,output,output\nx,a,b\n")
    (tmp_path / "empty.jsonl").write_text("")
    card = make_card(tmp_path, {"train": "train.csv", "validation": "empty.jsonl", "test": "test.jsonl"})
    errors = [(e.file, e.line, e.reason) for e in check_task(card).row_errors]
    assert errors == [("train.csv", 1, F.DUPLICATE_COLUMN), ("empty.jsonl", 1, F.EMPTY_FILE)]


def test_every_reason_code_is_documented():
    codes = {value for name, value in vars(F).items() if name.isupper() and isinstance(value, str)}
    assert codes == set(F.REASONS)


def test_messages_say_what_is_wrong(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"inptu": "x", "output": "a"}\n{"input": "x", "output": "b-"}\n')
    card = make_card(tmp_path, labels=["a", "b"])
    first, second = check_task(card).row_errors
    assert "'input'" in first.message and "did you mean 'inptu'" in first.message
    assert "'b-'" in second.message and "did you mean 'b'" in second.message


# -- the 10,000 bad lines ------------------------------------------------------------------------


def test_ten_thousand_bad_lines_give_ten_thousand_numbered_errors(tmp_path):
    kinds = [b'{"input": ""}', b"not json", b'{"input": "x", "output": 1}', b"[]", b'{"input": "x", "output": "?"}']
    (tmp_path / "train.jsonl").write_bytes(b"\n".join(kinds[i % len(kinds)] for i in range(10_000)) + b"\n")
    card = make_card(tmp_path, labels=["a"])
    report = check_task(card)
    assert len(report.row_errors) == 10_000
    assert [e.line for e in report.row_errors] == list(range(1, 10_001))
    assert report.error_counts() == {F.MISSING_FIELD: 2000, F.INVALID_JSON: 2000, F.NOT_A_STRING: 2000,
                                     F.NOT_AN_OBJECT: 2000, F.UNKNOWN_LABEL: 2000}
    as_json = json.loads(json.dumps(report.to_dict()))
    assert len(as_json["row_errors"]) == 10_000 and as_json["ok"] is False
    with pytest.raises(DataError, match="10,000 bad rows"):
        load_task(card)


# -- the report ---------------------------------------------------------------------------------


def test_a_clean_task_reports_sizes_labels_hashes_and_findings(tmp_path):
    rows = [{"input": f"request number {i} about {w}", "output": w} for i in range(40) for w in ("x", "y")]
    rows.append(rows[0])  # one duplicate copy
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    card = make_card(tmp_path, {"train": "train.jsonl", "test": "test.jsonl", "split": {"validation": 0.0,
                                                                                         "train": 0.9, "test": 0.1}})
    report = check_task(card)
    assert report.ok and report.row_errors == [] and report.notes == []
    assert report.sizes == {"train": 81, "validation": 0, "test": 1}
    assert report.labels == ["x", "y"]
    assert report.files == {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")}
    assert set(report.data_hashes) == {"train", "test"} and all(len(h) == 64 for h in report.data_hashes.values())
    assert "duplicate_input" in {f.code for f in report.findings}
    assert [item.key for item in report.readiness] == ["training_examples", "task_definition", "metric",
                                                       "prompting_gap"]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["card"] == {"name": "t", "kind": "classify", "metric": "accuracy",
                            "source": str(tmp_path / "task.yaml")}
    assert data["readiness"][3] == {"key": "prompting_gap", "title": "Prompting demonstrably falls short",
                                    "status": "unknown", "evidence": "run `tunewise bakeoff` first",
                                    "fix": "run `tunewise bakeoff` to measure prompting against the other arms"}
    assert data["elapsed_s"] >= 0


def test_with_bad_rows_findings_are_skipped_and_said_so(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "x"}\n{"input": "a", "output": "x"}\nbad\n')
    report = check_task(make_card(tmp_path))
    assert not report.ok and len(report.row_errors) == 1
    assert report.findings == []
    assert report.notes and "quality findings were skipped" in report.notes[0]
    assert report.sizes["train"] + report.sizes["validation"] == 2  # the valid rows
    item = report.readiness[0]
    assert (item.key, item.status) == ("training_examples", "unknown")


def test_check_raises_for_a_missing_file(tmp_path):
    card = make_card(tmp_path, {"train": "nope.jsonl", "test": "test.jsonl"})
    with pytest.raises(DataError, match="not found") as caught:
        check_task(card)
    assert caught.value.where == str(tmp_path / "nope.jsonl")


def test_check_raises_for_a_schema_file_that_is_not_json(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "{}"}\n')
    (tmp_path / "schema.json").write_text("{oops")
    card = make_card(tmp_path, kind="extract", output_schema="schema.json")
    with pytest.raises(TaskCardError, match="output_schema is not valid JSON"):
        check_task(card)


def test_a_schema_file_is_applied_to_every_row(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps({"type": "object", "required": ["intent"],
                                                      "properties": {"intent": {"enum": ["Play", "Stop"]}}}))
    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": {"intent": "Play"}}\n'
                                          '{"input": "b", "output": "{\\"intent\\": \\"Jump\\"}"}\n')
    (tmp_path / "test.jsonl").write_text('{"input": "c", "output": {"intent": "Stop"}}\n')
    report = check_task(make_card(tmp_path, kind="extract", output_schema="schema.json"))
    [error] = report.row_errors
    assert (error.line, error.reason) == (2, F.SCHEMA_VIOLATION) and "intent" in error.message


# -- readiness ------------------------------------------------------------------------------------


def card_of(kind: str = "classify", **fields: Any) -> TaskCard:
    return TaskCard.model_validate({"name": "t", "kind": kind, "instruction": "x",
                                    "data": {"train": "a.jsonl", "test": "b.jsonl"}, **fields})


def test_enough_clean_examples_meet_the_first_item(tmp_path):
    rows = [{"input": f"message {i} about item {i * 7919 % 10007}", "output": "ab"[i % 2]} for i in range(1100)]
    rows += [rows[0]] * 3
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_task(make_card(tmp_path))
    item = report.readiness[0]
    assert item.status == "met"
    assert item.evidence.startswith("1,100 usable training examples (train + validation: 1,103; dropped 3 duplicate")


def test_training_examples_item_counts_and_fixes():
    short = training_examples_item(TrainingCount(total=900, damaged=10, conflicting=4, duplicates=6, usable=880))
    assert short.status == "not_met"
    assert "880 usable" in short.evidence and "6 duplicate copies" in short.evidence
    assert "rows with encoding damage" in short.evidence and "120 more" in short.fix
    enough = training_examples_item(TrainingCount(total=1000, damaged=0, conflicting=0, duplicates=0, usable=1000))
    assert enough.status == "met" and enough.fix is None
    assert training_examples_item(None).status == "unknown"


@pytest.mark.parametrize("fields, status, words", [
    ({"kind": "classify", "labels": ["a", "b"]}, "met", "2 labels listed in the card"),
    ({"kind": "classify"}, "met", "inferred from train"),
    ({"kind": "extract", "output_schema": {"type": "object"}}, "met", "output_schema"),
    ({"kind": "extract"}, "not_met", "without an output_schema"),
    ({"kind": "generate"}, "not_met", "many acceptable outputs"),
    ({"kind": "qa"}, "unknown", "open-ended"),
])
def test_task_definition_item(fields, status, words):
    item = task_definition_item(card_of(**fields))
    assert item.status == status and words in item.evidence
    if fields == {"kind": "extract"}:
        assert item.fix == "add output_schema"


@pytest.mark.parametrize("kind, name", [("classify", "accuracy"), ("extract", "field_f1"), ("qa", "token_f1")])
def test_default_metrics_are_clear_except_for_generate(kind, name):
    item = metric_item(card_of(kind))
    assert (item.status, item.evidence) == ("met", f"default {name} for {kind}")


def test_generate_with_default_rouge_is_not_a_clear_metric():
    item = metric_item(card_of("generate"))
    assert item.status == "not_met" and "ROUGE-L is a weak proxy, name a task metric" in item.evidence


@pytest.fixture
def fake_metrics(monkeypatch):
    """A stand-in honouring the metrics contract: resolve_metric(name, kind) or MetricError."""
    module = types.ModuleType("tunewise.scoring.metrics")

    def resolve_metric(name, kind):
        if name != "macro_f1":
            raise MetricError(f"unknown metric {name!r}", where="metric", fix="use one of: macro_f1")
        return object()

    module.resolve_metric = resolve_metric
    monkeypatch.setitem(sys.modules, "tunewise.scoring.metrics", module)
    return module


def test_a_named_metric_that_resolves_is_met(fake_metrics):
    item = metric_item(card_of(metric="macro_f1"))
    assert item.status == "met" and "macro_f1" in item.evidence


def test_a_named_metric_that_fails_to_resolve_is_not_met_with_its_message(fake_metrics):
    item = metric_item(card_of(metric="acuracy"))
    assert item.status == "not_met"
    assert "unknown metric 'acuracy'" in item.evidence and item.fix == "use one of: macro_f1"


def test_real_metrics_module_contract():
    pytest.importorskip("tunewise.scoring.metrics")
    assert metric_item(card_of(metric="accuracy")).status == "met"
    assert metric_item(card_of(metric="no_such_metric_anywhere")).status == "not_met"


def test_prompting_gap_is_unknown_until_a_bakeoff():
    item = prompting_gap_item(None)
    assert (item.status, item.evidence) == ("unknown", "run `tunewise bakeoff` first")


@pytest.mark.parametrize("gap, status", [
    (PromptingGap("accuracy", "few_shot", 0.70, (0.65, 0.75), quality_bar=0.9), "met"),
    (PromptingGap("accuracy", "few_shot", 0.95, (0.93, 0.97), quality_bar=0.9), "not_met"),
    (PromptingGap("accuracy", "few_shot", 0.90, (0.85, 0.95), quality_bar=0.9), "unknown"),
    (PromptingGap("accuracy", "few_shot", 0.90, (0.85, 0.95), quality_bar=0.9, best_other_arm="lora",
                  other_score=0.96, other_significantly_better=True), "met"),
    (PromptingGap("accuracy", "zero_shot", 0.80, best_other_arm="lora", other_score=0.81,
                  other_significantly_better=False), "not_met"),
])
def test_prompting_gap_from_a_bakeoff(gap, status):
    item = prompting_gap_item(gap)
    assert item.status == status and gap.best_prompting_arm in item.evidence


def test_readiness_passes_the_prompting_gap_through():
    gap = PromptingGap("accuracy", "few_shot", 0.5, (0.4, 0.6), quality_bar=0.8)
    items = readiness(card_of(), TrainingCount(10, 0, 0, 0, 10), [], gap)
    assert [i.status for i in items] == ["not_met", "met", "met", "met"]
