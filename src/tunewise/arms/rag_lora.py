"""RAG + LoRA: a LoRA adapter trained on the RAG prompts themselves, then answering with retrieval.

Training matches inference: each training question is sent through the same knowledge base
search and the same prompt as the RAG arm (the top ``k`` chunks, defused and fenced), and the
adapter learns to write the expected answer after it. When the data names the question's
gold source and a shown chunk holds it, the answer to learn carries that chunk's citation
(``30 days [2]``), so the adapter also learns to cite; when retrieval missed, it learns the
plain answer, as it will have to give one at inference when retrieval misses.

Everything else is the two arms it combines: the RAG arm's retrieval, prompt, citations and
groundedness (arms/rag.py), and the LoRA arm's training split, validation hold-out, time
budget and adapter reuse (arms/lora.py, tunewise.train). The gap to ``rag@MODEL`` is what
fine-tuning adds on top of retrieval; the gap to ``lora@MODEL`` is what retrieval adds on top
of fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise.arms.base import ArmContext, Candidate
from tunewise.arms.lora import (
    CHARS_PER_TOKEN,
    _seeded_sample,
    _shape_from_text,
    _split_train_validation,
    cannot_train,
    check_max_train_examples,
    forecast_smallest_run_s,
    local_backend,
    record_adapter,
    training_answer,
    training_budget_s,
    training_config,
)
from tunewise.arms.rag import Rag, RagCandidate, Retrieval
from tunewise.arms.rag_prompt import rag_chat
from tunewise.errors import TunewiseError
from tunewise.models.base import Usage
from tunewise.scoring.retrieval import gold_sources, is_relevant
from tunewise.task.dataset import Dataset, Example

RETRIEVE_BATCH = 64  # training questions per knowledge-base search


@dataclass
class RagLora(Rag):
    """A LoRA adapter of ``model`` trained on RAG prompts, answering with retrieval."""

    kind_name = "rag_lora"

    settings: dict[str, Any] = field(default_factory=dict)  # LoraSettings fields; unset ones by data size
    max_train_examples: int | None = None  # train on a seeded sample of at most this many (None: all)
    seed: int | None = None  # None: the bake-off's seed

    def __post_init__(self) -> None:
        super().__post_init__()
        self._limited: dict[str, Any] | None = None
        self._lora_settings()  # fail at planning time, with the field and the bad value
        check_max_train_examples(self.max_train_examples, where="rag_lora.max_train_examples")

    def _lora_settings(self):
        from tunewise.arms.lora import Lora

        return Lora(model=self.model, settings=self.settings).lora_settings()

    def params(self) -> dict[str, Any]:
        values = super().params()
        # As for the LoRA arm: answers of an adapter a time budget limited carry the limit in
        # their cache key, so they are never served as if they came from the full training.
        if self._limited:
            values["limited_by_budget"] = self._limited
        return values

    def applies(self, dataset: Dataset) -> str | None:
        return cannot_train(self.model, dataset) or super().applies(dataset)

    def estimated_seconds(self, dataset: Dataset, n_examples: int) -> float | None:
        """As the LoRA arm's forecast, with every prompt ``max_context_tokens`` longer (the
        shown chunks), for training and answering alike."""
        shape = _shape_from_text(dataset)
        context_tokens = min(self.max_context_tokens, self.k * 1000 / CHARS_PER_TOKEN)  # chunks: <= 1,000 chars
        shape = type(shape)(shape.prefix, shape.own + context_tokens, shape.answer_work + context_tokens)
        return forecast_smallest_run_s(self.model, dataset, shape, self._lora_settings(), self.max_train_examples,
                                       n_examples)

    def prepare(self, context: ArmContext) -> Candidate:
        from tunewise.train import TrainingPair, load_adapter, train_adapter

        dataset = context.dataset
        reason = self.applies(dataset)
        if reason:
            raise TunewiseError(reason, where=self.name,
                                fix="add training examples, use a local model, and set `knowledge:` in the card")
        backend = local_backend(context, self.model, where=self.name)
        # The plain RAG candidate on the base model: its retrieval and prompts build the
        # training pairs, exactly as it will build the test prompts.
        base = super().prepare(context)
        assert isinstance(base, RagCandidate)
        seed = context.seed if self.seed is None else self.seed
        train, validation, held_out = _split_train_validation(dataset, seed)
        full = len(train)
        if self.max_train_examples is not None and len(train) > self.max_train_examples:
            train = _seeded_sample(train, self.max_train_examples, seed)

        def pairs(examples: Sequence[Example]) -> list[TrainingPair]:
            made = []
            for start in range(0, len(examples), RETRIEVE_BATCH):
                batch = examples[start : start + RETRIEVE_BATCH]
                for example, retrieval in zip(batch, base.retrieve(batch)):
                    chat = rag_chat(base.brief, retrieval.passages, example.input, base.kind, cite=base.cite)
                    made.append(TrainingPair(chat, cited_answer(example, retrieval, cite=base.cite)))
            return made

        result = train_adapter(
            backend, pairs(train), pairs(validation), self._lora_settings(), budget_s=training_budget_s(context),
            seed=seed,
            meta={"task": dataset.card.name, "arm": self.name, "data": dataset.data_hashes,
                  "knowledge": base.config["knowledge"].get("fingerprint")},
        )
        self._limited = {"stopped_at_step": result.steps} if result.stopped == "budget" else None
        record_adapter(context, self.name, result.adapter_dir)

        tuned = load_adapter(backend, result.adapter_dir)
        config = {
            **base.config,
            "arm": self.kind_name,
            "adapter": result.adapter_dir.name,
            "lora_settings": result.manifest["settings"],
            **training_config(result, seed, train, full, validation, held_out),
            "best_val_loss": result.manifest["metrics"].get("best_val_loss"),
            "reused_adapter": result.reused,
        }
        candidate = RagCandidate(tuned, base.plan, base.brief, base.retriever, config, settings=self, cite=base.cite)
        # Syncing the documents and training are the one-time cost.
        seconds = (base.prepare_usage.latency_s if base.prepare_usage else 0.0) + result.train_seconds
        candidate.prepare_usage = Usage(tokens_in=result.train_tokens, tokens_out=0, latency_s=seconds,
                                        cost_usd=result.train_seconds * backend.price_per_hour / 3600.0)
        return candidate


def cited_answer(example: Example, retrieval: Retrieval, *, cite: bool) -> str:
    """The answer a training example teaches after its RAG prompt: its output, followed by the
    number of the first shown chunk that holds its gold source (when citing, and when one does)."""
    answer = training_answer(example)
    if not cite:
        return answer
    golds = gold_sources(example.meta.get("source"))
    shown = {passage.number for passage in retrieval.passages}
    for number, hit in enumerate(retrieval.hits, start=1):
        if number in shown and any(is_relevant({"source": hit.source, "position": hit.position}, g) for g in golds):
            return f"{answer} [{number}]"
    return answer


__all__ = ["RagLora", "cited_answer"]
