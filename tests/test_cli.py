"""The command line, end to end: init, check, schema, runs, and how errors look."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from tunewise.cli import cli
from tunewise.task import load_card

TICKETS = EXAMPLES / "support-tickets"


def run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    if cwd is None:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
    else:
        with runner.isolated_filesystem(temp_dir=cwd):
            result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- schema -------------------------------------------------------------------------------


def test_schema_prints_the_card_json_schema(tmp_path: Path):
    code, out, _ = run("schema")
    assert code == 0
    schema = json.loads(out)
    assert {"name", "kind", "instruction", "data"} <= set(schema["required"])
    code, out, _ = run("schema", "--out", str(tmp_path / "card.schema.json"))
    assert code == 0 and json.loads((tmp_path / "card.schema.json").read_text()) == schema


# -- check --------------------------------------------------------------------------------


def test_check_on_the_bundled_example_passes_and_is_recorded():
    code, out, _ = run("check", str(TICKETS / "task.yaml"))
    assert code == 0, out
    assert "Data OK" in out
    assert "Readiness for fine-tuning" in out
    assert "recorded as run 1" in out

    code, out, _ = run("runs", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [r["task_name"] for r in listed] == ["support-ticket-routing"]
    assert listed[0]["kind"] == "check"

    code, out, _ = run("runs", "show", "1", "--json")
    detail = json.loads(out)
    assert code == 0
    assert set(detail["data_hashes"]) == {"file"}
    assert "python" in detail["package_versions"]
    assert detail["summary"]["examples"] == {"train": 1197, "validation": 155, "test": 148}
    assert detail["artifacts"][0]["content"]["ok"] is True  # the full report, kept with the run
    code, out, _ = run("runs", "show", "1")
    assert code == 0 and "data_hashes" in out


def test_check_json_lists_every_bad_row_and_nothing_is_stored(tmp_path: Path):
    rows = [{"input": f"ticket {i}", "output": "billing"} for i in range(30)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    with data.open("a") as f:
        for i in range(25):
            f.write("{not json\n")
        f.write(json.dumps({"input": "", "output": "billing"}) + "\n")
    card = tmp_path / "task.yaml"
    card.write_text("name: t\nkind: classify\ninstruction: route\ndata: {file: data.jsonl}\nlabels: [billing, refund]\n")

    code, out, _ = run("check", str(card), "--json")
    report = json.loads(out)
    assert code == 1
    assert report["ok"] is False and report["run_id"] is None
    assert len(report["row_errors"]) == 26
    assert report["row_errors"][0] == {"file": "data.jsonl", "line": 31, "reason": "invalid_json",
                                       "message": report["row_errors"][0]["message"]}
    assert report["row_errors"][-1]["line"] == 56 and report["row_errors"][-1]["reason"] == "empty_input"

    code, out, _ = run("check", str(card), "--show", "3")
    assert code == 1
    assert "26 bad rows" in out and "data.jsonl:31" in out and "and 23 more" in out
    assert "Data NOT loadable" in out
    code, out, _ = run("runs", "list", "--json")
    assert json.loads(out) == []  # a file with errors is never stored


def test_check_no_store_records_nothing():
    code, _, _ = run("check", str(TICKETS / "task-extract.yaml"), "--no-store")
    assert code == 0
    _, out, _ = run("runs", "list")
    assert "No runs yet" in out


# -- errors -------------------------------------------------------------------------------


def test_errors_are_one_line_with_place_and_fix(tmp_path: Path):
    card = tmp_path / "task.yaml"
    card.write_text("name: t\nkind: classify\ninstruction: x\ndata: {file: data.jsonl}\nlables: [a]\n")
    code, out, err = run("check", str(card))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith(f"error: {card}:5: unknown field `lables`")
    assert "did you mean `labels`" in err
    assert "Traceback" not in err + out


def test_missing_data_file_names_the_path(tmp_path: Path):
    card = tmp_path / "task.yaml"
    card.write_text("name: t\nkind: classify\ninstruction: x\ndata: {file: nowhere.jsonl}\n")
    code, _, err = run("check", str(card))
    assert code == 2 and "nowhere.jsonl" in err and "fix:" in err


def test_unknown_run_says_where_to_look():
    code, _, err = run("runs", "show", "999")
    assert code == 2 and "no run 999" in err and "tunewise runs list" in err


def test_debug_shows_the_traceback(tmp_path: Path):
    with pytest.raises(Exception, match="task card not found"):
        CliRunner().invoke(cli, ["--debug", "check", str(tmp_path / "missing.yaml")], catch_exceptions=False)


def test_console_script_runs_as_a_real_process(tmp_path: Path):
    exe = shutil.which("tunewise") or str(Path(sys.executable).with_name("tunewise"))
    done = subprocess.run([exe, "check", str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "tunewise init" in done.stderr
    assert "Traceback" not in done.stderr


# -- init ---------------------------------------------------------------------------------


def test_init_infers_a_classify_card_that_checks_clean(tmp_path: Path):
    rows = [{"text": f"my card was charged twice {i}", "label": "billing"} for i in range(40)]
    rows += [{"text": f"where is my parcel {i}", "label": "shipping"} for i in range(40)]
    write_jsonl(tmp_path / "tickets.jsonl", rows)
    code, out, _ = run("init", str(tmp_path / "tickets.jsonl"), "--out", str(tmp_path / "task.yaml"))
    assert code == 0, out
    card = load_card(tmp_path / "task.yaml")
    assert card.kind.value == "classify"
    assert card.labels == ["billing", "shipping"]
    assert (card.data.input_field, card.data.output_field) == ("text", "label")
    assert "kind: classify" in out
    code, out, _ = run("check", str(tmp_path / "task.yaml"), "--no-store")
    assert code == 0, out


def test_init_infers_extract_with_a_schema(tmp_path: Path):
    rows = [{"input": f"play song {i}", "output": json.dumps({"intent": "PlayMusic", "slots": {"n": str(i)}})}
            for i in range(30)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "test.jsonl", rows[:5])
    code, out, _ = run("init", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "task.yaml"))
    assert code == 0, out
    card = load_card(tmp_path / "task.yaml")
    assert card.kind.value == "extract"
    assert card.schema_dict()["required"] == ["intent", "slots"]
    assert card.data.train is not None and card.data.test is not None  # found the split files beside it


def test_init_reads_csv_and_detects_generation(tmp_path: Path):
    lines = ["question,answer"] + [f"what is {i} plus {i},\"the sum is {2 * i}, a number\"" for i in range(30)]
    (tmp_path / "qa.csv").write_text("\n".join(lines) + "\n")
    code, out, _ = run("init", str(tmp_path / "qa.csv"), "--out", str(tmp_path / "task.yaml"))
    assert code == 0, out
    assert load_card(tmp_path / "task.yaml").kind.value == "generate"


def test_init_refuses_to_overwrite_and_names_the_fix(tmp_path: Path):
    write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}] * 3)
    (tmp_path / "task.yaml").write_text("keep me")
    code, _, err = run("init", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "task.yaml"))
    assert code == 2 and "--force" in err
    assert (tmp_path / "task.yaml").read_text() == "keep me"


def test_init_explains_unrecognised_columns(tmp_path: Path):
    write_jsonl(tmp_path / "d.jsonl", [{"foo": "a", "bar": "b"}] * 3)
    code, _, err = run("init", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "task.yaml"))
    assert code == 2 and "foo" in err and "input_field" in err


# -- models and bakeoff ---------------------------------------------------------------------


def test_models_list_names_the_catalog():
    code, out, _ = run("models", "list")
    assert code == 0
    assert "smollm2-135m-instruct" in out and "gemma3-270m" in out


def test_models_pull_of_an_unknown_name_lists_the_known_ones():
    code, _, err = run("models", "pull", "gpt-17")
    assert code == 2 and "smollm2-135m-instruct" in err


def test_bakeoff_rejects_an_unknown_arm_and_a_bad_budget():
    code, _, err = run("bakeoff", str(TICKETS / "task.yaml"), "--arms", "fine_tune")
    assert code == 2 and "unknown arm 'fine_tune'" in err and "zero_shot" in err
    code, _, err = run("bakeoff", str(TICKETS / "task.yaml"), "--budget", "soon")
    assert code == 2 and "20m" in err


def test_bakeoff_embedding_classifier_end_to_end_then_from_the_cache():
    """The real embedding model on the bundled example: scored, stored, then re-run from the cache."""
    args = ("bakeoff", str(TICKETS / "task.yaml"), "--arms", "embed_classifier", "--limit", "30", "--json")
    code, out, _ = run(*args)
    assert code == 0, out
    first = json.loads(out)
    [arm] = first["arms"]
    assert arm["name"] == "embed_classifier" and arm["status"] == "finished" and arm["n"] == 30
    assert 0.5 < arm["estimate"]["value"] <= 1.0  # eight queues: chance is 1/8
    assert arm["estimate"]["low"] <= arm["estimate"]["value"] <= arm["estimate"]["high"]

    code, out, _ = run(*args)
    again = json.loads(out)
    assert again["arms"][0]["cached_share"] == 1.0
    assert again["arms"][0]["estimate"] == arm["estimate"]
    code, out, _ = run("runs", "list", "--json")
    assert [r["kind"] for r in json.loads(out)] == ["bakeoff", "bakeoff"]
    # `runs show` reads the stored arm back into the bake-off's own table, not raw metric dicts.
    code, out, _ = run("runs", "show", "2")
    est = arm["estimate"]
    assert code == 0 and f"{est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}]" in out
    assert "accuracy [95% CI]" in out and "macro_f1" in out and "'value'" not in out


def test_an_unexpected_error_is_still_one_line(monkeypatch: pytest.MonkeyPatch):
    import tunewise.task

    def broken(card):
        raise ValueError("accelerate is required\nsecond line")

    monkeypatch.setattr(tunewise.task, "check_task", broken)
    code, out, err = run("check", str(TICKETS / "task.yaml"))
    assert code == 3
    assert err.strip() == ("error: unexpected ValueError: accelerate is required "
                           "(run again with --debug for the traceback, and please report it)")
    with pytest.raises(ValueError):
        CliRunner().invoke(cli, ["--debug", "check", str(TICKETS / "task.yaml")], catch_exceptions=False)
