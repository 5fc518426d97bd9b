"""RAG + LoRA: the adapter is trained on the RAG prompts (retrieved chunks included), with
citations of the chunk that holds the gold source, and answers through the RAG arm's path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rag_fixtures import Found, LexicalRetriever
from test_rag import DOCS, QUESTIONS, write_qa_task

from tunewise.arms.base import ArmContext
from tunewise.arms.rag import Retrieval
from tunewise.arms.rag_lora import RagLora, cited_answer
from tunewise.arms.rag_prompt import Passage
from tunewise.bakeoff.plan import arm_kinds_for, plan_arms
from tunewise.errors import TunewiseError
from tunewise.task import load_card, load_task
from tunewise.task.dataset import Example

FAST = {"rank": 4, "learning_rate": 2e-2, "epochs": 2, "batch_size": 4, "eval_every": 4, "threads": 1}


def write_trainable_task(root: Path) -> Path:
    """The RAG test task with 12 training questions (variants of the four), enough to train."""
    card = write_qa_task(root)
    rows = [{"input": f"{q} ({i})", "output": a, "answers": [a], "source": {"document": d, "paragraph": p}}
            for i in range(3) for q, a, d, p in QUESTIONS]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return card


def example(source) -> Example:
    return Example("q?", "30 days", "t.jsonl", 1, meta={"source": source})


def retrieval(*sources: tuple[str, int], shown: int = 2) -> Retrieval:
    hits = [Found(i, s, {"paragraphs": [p, p]}, "text", 1.0, i) for i, (s, p) in enumerate(sources, start=1)]
    return Retrieval(hits, [Passage(n, h.source, h.text) for n, h in enumerate(hits[:shown], start=1)], {})


def test_the_answer_to_learn_cites_the_shown_chunk_that_holds_the_gold_source():
    found = retrieval(("a.md", 0), ("refunds.md", 0), ("refunds.md", 0))
    gold = {"document": "refunds.md", "paragraph": 0}
    assert cited_answer(example(gold), found, cite=True) == "30 days [2]"
    assert cited_answer(example(gold), found, cite=False) == "30 days"
    assert cited_answer(example(None), found, cite=True) == "30 days"  # no gold source named
    missed = retrieval(("a.md", 0), ("b.md", 0), ("refunds.md", 0))  # found, but third: not shown
    assert cited_answer(example(gold), missed, cite=True) == "30 days"


def test_rag_lora_applies_to_local_models_with_documents_and_training_data(tmp_path: Path):
    card = load_card(write_trainable_task(tmp_path / "ok"))
    assert "rag_lora" in arm_kinds_for(card)
    [arm] = plan_arms(card, ["rag_lora"], ["m"])
    assert arm.name == "rag_lora@m" and arm.applies(load_task(card)) is None
    remote = plan_arms(card, ["rag_lora"], ["openai:gpt-4o-mini"])[0]
    assert "served by an API" in remote.applies(load_task(card))
    few = load_card(write_qa_task(tmp_path / "few"))  # 2 training examples
    assert "at least 8 training examples" in plan_arms(few, ["rag_lora"], ["m"])[0].applies(load_task(few))
    with pytest.raises(TunewiseError) as error:
        RagLora(model="m", settings={"rank": 0})
    assert error.value.where.startswith("lora.settings")


def test_rag_lora_trains_on_the_rag_prompts_and_answers_with_retrieval(tmp_path: Path, tiny_llama, monkeypatch):
    import tunewise.train as train
    from tunewise.models.local import LocalBackend

    seen = {}
    real = train.train_adapter

    def recording(backend, pairs, validation, settings=None, **kwargs):
        seen["pairs"], seen["validation"] = list(pairs), list(validation)
        return real(backend, pairs, validation, settings, **kwargs)

    monkeypatch.setattr(train, "train_adapter", recording)
    card = load_card(write_trainable_task(tmp_path))
    dataset = load_task(card)
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    retriever = LexicalRetriever(card.resolve(card.knowledge))
    arm = RagLora(model="tiny", retriever=retriever, settings=FAST, k=2, depth=4)
    candidate = arm.prepare(ArmContext(dataset=dataset, backend=lambda spec: backend, embedder=lambda: None))

    # Training saw the prompts inference builds: the documents, then the question; and the
    # answers carry the citation of the chunk with the gold paragraph.
    pairs = seen["pairs"]
    assert len(pairs) + len(seen["validation"]) == len(dataset.train)
    for pair in pairs:
        user = pair.prompt[-1].content
        question = user.rsplit("Question: ", 1)[1].split(" (")[0]
        assert '<document id="1"' in user and question in {q for q, *_ in QUESTIONS}
        assert pair.answer.endswith("[1]")  # the lexical retriever puts the gold paragraph first
    assert candidate.config["arm"] == "rag_lora" and candidate.config["train_examples"] == len(pairs)
    assert candidate.model_id != backend.model_id  # the adapter merged into a copy
    predictions = candidate.predict(dataset.test)
    assert len(predictions) == len(QUESTIONS) and all(len(p.extra["retrieved"]) == 4 for p in predictions)
    assert all(p.usage.tokens_in > 50 for p in predictions) and set(DOCS) >= {
        p.extra["retrieved"][0]["source"] for p in predictions}
