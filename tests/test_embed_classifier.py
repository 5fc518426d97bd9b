"""The embedding classifier arm, on a real slice of CLINC150 (Larson et al. 2019, CC BY 3.0):
20 intents, 20 training, 3 validation and 10 test examples each."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tunewise.arms.base import ArmContext, Budget
from tunewise.arms.embed_classifier import EmbedClassifier, EmbedClassifierCandidate
from tunewise.knowledge.embed import Embedder
from tunewise.task.card import load_card, parse_card
from tunewise.task.dataset import Dataset, Example
from tunewise.task.load import load_task

INTENTS = 20
PER_INTENT = {"train": 20, "validation": 3, "test": 10}
PRICE_PER_HOUR = 0.36  # a round 0.0001 $/s


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture(scope="module")
def clinc_slice(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The slice as a task folder (card + three files), loaded the way a user's task is."""
    from conftest import SHARED_DATASETS

    folder = tmp_path_factory.mktemp("clinc-slice")
    rows = {split: _read(SHARED_DATASETS / "clinc150" / f"{split}.jsonl") for split in PER_INTENT}
    intents = sorted({row["output"] for row in rows["train"]} - {"oos"})[::7][:INTENTS]  # spread over the alphabet
    for split, wanted in PER_INTENT.items():
        kept: dict[str, list[dict]] = defaultdict(list)
        for row in rows[split]:
            if row["output"] in intents and len(kept[row["output"]]) < wanted:
                kept[row["output"]].append(row)
        lines = [json.dumps(row) for intent in intents for row in kept[intent]]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "task.yaml").write_text(
        "name: clinc-slice\nkind: classify\ninstruction: Name the intent of the request.\n"
        "data: {train: train.jsonl, validation: validation.jsonl, test: test.jsonl}\n"
        f"costs: {{machine_per_hour: {PRICE_PER_HOUR}}}\n"
    )
    return load_task(load_card(folder / "task.yaml"))


@pytest.fixture(scope="module")
def candidate(clinc_slice: Dataset, embedder: Embedder) -> EmbedClassifierCandidate:
    return EmbedClassifier().prepare(context(clinc_slice, embedder))


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def context(dataset: Dataset, embedder: Embedder, **options) -> ArmContext:
    def no_llm(spec: str):
        raise AssertionError(f"the embedding classifier must not load a language model ({spec})")

    return ArmContext(dataset=dataset, backend=no_llm, embedder=lambda: embedder, **options)


def predict_all(candidate: EmbedClassifierCandidate, examples: list[Example]):
    size = candidate.batch_size()
    return [p for start in range(0, len(examples), size) for p in candidate.predict(examples[start : start + size])]


def test_the_slice_is_what_the_test_says(clinc_slice: Dataset):
    assert clinc_slice.sizes() == {"train": 400, "validation": 60, "test": 200}
    assert len(clinc_slice.labels) == INTENTS


def test_it_beats_chance_by_a_wide_margin_with_valid_labels(clinc_slice: Dataset, candidate: EmbedClassifierCandidate):
    predictions = predict_all(candidate, clinc_slice.test)
    accuracy = np.mean([p.output == e.output for p, e in zip(predictions, clinc_slice.test, strict=True)])
    assert accuracy > 0.8  # chance: 0.05
    assert all(p.valid and p.output in clinc_slice.labels for p in predictions)


def test_predictions_carry_confidence_and_measured_usage(clinc_slice: Dataset, candidate: EmbedClassifierCandidate):
    batch = clinc_slice.test[:8]
    predictions = candidate.predict(batch)
    assert len(predictions) == 8
    for prediction, example in zip(predictions, batch, strict=True):
        confidence, top = prediction.extra["confidence"], prediction.extra["top"]
        assert 0 < confidence <= 1 and top[0] == [prediction.output, confidence]
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True) and len(top) == 3
        usage = prediction.usage
        assert usage.tokens_in == candidate.embedder.count_tokens([example.input])[0] and usage.tokens_out == 0
        assert usage.latency_s > 0 and usage.cost_usd == pytest.approx(usage.latency_s * 0.0001)
    assert len({p.usage.latency_s for p in predictions}) == 1  # one batch's time, shared
    assert candidate.predict([]) == []


def test_config_and_prepare_cost_record_what_was_chosen(candidate: EmbedClassifierCandidate, embedder: Embedder):
    config = candidate.config
    assert config["embedder"] == embedder.model_id and candidate.model_id == f"{embedder.model_id}+logreg"
    assert config["c"] in (0.1, 1.0, 10.0, 100.0) and config["class_weight"] in ("none", "balanced")
    assert (config["train_size"], config["seed"]) == (400, 0) and len(config["train_sha256"]) == 64
    grid = candidate.details["grid"]
    assert len(grid) == 8 and candidate.details["validation_accuracy"] == max(p["validation_accuracy"] for p in grid)
    usage = candidate.prepare_usage
    assert usage.latency_s > 0 and usage.cost_usd == pytest.approx(usage.latency_s * 0.0001)
    assert usage.tokens_in > 460 * 3  # every train and validation input, special tokens included


def test_without_validation_it_fits_the_default_setting(clinc_slice: Dataset, embedder: Embedder):
    no_validation = Dataset(card=clinc_slice.card, splits={**clinc_slice.splits, "validation": []},
                            labels=clinc_slice.labels, data_hashes={})
    candidate = EmbedClassifier(default_c=3.0).prepare(context(no_validation, embedder))
    assert (candidate.config["c"], candidate.config["class_weight"]) == (3.0, "none")
    assert candidate.details["chosen_by"] == "default (no validation split)"


def test_a_spent_budget_stops_the_search_after_one_fit(clinc_slice: Dataset, embedder: Embedder):
    candidate = EmbedClassifier().prepare(context(clinc_slice, embedder, budget=Budget(seconds=0.0)))
    assert len(candidate.details["grid"]) == 1 and candidate.config["c"] == 0.1


def test_it_applies_to_classify_tasks_only(clinc_slice: Dataset):
    arm = EmbedClassifier()
    assert arm.applies(clinc_slice) is None
    extract = parse_card("name: x\nkind: extract\ninstruction: Pull the fields.\ndata: {file: rows.jsonl}\n")
    reason = arm.applies(Dataset(card=extract, splits=clinc_slice.splits, labels=None, data_hashes={}))
    assert reason == "the embedding classifier answers classify tasks only; this task is extract"
    one_label = [Example("a", "only", "f", 1), Example("b", "only", "f", 2)]
    single = Dataset(card=clinc_slice.card, splits={"train": one_label, "validation": [], "test": []},
                     labels=["only"], data_hashes={})
    assert "2 labels or more; train has 1" in arm.applies(single)
