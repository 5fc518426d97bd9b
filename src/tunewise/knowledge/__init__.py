"""Knowledge: documents in, chunks out, found again by meaning and by words.

    from tunewise.knowledge import KnowledgeBase, Hit, IngestReport
    from tunewise.knowledge.embed import Embedder

    embedder = Embedder.load("all-minilm-l6-v2", store=store)
    kb = KnowledgeBase.open(store, embedder, name="support-docs")
    report = kb.sync(Path("docs"))              # added / updated / removed / unchanged / skipped
    hits = kb.search("refund policy", k=5)      # mode="hybrid" | "dense" | "lexical"

Modules, in the order data flows: ``folder`` (which files, confined to the folder),
``readers`` (file -> text with structure), ``chunk`` (heading- and paragraph-aware chunks),
``embed`` (the embedding model, cached), ``ingest`` (sync: only changed files), ``tables``
(the run store's knowledge tables), ``vectors`` (exact in-memory or pgvector search),
``lexical`` (BM25), ``retrieve`` (rank fusion, cross-encoder re-ranking), ``knowledge_base``
(the API). Importing this package does not import torch: the embedder is passed in.
"""

from tunewise.knowledge.chunk import Chunk, ChunkConfig, chunk_document
from tunewise.knowledge.folder import DEFAULT_MAX_BYTES
from tunewise.knowledge.ingest import IngestReport
from tunewise.knowledge.knowledge_base import (
    MODES,
    Hit,
    KnowledgeBase,
    SearchSettings,
    delete_collection,
    list_collections,
)
from tunewise.knowledge.readers import DocumentError, read_document
from tunewise.knowledge.retrieve import CrossEncoderReranker, reciprocal_rank_fusion

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MODES",
    "Chunk",
    "ChunkConfig",
    "CrossEncoderReranker",
    "DocumentError",
    "Hit",
    "IngestReport",
    "KnowledgeBase",
    "SearchSettings",
    "chunk_document",
    "delete_collection",
    "list_collections",
    "read_document",
    "reciprocal_rank_fusion",
]
