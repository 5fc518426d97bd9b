"""The verdict on real stored bake-offs (tests/verdict_fixtures.py runs the real bake-off with
arms whose answers are set in advance): one test per choice, plus ties, flips, caveats, the
readiness item, the report contract and the errors a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from verdict_fixtures import FixtureArm, load_fixture_card, make_run

from tunewise.errors import StoreError, TunewiseError
from tunewise.store import open_store
from tunewise.verdict import TcoAssumptions, Verdict, VerdictError, build_verdict
from tunewise.verdict.report.contract import validate_verdict
from tunewise.verdict.tco import KIND_COSTS, KindCosts

SMOL = "smollm2-135m-instruct"
MINI = "openai:gpt-4o-mini"


@pytest.fixture
def store(tmp_path: Path):
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


def verdict_for(store, folder: Path, arms, **task) -> Verdict:
    run_id = make_run(store, folder, arms, **task)
    verdict = build_verdict(store, run_id)
    document = verdict.to_dict()
    validate_verdict(document)  # every verdict the tests build keeps the report's contract
    json.dumps(document, allow_nan=False)
    return verdict


def arm_of(verdict: Verdict, name: str) -> dict:
    return next(arm for arm in verdict.to_dict()["arms"] if arm["name"] == name)


# -- one test per choice -------------------------------------------------------------------------


def test_prompt_when_an_api_prompt_meets_the_bar_and_costs_least(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.70, latency_ms=300),
        FixtureArm(f"zero_shot@{MINI}", accuracy=0.93, tokens_in=400, latency_ms=600),
        FixtureArm(f"lora@{SMOL}", accuracy=0.95, latency_ms=300, prepare_s=1800),
    ], quality_bar=0.9)
    r = verdict.recommendation
    assert (r.choice, r.arm) == ("prompt", f"zero_shot@{MINI}")
    assert r.headline.startswith(f"Prompt: zero_shot@{MINI} meets the 90.0% bar at $")
    assert any("93.0% accuracy" in reason and "3.0 points above the 90.0% bar" in reason for reason in r.reasons)
    # The fine-tune is dearer at 60 k requests a month; the break-even says from when it is not.
    assert any(flip.startswith("Above ") and f"lora@{SMOL} becomes cheaper" in flip for flip in r.flips)
    tco = verdict.to_dict()["tco"]
    assert tco["arms"][f"zero_shot@{MINI}"]["total_usd"] < tco["arms"][f"lora@{SMOL}"]["total_usd"]
    pairs = {(b["a"], b["b"]) for b in tco["break_even"]}
    assert (f"zero_shot@{MINI}", f"lora@{SMOL}") in pairs


def test_fine_tune_when_only_the_lora_arm_meets_the_bar(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.70, latency_ms=300),
        FixtureArm(f"few_shot_nearest@{SMOL}", accuracy=0.80, latency_ms=900),
        FixtureArm(f"lora@{SMOL}", accuracy=0.95, latency_ms=300, prepare_s=1800),
    ], quality_bar=0.9)
    r = verdict.recommendation
    assert (r.choice, r.arm) == ("fine_tune", f"lora@{SMOL}")
    assert r.headline.startswith("Fine-tune: ")
    against = arm_of(verdict, f"lora@{SMOL}")["vs_best_prompt"]
    assert against["baseline"] == f"few_shot_nearest@{SMOL}" and against["significant"]
    assert against["delta"] == pytest.approx(0.15) and against["p_holm"] >= against["p_value"]
    assert any("significantly better" in reason and "few_shot_nearest" in reason for reason in r.reasons)
    # few-shot is cheaper and 10 points short: the flip names the bar that would let it through.
    assert any(flip.startswith("If the bar dropped to 80.0% (from 90.0%), few_shot_nearest") for flip in r.flips)
    gap = next(item for item in verdict.readiness if item.key == "prompting_gap")
    assert gap.status == "met" and gap.evidence.startswith("yes, by 0.1 accuracy")


@pytest.mark.parametrize(("kind", "choice", "verb"), [
    ("rag", "rag", "Use retrieval (RAG)"),
    ("rag_lora", "rag_fine_tune", "Fine-tune with RAG"),
    ("distill", "distill", "Distill"),
])
def test_each_training_or_retrieval_kind_names_its_choice(store, tmp_path, kind, choice, verb):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.72, latency_ms=300),
        FixtureArm(f"{kind}@{SMOL}", accuracy=0.94, latency_ms=400, prepare_s=600),
    ], quality_bar=0.9)
    assert (verdict.recommendation.choice, verdict.recommendation.arm) == (choice, f"{kind}@{SMOL}")
    assert verdict.recommendation.headline.startswith(f"{verb}: ")
    assert arm_of(verdict, f"{kind}@{SMOL}")["kind"] == kind


def test_cascade_when_only_the_cascade_meets_the_bar(store, tmp_path):
    cascade = "cascade[embed_classifier->zero_shot@openai:gpt-4o-mini]"
    stages = {"first": {"arm": "embed_classifier", "model": ""},
              "second": {"arm": f"zero_shot@{MINI}", "model": MINI}}
    verdict = verdict_for(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.84, latency_ms=5),
        FixtureArm(f"zero_shot@{MINI}", accuracy=0.88, tokens_in=400),
        FixtureArm(cascade, accuracy=0.93, cost_usd=0.00002, latency_ms=200, extra=stages, model_spec=""),
    ], quality_bar=0.9)
    assert (verdict.recommendation.choice, verdict.recommendation.arm) == ("cascade", cascade)
    arm = arm_of(verdict, cascade)
    assert arm["kind"] == "cascade" and arm["cost_basis"] == "mixed"
    assert arm["cost_per_1k_usd"] == pytest.approx(0.02)  # a mixed arm keeps the dollars measured per answer


def test_no_llm_when_the_embedding_classifier_ties_the_best_llm_and_is_cheaper(store, tmp_path):
    # Without a bar: the classifier is not significantly worse than gpt-4o (2 examples apart on
    # 200, nested errors), and at a million requests a month gpt-4o's tokens cost far more.
    verdict = verdict_for(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.91, latency_ms=5),
        FixtureArm("zero_shot@openai:gpt-4o", accuracy=0.92, tokens_in=400),
    ], requests_per_month=1_000_000)
    r = verdict.recommendation
    assert (r.choice, r.arm) == ("no_llm", "embed_classifier")
    assert r.headline.startswith("No LLM needed: the embedding classifier ")
    assert any("needs no LLM" in reason or "not significantly worse" in reason for reason in r.reasons)
    assert any("cannot be told apart" in tie and "zero_shot@openai:gpt-4o" in tie for tie in r.ties)
    assert any("set goals.quality_bar" in caveat for caveat in r.caveats)


def test_no_llm_with_a_bar_says_what_the_better_llm_would_cost(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.91, latency_ms=5),
        FixtureArm(f"few_shot_nearest@{SMOL}", accuracy=0.99, latency_ms=3000),
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60, latency_ms=300),
    ], quality_bar=0.9, requests_per_month=1_000_000)
    r = verdict.recommendation
    assert r.choice == "no_llm"
    assert any("significantly" in reason and "few_shot_nearest" in reason for reason in r.reasons)
    assert any(flip.startswith("If the bar rose above 91.0%") and "few_shot_nearest" in flip for flip in r.flips)


def test_collect_more_data_when_no_arm_meets_the_bar_and_the_curve_is_steep(store, tmp_path):
    curve = [{"n": n, "value": v, "low": v - 0.015, "high": v + 0.015}
             for n, v in ((50, 0.52), (100, 0.60), (250, 0.70), (500, 0.77), (1000, 0.84))]
    run_id = make_run(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60, latency_ms=300),
        FixtureArm(f"lora@{SMOL}", accuracy=0.84, latency_ms=300, prepare_s=1800),
    ], quality_bar=0.95, learning_curves={f"lora@{SMOL}": curve})
    verdict = build_verdict(store, run_id)
    validate_verdict(verdict.to_dict())
    r = verdict.recommendation
    assert (r.choice, r.arm) == ("collect_more_data", f"lora@{SMOL}")
    assert "learning curve is still rising" in r.headline
    assert any("steep" in reason for reason in r.reasons)
    curves = verdict.to_dict()["learning_curve"]
    assert curves[0]["arm"] == f"lora@{SMOL}" and len(curves[0]["points"]) == 5
    assert curves[0]["fit"]["steepness"] == "steep" and curves[0]["labels_needed"] > 0
    # The curve's suggestion is a one-time labelling cost in the fine-tune's TCO.
    labelling = verdict.to_dict()["tco"]["arms"][f"lora@{SMOL}"]["one_time_usd"]["labelling"]
    assert labelling == pytest.approx(curves[0]["labels_needed"] * 0.5)


def test_undecided_when_nothing_meets_the_bar_and_no_curve_says_more_data_helps(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60, latency_ms=300),
        FixtureArm(f"few_shot_random@{SMOL}", accuracy=0.82, latency_ms=700),
    ], quality_bar=0.95)
    r = verdict.recommendation
    assert r.choice == "undecided" and r.arm == f"few_shot_random@{SMOL}"
    assert r.headline == (f"Undecided: no arm meets the 95.0% bar; the best, few_shot_random@{SMOL}, "
                          "scores 82.0%.")
    assert any("No learning curve was run" in reason for reason in r.reasons)
    assert any(flip.startswith("If the bar dropped to 82.0%") for flip in r.flips)


def test_undecided_when_no_arm_finished(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"lora@{SMOL}", skip_reason="needs 40 min, 5 min of the budget left"),
    ], quality_bar=0.9)
    assert verdict.recommendation.choice == "undecided" and verdict.recommendation.arm is None
    document = verdict.to_dict()
    assert document["tco"] is None
    arm = document["arms"][0]
    assert (arm["status"], arm["quality"], arm["n"]) == ("skipped", None, 0)


# -- ties, latency, small samples -----------------------------------------------------------------


def test_arms_the_evidence_cannot_separate_are_named_as_ties(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{MINI}", accuracy=0.92, tokens_in=400),
        FixtureArm(f"few_shot_random@{MINI}", accuracy=0.93, tokens_in=900),
    ])
    r = verdict.recommendation
    assert r.arm == f"zero_shot@{MINI}"  # cheaper, and not significantly worse
    assert r.headline.endswith("the lowest cost of the ties.")
    assert len(r.ties) == 1 and "cannot be told apart on accuracy" in r.ties[0] and "p = " in r.ties[0]


def test_a_latency_limit_excludes_a_slow_arm_and_the_flip_says_what_limit_would_admit_it(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"few_shot_nearest@{SMOL}", accuracy=0.93, latency_ms=3000),
        FixtureArm(f"zero_shot@{MINI}", accuracy=0.92, tokens_in=400, latency_ms=500),
    ], quality_bar=0.9, latency_p95_ms=2000, requests_per_month=1000)
    r = verdict.recommendation
    slow = arm_of(verdict, f"few_shot_nearest@{SMOL}")
    assert slow["meets_bar"] is True and slow["meets_latency"] is False
    assert r.arm == f"zero_shot@{MINI}"
    assert any("p95 latency, 500 ms, is within the 2,000 ms limit" in reason for reason in r.reasons)


def test_a_small_test_set_is_a_caveat_with_the_interval_width(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{MINI}", accuracy=0.925, tokens_in=400),
    ], quality_bar=0.9, n_test=40)
    arm = arm_of(verdict, f"zero_shot@{MINI}")
    assert arm["quality"]["method"] == "wilson"  # 37 of 40: the small-sample interval
    assert any(c.startswith("Only 40 test examples") for c in verdict.recommendation.caveats)


def test_engineering_hours_can_be_overridden_and_change_the_totals(store, tmp_path):
    run_id = make_run(store, tmp_path, [FixtureArm(f"lora@{SMOL}", accuracy=0.95, prepare_s=600)], quality_bar=0.9)
    default = build_verdict(store, run_id).to_dict()["tco"]["arms"][f"lora@{SMOL}"]
    cheap = TcoAssumptions(kind_costs={**KIND_COSTS, "lora": KindCosts(2, 1, 1, True, True)})
    custom = build_verdict(store, run_id, assumptions=cheap).to_dict()["tco"]["arms"][f"lora@{SMOL}"]
    assert custom["one_time_usd"]["engineering"] == 200 < default["one_time_usd"]["engineering"]
    assert custom["total_usd"] < default["total_usd"]


# -- the document ----------------------------------------------------------------------------------


def test_the_document_carries_errors_latencies_readiness_check_and_rebuild(store, tmp_path):
    run_id = make_run(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.70, latency_ms=300),
        FixtureArm(f"lora@{SMOL}", accuracy=0.95, latency_ms=250, prepare_s=1800),
    ], quality_bar=0.9, check=True)
    document = build_verdict(store, run_id).to_dict()
    validate_verdict(document)
    assert document["run_id"] == run_id and document["n_examples"] == 200 and document["metric"] == "accuracy"
    zero = next(a for a in document["arms"] if a["name"] == f"zero_shot@{SMOL}")
    assert len(zero["latencies_ms"]) == 200 and zero["latency_p95_ms"] == pytest.approx(300)
    assert len(zero["errors"]) == 5
    error = zero["errors"][0]
    assert error["input"].startswith("test ticket ") and error["expected"] != error["output"]
    assert [item["key"] for item in document["readiness"]] == ["training_examples", "task_definition", "metric",
                                                               "prompting_gap"]
    assert document["readiness"][-1]["status"] == "met"
    assert document["check"]["run_id"] < run_id and "findings" in document["check"]
    rebuild = document["rebuild"]
    assert rebuild["command"].startswith("tunewise bakeoff ") and "--arms zero_shot,lora" in rebuild["command"]
    assert rebuild["data_hashes"] and rebuild["seeds"] and "tunewise" in rebuild["versions"]
    pareto = {a["name"] for a in document["arms"] if a["pareto"]}
    assert f"lora@{SMOL}" in pareto


def test_a_newer_card_reprices_an_old_run_and_says_so(store, tmp_path):
    run_id = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{MINI}", accuracy=0.93, tokens_in=400)],
                      quality_bar=0.9)
    card = load_fixture_card(tmp_path)
    dearer = card.model_copy(update={"costs": card.costs.model_copy(update={"prices": {
        "gpt-4o-mini": {"input_per_million": 1.5, "output_per_million": 6.0}}})})
    old = build_verdict(store, run_id)
    new = build_verdict(store, run_id, dearer)
    name = f"zero_shot@{MINI}"
    assert arm_of(new, name)["cost_per_1k_usd"] == pytest.approx(10 * arm_of(old, name)["cost_per_1k_usd"])
    assert any("costs differ from the ones stored" in c for c in new.recommendation.caveats)


def test_a_check_run_an_unknown_run_and_another_tasks_card_are_clear_errors(store, tmp_path):
    run_id = make_run(store, tmp_path, [FixtureArm(f"zero_shot@{MINI}", accuracy=0.93)], check=True)
    check_id = next(r.id for r in store.list_runs() if r.kind == "check")
    with pytest.raises(VerdictError, match=f"run {check_id} is a check run, not a bake-off") as info:
        build_verdict(store, check_id)
    assert "tunewise runs list --task fixture-triage" in info.value.fix
    with pytest.raises(StoreError, match="no run 999"):
        build_verdict(store, 999)
    other = load_fixture_card(tmp_path).model_copy(update={"name": "another-task"})
    with pytest.raises(VerdictError, match="the card is for task 'another-task'") as info:
        build_verdict(store, run_id, other)
    assert isinstance(info.value, TunewiseError) and info.value.fix


def test_moved_data_still_gives_a_verdict_with_hashes_for_inputs(store, tmp_path):
    run_id = make_run(store, tmp_path / "task", [FixtureArm(f"zero_shot@{MINI}", accuracy=0.9)])
    (tmp_path / "task" / "test.jsonl").rename(tmp_path / "moved.jsonl")
    verdict = build_verdict(store, run_id)
    error = arm_of(verdict, f"zero_shot@{MINI}")["errors"][0]
    assert error["input"].startswith("(input not available: sha256 ")
    assert any("pass the task card" in c for c in verdict.recommendation.caveats)


def test_a_failed_run_still_gives_a_verdict_on_what_finished_and_says_what_failed(store, tmp_path):
    with pytest.raises(RuntimeError, match="out of memory"):
        make_run(store, tmp_path, [FixtureArm(f"zero_shot@{MINI}", accuracy=0.93, tokens_in=400),
                                   FixtureArm(f"lora@{SMOL}", fail_with="out of memory")], quality_bar=0.9)
    run_id = store.list_runs(limit=1)[0].id
    verdict = build_verdict(store, run_id)
    validate_verdict(verdict.to_dict())
    assert verdict.recommendation.arm == f"zero_shot@{MINI}"
    lora = arm_of(verdict, f"lora@{SMOL}")
    assert lora["status"] == "failed" and "out of memory" in lora["reason"] and lora["quality"] is None
    caveats = " ".join(verdict.recommendation.caveats)
    assert f"lora@{SMOL} is left out (failed): RuntimeError: out of memory." in caveats
    assert "The bake-off run is failed, not finished" in caveats


def test_without_a_prompting_arm_nothing_is_measured_against_prompting(store, tmp_path):
    verdict = verdict_for(store, tmp_path, [
        FixtureArm("embed_classifier", accuracy=0.80, latency_ms=5),
        FixtureArm(f"lora@{SMOL}", accuracy=0.95, prepare_s=600),
    ], quality_bar=0.9)
    r = verdict.recommendation
    assert r.choice == "fine_tune"
    assert "No prompting arm ran, so nothing here is measured against prompting." in r.reasons
    assert all(arm["vs_best_prompt"] is None for arm in verdict.to_dict()["arms"])
    gap = next(item for item in verdict.readiness if item.key == "prompting_gap")
    assert gap.status == "unknown" and "no finished prompting arm" in gap.evidence and "zero_shot" in gap.fix


def test_the_same_verdict_comes_from_sqlite_and_postgresql(store_url_for_backend, tmp_path):
    # The verdict reads the store only through its API: both backends give the same document.
    with open_store(store_url_for_backend) as opened:
        run_id = make_run(opened, tmp_path, [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.70, latency_ms=300),
                                             FixtureArm(f"lora@{SMOL}", accuracy=0.95, prepare_s=900)],
                          quality_bar=0.9)
        document = build_verdict(opened, run_id).to_dict()
    validate_verdict(document)
    assert document["recommendation"]["choice"] == "fine_tune"
    assert document["arms"][1]["vs_best_prompt"]["delta"] == pytest.approx(0.25)


def test_macro_f1_without_a_label_list_or_data_still_pairs_the_arms_on_one_label_set(store, tmp_path):
    run_id = make_run(store, tmp_path / "task", [FixtureArm(f"zero_shot@{SMOL}", accuracy=0.60),
                                                 FixtureArm(f"lora@{SMOL}", accuracy=0.95)],
                      metric="macro_f1", labels_in_card=False)
    (tmp_path / "task" / "train.jsonl").unlink()  # the training labels cannot be reloaded
    verdict = build_verdict(store, run_id)
    validate_verdict(verdict.to_dict())
    lora = arm_of(verdict, f"lora@{SMOL}")
    assert verdict.metric == "macro_f1" and lora["vs_best_prompt"]["significant"]
    assert lora["vs_best_prompt"]["test"] == "paired bootstrap"
    assert any("labels in the test answers" in c for c in verdict.recommendation.caveats)


def test_local_requests_are_priced_once_warm_leaving_out_the_first_batch(store, tmp_path):
    # 200 answers in batches of 16; the first batch also paid 8 s of one-time warm-up.
    verdict = verdict_for(store, tmp_path, [
        FixtureArm(f"zero_shot@{SMOL}", accuracy=0.9, latency_ms=500, warmup_ms=8000),
    ])
    arm = arm_of(verdict, f"zero_shot@{SMOL}")
    assert max(arm["latencies_ms"]) == pytest.approx(1000) and min(arm["latencies_ms"]) == pytest.approx(500)
    assert arm["cost_per_1k_usd"] == pytest.approx(1000 * 0.5 * 0.10 / 3600)  # 500 ms at $0.10 an hour
    notes = verdict.to_dict()["tco"]["assumptions"]["notes"]
    assert any("500 ms per request (the first batch's warm-up left out)" in note for note in notes)
