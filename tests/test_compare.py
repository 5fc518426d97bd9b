"""`tunewise compare RUN_A RUN_B`: two real stored bake-offs of one task, arms paired by name
or kind, examples paired by input hash, and the errors for runs that cannot be compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from verdict_fixtures import FixtureArm, make_run

from tunewise.cli import cli
from tunewise.errors import StoreError
from tunewise.store import open_store
from tunewise.verdict import VerdictError, compare_runs

SMOL = "smollm2-135m-instruct"
GEMMA = "gemma3-270m"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def store(store_url: str):
    with open_store(store_url) as opened:
        yield opened


def test_a_new_base_model_pairs_arms_by_kind_and_tests_the_change_on_the_same_examples(store, tmp_path):
    before = make_run(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.85, latency_ms=5),
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60, latency_ms=300),
    ])
    after = make_run(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.85, latency_ms=5),
        FixtureArm(f"zero_shot@{GEMMA}", accuracy=0.90, latency_ms=500),
    ])
    comparison = compare_runs(store, before, after)
    by_kind = {arm.kind: arm for arm in comparison.arms}
    zero = by_kind["zero_shot"]
    assert (zero.arm_a, zero.arm_b) == (f"zero_shot@{SMOL}", f"zero_shot@{GEMMA}")
    assert zero.paired and zero.n_shared == 200 and zero.test == "mcnemar"
    assert zero.delta == pytest.approx(0.30) and zero.low > 0 and zero.significant
    assert zero.p_holm >= zero.p_value
    assert zero.latency_p95_a == pytest.approx(300) and zero.latency_p95_b == pytest.approx(500)
    same = by_kind["embed_classifier"]
    assert (same.delta, same.significant) == (0.0, False)
    assert any(change.startswith("models: ") and GEMMA in change for change in comparison.changes)
    assert f"zero_shot@{GEMMA}: +30.0 points" in comparison.summary()
    assert comparison.only_in_a == [] and comparison.only_in_b == []


def test_more_data_compares_on_the_examples_both_runs_answered(store, tmp_path):
    # The second run's test file holds the first 200 rows and 100 more.
    before = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.80)], n_test=200)
    after = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.80),
                                       FixtureArm(f"lora@{SMOL}", accuracy=0.95)], n_test=300)
    comparison = compare_runs(store, before, after)
    (zero,) = comparison.arms
    assert zero.paired and zero.n_shared == 200 and (zero.n_a, zero.n_b) == (200, 300)
    assert comparison.only_in_b == [f"lora@{SMOL}"]
    assert "test examples: 200 -> 300" in comparison.changes
    assert any(change.startswith("data: test file changed") for change in comparison.changes)
    document = comparison.to_dict()
    json.dumps(document, allow_nan=False)
    assert document["arms"][0]["n_shared"] == 200


def test_runs_with_no_example_in_common_are_compared_unpaired_and_say_so(store, tmp_path):
    before = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60)])
    after = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.90)], data_seed=1)
    (zero,) = compare_runs(store, before, after).arms
    assert not zero.paired and zero.n_shared == 0 and zero.test.startswith("unpaired")
    assert zero.delta == pytest.approx(0.30) and zero.low < 0.30 < zero.high and zero.significant


def test_identical_runs_change_nothing(store, tmp_path):
    arms = [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.8)]
    first, second = make_run(store, tmp_path, arms), make_run(store, tmp_path, arms)
    comparison = compare_runs(store, first, second)
    assert comparison.changes == ["nothing that rebuilds the runs differs (same card, data, models and packages)"]
    assert comparison.summary().startswith("No arm changed significantly")


def test_runs_that_cannot_be_compared_are_clear_errors(store, tmp_path):
    run = make_run(store, tmp_path / "a", [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.8)], check=True)
    other = make_run(store, tmp_path / "b", [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.8)], name="other-task")
    check = next(r.id for r in store.list_runs() if r.kind == "check")
    with pytest.raises(VerdictError, match="of task 'fixture-triage' and run .* of task 'other-task'") as info:
        compare_runs(store, run, other)
    assert "runs list --task" in info.value.fix
    with pytest.raises(VerdictError, match="is a check run, not a bake-off"):
        compare_runs(store, check, run)
    with pytest.raises(VerdictError, match="both runs are run"):
        compare_runs(store, run, run)
    with pytest.raises(StoreError, match="no run 404"):
        compare_runs(store, run, 404)


def test_the_cli_prints_a_table_json_and_one_line_errors(store, store_url, tmp_path):
    before = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60)])
    after = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{GEMMA}", accuracy=0.90)])
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", store_url, "compare", str(before), str(after)], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"zero_shot@{SMOL}" in result.stdout and f"zero_shot@{GEMMA}" in result.stdout
    assert "+30.0 points" in result.stdout and "changed: models:" in result.stdout
    result = runner.invoke(cli, ["--store", store_url, "compare", str(before), str(after), "--json"])
    document = json.loads(result.stdout)
    assert document["arms"][0]["significant"] is True and document["run_b"] == after
    result = runner.invoke(cli, ["--store", store_url, "compare", str(before), "999"])
    assert result.exit_code == 2 and "no run 999" in result.stderr
