"""Retrieval-augmented generation: retrieve chunks of the card's documents, answer from them.

Per batch of inputs: one ``search_many`` over the knowledge base (hybrid BM25 + dense by
default), the top ``k`` chunks defused and fenced as untrusted data (arms/rag_prompt.py),
one backend call for the batch, then each answer's [n] citations mapped back to the
documents, links the question did not hold taken out, and its groundedness measured against
the text that was shown (scoring/groundedness.py).

``depth`` chunks are retrieved and recorded though only ``k`` are shown: retrieval is scored
(hit@5, MRR, nDCG) deeper than the prompt reads, so the table says whether a miss is the
retriever's or the generator's. Per prediction, ``extra`` holds:

    retrieved       the depth chunks: source, position, rank, score, chunk_id
    shown           how many of them were in the prompt (the first ones)
    cited           the sources the answer cites (empty when it cites none or citations are off)
    groundedness    see scoring/groundedness.py
    defused         what was taken out of the shown chunks (instruction, url, link, image, markup)
    post_check      what was taken out of the answer (url, link, image, markup)

Works with any generator backend: ``generator(context)`` loads ``model`` through the
bake-off, and the RAG + LoRA arm overrides it to put a trained adapter on top.

The knowledge base is the card's ``knowledge`` folder, synced (only changed files are
re-read and re-embedded) when the arm prepares. What the folder holds is part of the arm's
parameters (``knowledge``: a digest of its files), hence of the call cache's key: edit a
document and every RAG answer is recomputed, while the closed-book arms keep theirs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tunewise.arms.answers import AnswerPlan, answer_batch
from tunewise.arms.base import Arm, ArmContext, Candidate, Prediction
from tunewise.arms.prompts import task_brief
from tunewise.arms.rag_prompt import (
    RAG_PROMPT_VERSION,
    Passage,
    defuse,
    fit_passages,
    post_check,
    rag_chat,
    split_citations,
)
from tunewise.arms.zero_shot import base_config, labels_missing
from tunewise.errors import TunewiseError
from tunewise.knowledge.ingest import IngestReport
from tunewise.models.base import Backend, Chat, Usage
from tunewise.scoring.groundedness import assess
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Dataset, Example

MODES = ("hybrid", "dense", "lexical")
DEFAULT_K = 3
TEXT_KINDS = (Kind.qa, Kind.generate)  # kinds whose answers are free text: cited and post-checked


class HitLike(Protocol):
    """What the RAG arm reads from a search hit (`tunewise.knowledge.Hit`)."""

    chunk_id: Any
    source: str
    position: Mapping[str, Any]
    text: str
    score: float
    rank: int


class Retriever(Protocol):
    """What the RAG arm needs from a knowledge base (`tunewise.knowledge.KnowledgeBase`)."""

    @property
    def fingerprint(self) -> str: ...

    def search_many(self, queries: Sequence[str], k: int = 5, mode: str = "hybrid") -> list[list[HitLike]]: ...


@dataclass
class Rag(Arm):
    """Answer from the top ``k`` of ``depth`` chunks retrieved from the card's documents."""

    kind_name = "rag"  # the arm kind, in names and configs (RAG + LoRA has its own)

    model: str
    folder: str | None = None  # the card's knowledge folder, resolved (the planner fills it in)
    k: int = DEFAULT_K  # chunks shown in the prompt
    depth: int = 10  # chunks retrieved and recorded (retrieval metrics look this deep)
    mode: str = "hybrid"
    max_context_tokens: int = 1200  # all shown chunks together, tags included
    max_passage_tokens: int = 400  # one chunk is cut to this
    neutralise: bool = True  # strip links and model-addressing sentences from retrieved text
    cite: bool = True  # ask for [n] citations (qa and generate)
    #: A ready retriever to use instead of the card's knowledge base (tests; an index built
    #: elsewhere). Not a parameter: its fingerprint stands for it.
    retriever: Retriever | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TunewiseError(f"unknown retrieval mode {self.mode!r}", where=f"{self.kind_name}.mode",
                                fix=f"use one of {', '.join(MODES)}")
        for name in ("k", "depth", "max_context_tokens", "max_passage_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TunewiseError(f"{name} must be a positive integer, got {value!r}",
                                    where=f"{self.kind_name}.{name}", fix=f"set {name} to 1 or more")
        if self.depth < self.k:
            raise TunewiseError(f"depth ({self.depth}) is below k ({self.k})", where=f"{self.kind_name}.depth",
                                fix="retrieve at least as many chunks as the prompt shows")
        self._digest: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        suffix = ("" if self.k == DEFAULT_K else f"_k{self.k}") + ("" if self.neutralise else "_unguarded")
        return f"{self.kind_name}{suffix}@{self.model}"

    def applies(self, dataset: Dataset) -> str | None:
        if self.retriever is None:
            if dataset.card.knowledge is None:
                return "the card names no `knowledge` folder of documents to retrieve from"
            if self.folder is None or not Path(self.folder).is_dir():
                return f"the knowledge folder {self.folder or dataset.card.knowledge} does not exist"
        return labels_missing(dataset)

    def params(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("folder", "retriever")}
        # The prompt's wording decides the answers as much as any setting: in the cache key.
        values["rag_prompt_version"] = RAG_PROMPT_VERSION
        values["knowledge"] = self.knowledge_digest()
        if self.retriever is None:
            values["chunking"] = self.chunking()
        return values

    def chunking(self) -> dict[str, Any]:
        """How the knowledge base cuts the documents (its defaults): part of the parameters,
        since other chunks mean other retrieved text."""
        from tunewise.knowledge import ChunkConfig

        return ChunkConfig().model_dump(mode="json")

    def knowledge_digest(self) -> str | None:
        """What the answers depend on in the documents: the injected retriever's fingerprint,
        or a digest of the folder's files (names and bytes), computed once."""
        if self.retriever is not None:
            return self.retriever.fingerprint
        if self._digest is None and self.folder is not None and Path(self.folder).is_dir():
            self._digest = folder_digest(Path(self.folder))
        return self._digest

    # -- preparing ----------------------------------------------------------------------------

    def generator(self, context: ArmContext) -> Backend:
        """The model that writes the answers (the RAG + LoRA arm puts its adapter on it)."""
        return context.backend(self.model)

    def prepare(self, context: ArmContext) -> Candidate:
        reason = self.applies(context.dataset)
        if reason:
            raise TunewiseError(reason, where=self.name,
                                fix="set `knowledge:` in the task card to a folder of documents")
        began = time.perf_counter()
        retriever, knowledge = self.open_retriever(context)
        sync_s = time.perf_counter() - began
        backend = self.generator(context)
        dataset = context.dataset
        plan = AnswerPlan.for_dataset(dataset, backend.count_tokens)
        cite = self.cite and dataset.card.kind in TEXT_KINDS
        brief = task_brief(dataset.card, labels=plan.labels, schema=plan.schema)  # zero-shot's system message
        config = {
            **base_config(self.kind_name, self.model, plan),
            **{key: value for key, value in self.params().items() if key != "model"},
            "cite": cite,
            "knowledge": knowledge,
        }
        candidate = RagCandidate(backend, plan, brief, retriever, config, settings=self, cite=cite)
        # Syncing the knowledge base (reading, chunking, embedding what changed) is the
        # one-time cost, amortised by the verdict like training.
        candidate.prepare_usage = Usage(tokens_in=0, tokens_out=0, latency_s=sync_s, cost_usd=0.0)
        return candidate

    def open_retriever(self, context: ArmContext) -> tuple[Retriever, dict[str, Any]]:
        """The knowledge base, synced with the folder, and what to record about it."""
        if self.retriever is not None:
            return self.retriever, {"fingerprint": self.retriever.fingerprint}
        if context.store is None:
            raise TunewiseError("the RAG arm needs the run store to keep its knowledge base in", where=self.name,
                                fix="run it through `tunewise bakeoff` (or pass ArmContext.store)")
        from tunewise.knowledge import ChunkConfig, KnowledgeBase

        folder = Path(self.folder or "")
        # The chunking is named, not left to the collection, so the chunks always match the
        # `chunking` parameter that the cache key holds.
        kb = KnowledgeBase.open(context.store, context.embedder(), name=knowledge_name(folder),
                                chunking=ChunkConfig.model_validate(self.chunking()))
        report = kb.sync(folder)
        return kb, {"fingerprint": kb.fingerprint, "folder": str(folder), "sync": _report(report)}


