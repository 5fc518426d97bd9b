"""Fusing ranked lists, and re-ranking with a cross-encoder.

Hybrid search runs dense and BM25 retrieval separately and fuses their rankings by
reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): each chunk scores
``sum(1 / (rrf_k + rank))`` over the lists it appears in. RRF needs no score calibration
(cosine and BM25 scores live on unrelated scales) and its constant 60 is the paper's, robust
across collections.

A cross-encoder (``sentence_transformers.CrossEncoder``) reads the query and a chunk
together, which ranks better than comparing two separately made vectors but costs one model
pass per pair, so it only re-orders the first ``candidates`` of the fused list.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunewise.errors import TunewiseError
from tunewise.knowledge.vectors import Ranked

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Ranked], *, rrf_k: int = RRF_K) -> Ranked:
    """One ranking from several: by summed 1/(rrf_k + rank), ties by first appearance."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _score) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])  # sorted() is stable: ties keep first appearance


class CrossEncoderReranker:
    """Re-scores (query, passage) pairs with a sentence-transformers cross-encoder."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32):
        try:
            from sentence_transformers import CrossEncoder
        except ImportError:
            raise TunewiseError("re-ranking needs sentence-transformers",
                                fix="pip install sentence-transformers") from None
        local = Path(model).expanduser()
        try:
            self._model = CrossEncoder(str(local) if local.is_dir() else model, device=device,
                                       local_files_only=local.is_dir())
        except Exception as error:  # noqa: BLE001 - every loading failure becomes one the user can act on
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise TunewiseError(f"could not load the cross-encoder: {reason}", where=model,
                                fix="give a folder written by CrossEncoder.save(), or a hub id cached locally "
                                "(HF_HUB_OFFLINE=1 uses the cache)") from None
        self.name = model
        self.batch_size = batch_size

    def rerank(self, query: str, passages: Sequence[tuple[int, str]]) -> Ranked:
        """(chunk id, cross-encoder score) for the passages, best first."""
        if not passages:
            return []
        scores = self._model.predict([(query, text) for _, text in passages], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        ranked = sorted(zip((chunk_id for chunk_id, _ in passages), scores.tolist(), strict=True),
                        key=lambda item: -item[1])
        return [(chunk_id, float(score)) for chunk_id, score in ranked]
