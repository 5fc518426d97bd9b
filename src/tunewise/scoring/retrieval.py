"""Retrieval quality against gold sources: hit@k, MRR and nDCG@k.

A question's *gold source* is where its answer lives, as the data names it: a ``source``
column holding ``{"document": "Apollo_program.md", "paragraph": 14}`` (SQuAD's form: the
paragraph index is 0-based and counts the document's text paragraphs, the blocks between
blank lines that are not headings), ``{"document": ...}`` alone (any chunk of that document
counts), a bare ``"doc.md"`` string, or a list of those (several places hold the answer).

A retrieved chunk is *relevant* to a gold source when it comes from the same document and,
when the gold names a paragraph, its paragraph span covers that paragraph. Chunks are
recorded by the RAG arm in ``Prediction.extra["retrieved"]`` as ``{"source", "position",
"rank", ...}``, ``position`` being the knowledge base's (``paragraph``: an index, or a
``[first, last]`` span).

Each gold source counts once: when two overlapping chunks both cover the gold paragraph, the
second is not a second success. So with one gold source:

    hit@k      1 if a relevant chunk is among the first k, else 0
    RR         1 / rank of the first relevant chunk (0 if none was retrieved)
    nDCG@k     1 / log2(1 + rank of the first relevant chunk) within the first k, else 0

and with several, nDCG's ideal ranking puts all of them first (binary relevance). Averages
are taken over the examples that name a gold source; an example without one is left out
rather than counted as a miss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

DEFAULT_KS = (1, 5)


@dataclass(frozen=True)
class GoldSource:
    """Where an answer lives: a document (path relative to the knowledge folder), and
    optionally the 0-based paragraph within it."""

    document: str
    paragraph: int | None = None


def gold_sources(value: Any) -> list[GoldSource]:
    """The gold sources named by a data row's ``source`` value; [] when it names none.

    Accepts the forms in the module doc. Anything else (a number, a dict without
    ``document``) names no source: such rows are simply left out of the retrieval metrics.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [GoldSource(_clean_path(value))] if value.strip() else []
    if isinstance(value, Mapping):
        document = value.get("document")
        if not isinstance(document, str) or not document.strip():
            return []
        paragraph = value.get("paragraph")
        valid = isinstance(paragraph, int) and not isinstance(paragraph, bool) and paragraph >= 0
        return [GoldSource(_clean_path(document), paragraph if valid else None)]
    if isinstance(value, (list, tuple)):
        return [gold for item in value for gold in gold_sources(item)]
    return []


def _clean_path(path: str) -> str:
    """Paths compare as POSIX paths relative to the knowledge folder: ``./a\\b.md`` is ``a/b.md``."""
    return str(PurePosixPath(path.strip().replace("\\", "/")))


def paragraph_span(position: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """The first and last paragraph a chunk covers, from its position; None when unknown."""
    if not position:
        return None
    value = position.get("paragraph", position.get("paragraphs"))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, Mapping) and isinstance(value.get("start"), int) and isinstance(value.get("end"), int):
        return int(value["start"]), int(value["end"])
    return None


def is_relevant(chunk: Mapping[str, Any], gold: GoldSource) -> bool:
    """Whether a recorded chunk holds the gold source (see the module doc)."""
    source = chunk.get("source")
    if not isinstance(source, str) or _clean_path(source) != gold.document:
        return False
    if gold.paragraph is None:
        return True
    span = paragraph_span(chunk.get("position"))
    return span is not None and span[0] <= gold.paragraph <= span[1]


def relevant_ranks(chunks: Sequence[Mapping[str, Any]], golds: Sequence[GoldSource]) -> list[int]:
    """The 1-based ranks at which each gold source is first found, in rank order (each gold
    counts once; a chunk counts for at most one gold)."""
    found: set[int] = set()
    ranks: list[int] = []
    for position, chunk in enumerate(_in_rank_order(chunks), start=1):
        for index, gold in enumerate(golds):
            if index not in found and is_relevant(chunk, gold):
                found.add(index)
                ranks.append(position)
                break
    return ranks


def _in_rank_order(chunks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Recorded ranks win over list order when present (they are 1-based and may have gaps
    # once chunks are deduplicated); a stable sort keeps list order among equal ranks.
    return sorted(chunks, key=lambda chunk: chunk.get("rank") if isinstance(chunk.get("rank"), int) else math.inf)


def hit_at_k(ranks: Sequence[int], k: int) -> float:
    return float(any(rank <= k for rank in ranks))


def reciprocal_rank(ranks: Sequence[int]) -> float:
    return 1.0 / min(ranks) if ranks else 0.0


def ndcg_at_k(ranks: Sequence[int], k: int, n_gold: int) -> float:
    """Binary-relevance nDCG@k: the discounted gain of the relevant ranks within k over the
    gain of the ideal list (min(n_gold, k) relevant chunks first)."""
    if n_gold <= 0:
        return 0.0
    gain = sum(1.0 / math.log2(1 + rank) for rank in ranks if rank <= k)
    ideal = sum(1.0 / math.log2(1 + rank) for rank in range(1, min(n_gold, k) + 1))
    return gain / ideal


@dataclass(frozen=True)
class RetrievalScores:
    """One example's retrieval scores."""

    ranks: tuple[int, ...]  # where the gold sources were found (1-based), in order
    n_gold: int
    depth: int  # how many chunks were retrieved

    def hit(self, k: int) -> float:
        return hit_at_k(self.ranks, k)

    @property
    def rr(self) -> float:
        return reciprocal_rank(self.ranks)

    def ndcg(self, k: int) -> float:
        return ndcg_at_k(self.ranks, k, self.n_gold)


def score_retrieval(chunks: Sequence[Mapping[str, Any]], gold: Any) -> RetrievalScores | None:
    """An example's scores from its recorded chunks and its ``source`` value (None: no gold)."""
    golds = gold_sources(gold)
    if not golds:
        return None
    return RetrievalScores(tuple(relevant_ranks(chunks, golds)), len(golds), len(chunks))


def summarize_retrieval(scores: Iterable[RetrievalScores | None], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Means over the examples that name a gold source: ``hit@k`` for each k, ``mrr`` and
    ``ndcg@K`` at the largest k. Empty when no example names one."""
    scored = [s for s in scores if s is not None]
    if not scored:
        return {}
    summary = {f"hit@{k}": _mean(s.hit(k) for s in scored) for k in ks}
    summary["mrr"] = _mean(s.rr for s in scored)
    summary[f"ndcg@{max(ks)}"] = _mean(s.ndcg(max(ks)) for s in scored)
    return summary


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def detail_scores(details: Sequence[Mapping[str, Any] | None], gold: Sequence[Any],
                  ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """An arm's retrieval and groundedness numbers from its predictions' ``extra`` (``details``)
    and each example's ``source`` value (``gold``), in the same order. Empty for an arm whose
    predictions record no retrieval (the closed-book arms)."""
    from tunewise.scoring.groundedness import summarize_groundedness

    retrieval = [score_retrieval(detail["retrieved"], source) for detail, source in zip(details, gold)
                 if detail and isinstance(detail.get("retrieved"), list)]
    grounding = [detail.get("groundedness") for detail in details if detail]
    return {**summarize_retrieval(retrieval, ks), **summarize_groundedness(grounding)}