def knowledge_name(folder: Path) -> str:
    """The knowledge base's name for a folder: readable, and unique per absolute path."""
    resolved = str(folder.resolve())
    return f"{folder.resolve().name}-{hashlib.sha256(resolved.encode('utf-8')).hexdigest()[:8]}"


def folder_digest(folder: Path) -> str:
    """sha256 over the folder's visible regular files: their relative names and contents."""
    digest = hashlib.sha256()
    root = folder.resolve()
    for directory, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _report(report: IngestReport) -> dict[str, Any]:
    """An ingest report as plain JSON for the arm's config: counts, and what was skipped and why."""
    return {
        **{name: len(getattr(report, name)) for name in ("added", "updated", "removed", "unchanged")},
        "chunks": report.chunks,
        "chunks_embedded": report.chunks_embedded,
        "skipped": [f"{path}: {reason}" for path, reason in report.skipped],
    }


# -- answering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retrieval:
    """One input's retrieved chunks and the passages made of them for its prompt."""

    hits: list[HitLike]
    passages: list[Passage]
    defused: dict[str, int]


class RagCandidate(Candidate):
    def __init__(self, backend: Backend, plan: AnswerPlan, brief: str, retriever: Retriever,
                 config: dict[str, Any], *, settings: Rag, cite: bool):
        self.backend = backend
        self.plan = plan
        self.brief = brief
        self.retriever = retriever
        self.config = config
        self.model_id = backend.model_id
        self.settings = settings
        self.cite = cite
        self.kind = plan.kind

    def retrieve(self, batch: Sequence[Example]) -> list[Retrieval]:
        s = self.settings
        hit_lists = self.retriever.search_many([example.input for example in batch], k=s.depth, mode=s.mode)
        if len(hit_lists) != len(batch):
            raise RuntimeError(f"the retriever returned {len(hit_lists)} result lists for {len(batch)} queries")
        return [self._passages(list(hits)) for hits in hit_lists]

    def _passages(self, hits: list[HitLike]) -> Retrieval:
        s = self.settings
        removed: dict[str, int] = {}
        candidates = []
        for number, hit in enumerate(hits[: s.k], start=1):
            cleaned = defuse(hit.text, neutralise_text=s.neutralise)
            for kind, n in cleaned.removed.items():
                removed[kind] = removed.get(kind, 0) + n
            candidates.append(Passage(number, hit.source, cleaned.text))
        passages = fit_passages(candidates, s.max_context_tokens, s.max_passage_tokens, self.backend.count_tokens)
        return Retrieval(hits, passages, removed)

    def prompts(self, batch: Sequence[Example], retrievals: Sequence[Retrieval]) -> list[Chat]:
        return [rag_chat(self.brief, r.passages, example.input, self.kind, cite=self.cite)
                for example, r in zip(batch, retrievals)]

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        if not batch:
            return []
        began = time.perf_counter()
        retrievals = self.retrieve(batch)
        retrieval_share = (time.perf_counter() - began) / len(batch)
        predictions = answer_batch(self.backend, self.prompts(batch, retrievals), self.plan)
        return [self._finish(prediction, example, retrieval, retrieval_share)
                for prediction, example, retrieval in zip(predictions, batch, retrievals)]

    def _finish(self, prediction: Prediction, example: Example, retrieval: Retrieval, retrieval_s: float) -> Prediction:
        """Citations, the post-check and groundedness on top of the plain answer."""
        extra: dict[str, Any] = {
            **prediction.extra,
            "retrieved": [_hit_record(hit) for hit in retrieval.hits],
            "shown": len(retrieval.passages),
        }
        if retrieval.defused:
            extra["defused"] = retrieval.defused
        output = prediction.output
        if self.kind in TEXT_KINDS:
            output, numbers = split_citations(output)
            output, removed = post_check(output, example.input)
            if removed:
                extra["post_check"] = removed
            shown = retrieval.passages
            extra["cited"] = [shown[n - 1].source for n in numbers if 1 <= n <= len(shown)]
            extra["groundedness"] = assess(output, [p.text for p in shown], numbers if self.cite else None).to_dict()
        raw = prediction.raw
        if raw is None and output != prediction.output:
            raw = prediction.output  # the reply as written, citations and all
        usage = dataclasses.replace(prediction.usage, latency_s=prediction.usage.latency_s + retrieval_s)
        return dataclasses.replace(prediction, output=output, raw=raw, usage=usage, extra=extra)

    def batch_size(self) -> int:
        return 8  # prompts carry ~1,000 tokens of documents each


def _hit_record(hit: HitLike) -> dict[str, Any]:
    return {"source": hit.source, "position": dict(hit.position or {}), "rank": int(hit.rank),
            "score": float(hit.score), "chunk_id": hit.chunk_id}


def rag_folder(card: TaskCard) -> str | None:
    """The card's knowledge folder as an absolute path (None when it names none)."""
    return str(card.resolve(card.knowledge).resolve()) if card.knowledge is not None else None
