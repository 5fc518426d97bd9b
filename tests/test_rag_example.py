"""The bundled example's knowledge (examples/support-tickets/docs, task-qa.yaml): reproducible,
read by the knowledge base as the questions' gold sources say, and answerable end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

from tunewise.knowledge import read_document
from tunewise.scoring.retrieval import gold_sources
from tunewise.task import load_card, load_task

HERE = EXAMPLES / "support-tickets"
CARD = HERE / "task-qa.yaml"


def _rows() -> list[dict]:
    with (HERE / "data" / "qa.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_regenerating_reproduces_the_documents_and_questions(tmp_path: Path):
    subprocess.run([sys.executable, str(HERE / "generate_docs.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    committed = sorted(p.name for p in (HERE / "docs").iterdir())
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == committed
    for name in committed:
        assert (tmp_path / "docs" / name).read_bytes() == (HERE / "docs" / name).read_bytes(), name
    assert (tmp_path / "qa.jsonl").read_bytes() == (HERE / "data" / "qa.jsonl").read_bytes()


def test_the_documents_come_in_several_formats():
    suffixes = {p.suffix for p in (HERE / "docs").iterdir()}
    assert suffixes == {".md", ".html", ".json"}


def test_every_gold_paragraph_holds_an_accepted_answer_as_the_knowledge_base_reads_it():
    documents = {p.name: read_document(p.name, p.read_bytes()) for p in (HERE / "docs").iterdir()}
    rows = _rows()
    assert len(rows) >= 60
    for row in rows:
        [gold] = gold_sources(row["source"])
        block = documents[gold.document].blocks[gold.paragraph]
        assert block.paragraph == gold.paragraph
        assert any(answer.lower() in block.text.lower() for answer in row["answers"]), row["input"]
        assert row["output"] == row["answers"][0]


def test_the_qa_card_points_at_the_documents_and_splits_the_questions():
    card = load_card(CARD)
    dataset = load_task(card)
    assert card.kind.value == "qa" and card.resolve(card.knowledge).is_dir()
    assert len(dataset.test) >= 20 and len(dataset.train) >= 30
    assert all(gold_sources(example.meta.get("source")) for example in dataset.test)


@pytest.mark.slow
def test_the_example_qa_task_end_to_end_with_smollm(tmp_path: Path):
    """zero-shot (closed book) against RAG with SmolLM2-135M-Instruct on every test question."""
    from tunewise.bakeoff import plan_arms, run_bakeoff
    from tunewise.store import open_store

    card = load_card(CARD)
    arms = plan_arms(card, ["zero_shot", "rag"], ["smollm2-135m-instruct"])
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        result = run_bakeoff(card, arms, store=store)
    closed, rag = result.arms
    for arm in result.arms:
        print(f"\n{arm.name}: token F1 {arm.estimate.value:.3f} [{arm.estimate.low:.3f}, {arm.estimate.high:.3f}] "
              f"{arm.secondary} p50 {arm.latency_p50_ms:.0f} ms, wall {arm.wall_s:.0f} s")
    assert rag.secondary["hit@5"] >= 0.9  # 39 short paragraphs: the right one is almost always found
    assert rag.estimate.value > closed.estimate.value  # the answers are in the documents, not in the model
