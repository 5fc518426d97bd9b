"""`KnowledgeBase`: a named collection of documents in the run store, synced from a folder,
searched by meaning (dense), by words (BM25) or both (hybrid, reciprocal rank fusion),
optionally re-ranked by a cross-encoder.

    kb = KnowledgeBase.open(store, embedder, name="support-docs")
    report = kb.sync(Path("docs"))                 # only changed files are re-embedded
    hits = kb.search("how do I get a refund?", k=5)  # hybrid by default
    kb.fingerprint                                  # changes with the content or the embedder

Search works from any process that opens the same store: what it needs (chunk texts, the
BM25 index, the exact vector matrix) is loaded on first use and reloaded whenever the
collection's fingerprint in the store changes, so a sync by another process is seen by the
next search.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunewise.errors import StoreError, TunewiseError
from tunewise.knowledge import tables
from tunewise.knowledge.chunk import ChunkConfig, indexed_text
from tunewise.knowledge.folder import DEFAULT_MAX_BYTES
from tunewise.knowledge.ingest import IngestProgress, IngestReport, collection_fingerprint, sync_folder
from tunewise.knowledge.lexical import LexicalIndex
from tunewise.knowledge.retrieve import RRF_K, CrossEncoderReranker, reciprocal_rank_fusion
from tunewise.knowledge.vectors import (
    ExactIndex,
    PgvectorIndex,
    Ranked,
    VectorIndex,
    drop_collection_indexes,
    pgvector_available,
)

if TYPE_CHECKING:
    from tunewise.knowledge.embed import Embedder
    from tunewise.store.api import Store

SearchMode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")
VectorIndexChoice = Literal["auto", "exact", "pgvector"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk.

    ``position`` holds ``heading`` (the heading path, outermost first), ``paragraphs``
    ([first, last], 0-based, inclusive: the document paragraphs the chunk spans), ``start`` and
    ``end`` (its character span in the document's text: the file's own text for Markdown and
    plain text, the extracted text for HTML, PDF and JSON), and ``page`` (PDF, 1-based) or
    ``record`` (JSON/JSONL, 0-based) when the reader knows them. ``score`` is the mode's:
    cosine (dense), BM25 (lexical), fused RRF (hybrid) or the cross-encoder's when re-ranked.
    """

    chunk_id: int
    source: str  # the document's path relative to the folder, e.g. "Apollo_program.md"
    position: dict[str, Any]
    text: str
    score: float
    rank: int  # 1-based

    def covers(self, source: str, paragraph: int) -> bool:
        """Whether this hit is (or contains) that paragraph of that document: a gold-source check."""
        first, last = self.position.get("paragraphs", (None, None))
        return self.source == source and first is not None and first <= paragraph <= last


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """How search candidates are gathered before the top k are returned."""

    candidates: int = field(default=50, metadata={"help": "Chunks each retriever contributes before fusion."})
    rrf_k: int = field(default=RRF_K, metadata={"help": "Reciprocal rank fusion constant."})
    rerank_candidates: int = field(default=20, metadata={"help": "Top fused chunks the cross-encoder re-orders."})


@dataclass
class _Loaded:
    fingerprint: str
    chunks: tables.LoadedChunks
    row_of: dict[int, int]  # chunk id -> row in `chunks`
    dense: VectorIndex | None
    lexical: LexicalIndex


class KnowledgeBase:
    """A named collection; build it with `KnowledgeBase.open`."""

    def __init__(self, store: Store, embedder: Embedder, collection: tables.CollectionRow, *,
                 chunking: ChunkConfig, vector_index: VectorIndexChoice, reranker: CrossEncoderReranker | None,
                 settings: SearchSettings, max_bytes: int):
        self.store = store
        self.embedder = embedder
        self.name = collection.name
        self._collection = collection
        self.chunking = chunking
        self.reranker = reranker
        self.settings = settings
        self.max_bytes = max_bytes
        self._vector_choice = vector_index
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        store: Store,
        embedder: Embedder,
        name: str,
        *,
        chunking: ChunkConfig | None = None,
        vector_index: VectorIndexChoice = "auto",
        reranker: str | CrossEncoderReranker | None = None,
        settings: SearchSettings | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> KnowledgeBase:
        """The collection ``name`` in ``store``, created empty if new.

        ``chunking``: default, the collection's own (or `ChunkConfig()` for a new one); a
        different one re-chunks every document on the next sync. ``vector_index``: "auto"
        (pgvector when the store is PostgreSQL with the extension, else exact in memory),
        "exact" or "pgvector". ``reranker``: a cross-encoder (folder or hub id) that re-orders
        the top candidates of every search.
        """
        name = name.strip()
        if not name or len(name) > 200:
            raise TunewiseError(f"a knowledge collection needs a name of 1-200 characters, got {name!r}",
                                fix="pass --name support-docs")
        if vector_index not in ("auto", "exact", "pgvector"):
            raise TunewiseError(f"unknown vector index {vector_index!r}", fix="use auto, exact or pgvector")
        with tables.writing(store) as connection:
            existing = tables.get_collection(connection, name)
            if existing is None:
                config = chunking or ChunkConfig()
                existing = tables.create_collection(
                    connection, name, embedder.model_id, embedder.dim, config.model_dump(mode="json"),
                    collection_fingerprint(embedder.model_id, config, {}),
                )
        config = chunking or ChunkConfig.model_validate(existing.chunking)
        if isinstance(reranker, str):
            reranker = CrossEncoderReranker(reranker)
        return cls(store, embedder, existing, chunking=config, vector_index=vector_index, reranker=reranker,
                   settings=settings or SearchSettings(), max_bytes=max_bytes)

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.name!r}, {self.store.url!r})"

    # -- what it holds -------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """sha256 over the embedder, the chunking and every document's content hash, as stored now."""
        with tables.reading(self.store) as connection:
            found = tables.fingerprint_of(connection, self._collection.id)
        if found is None:
            raise self._gone()
        return found

    @property
    def vector_index_kind(self) -> str:
        """"exact" or "pgvector": the dense index searches use."""
        return self._dense_choice()

    def documents(self) -> list[tables.DocumentRow]:
        with tables.reading(self.store) as connection:
            return sorted(tables.documents(connection, self._collection.id).values(), key=lambda d: d.path)

    # -- syncing -------------------------------------------------------------------------------

    def sync(self, folder: Path, *, progress: IngestProgress | None = None) -> IngestReport:
        """Bring the collection in line with ``folder``: new and changed files are (re-)embedded,
        deleted ones leave the index, unreadable or unsafe ones are skipped and reported."""
        mirror = None
        if self._dense_choice() == "pgvector":
            mirror = PgvectorIndex.open(self.store, self._collection.id, self.embedder.dim, create_index=False)
            with tables.writing(self.store) as connection:
                mirror.sync_missing(connection)
        report = sync_folder(self.store, self._refresh_row(), Path(folder), embedder=self.embedder,
                             chunking=self.chunking, mirror=mirror, max_bytes=self.max_bytes, progress=progress)
        self._refresh_row()
        return report

    # -- searching -----------------------------------------------------------------------------

    def search(self, query: str, k: int = 5, mode: SearchMode = "hybrid") -> list[Hit]:
        """The k chunks that best answer ``query``, best first."""
        if not isinstance(query, str):
            raise TunewiseError("search takes one query string", fix="use search_many for several")
        return self.search_many([query], k=k, mode=mode)[0]

    def search_many(self, queries: Sequence[str], k: int = 5, mode: SearchMode = "hybrid") -> list[list[Hit]]:
        """`search` for each query, with the queries embedded in one batch."""
        if isinstance(queries, str):
            raise TunewiseError("search_many takes a sequence of queries, not one string", fix="pass [query]")
        if mode not in MODES:
            raise TunewiseError(f"unknown search mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
        if k < 1:
            raise TunewiseError(f"k must be at least 1, got {k}", fix="pass k=5")
        queries = list(queries)
        loaded = self._load(need_dense=mode != "lexical")
        if not queries or not len(loaded.chunks.ids):
            return [[] for _ in queries]
        wanted = max(k, self.settings.candidates, self.settings.rerank_candidates if self.reranker else 0)
        answered = [i for i, query in enumerate(queries) if query.strip()]
        asked = [queries[i] for i in answered]
        dense: list[Ranked] = [[] for _ in asked]
        lexical: list[Ranked] = [[] for _ in asked]
        if mode != "lexical" and asked:
            assert loaded.dense is not None
            dense = loaded.dense.search(self.embedder.encode(asked), wanted)
        if mode != "dense" and asked:
            lexical = loaded.lexical.search(asked, wanted)
        results: list[list[Hit]] = [[] for _ in queries]
        for slot, query, dense_ranked, lexical_ranked in zip(answered, asked, dense, lexical, strict=True):
            if mode == "dense":
                ranked = dense_ranked
            elif mode == "lexical":
                ranked = lexical_ranked
            else:
                ranked = reciprocal_rank_fusion([dense_ranked, lexical_ranked], rrf_k=self.settings.rrf_k)
            if self.reranker is not None:
                top = ranked[: self.settings.rerank_candidates]
                ranked = self.reranker.rerank(query, [(c, loaded.chunks.texts[loaded.row_of[c]]) for c, _ in top])
            results[slot] = [self._hit(loaded, chunk_id, score, rank)
                             for rank, (chunk_id, score) in enumerate(ranked[:k], start=1)]
        return results

    # -- plumbing ------------------------------------------------------------------------------

    def _hit(self, loaded: _Loaded, chunk_id: int, score: float, rank: int) -> Hit:
        row = loaded.row_of[chunk_id]
        chunks = loaded.chunks
        return Hit(chunk_id=chunk_id, source=chunks.sources[row], position=dict(chunks.positions[row]),
                   text=chunks.texts[row], score=score, rank=rank)

    def _dense_choice(self) -> str:
        if self._vector_choice == "auto":
            self._vector_choice = "pgvector" if pgvector_available(self.store) else "exact"
        return self._vector_choice

    def _refresh_row(self) -> tables.CollectionRow:
        with tables.reading(self.store) as connection:
            row = tables.get_collection(connection, self.name)
        if row is None or row.id != self._collection.id:
            raise self._gone()
        self._collection = row
        return row

    def _load(self, *, need_dense: bool) -> _Loaded:
        """The in-memory side, reloaded when the stored fingerprint moved (see the module docstring)."""
        with self._lock:
            row = self._refresh_row()
            if need_dense and row.embedder != self.embedder.model_id:
                raise StoreError(
                    f"collection {self.name!r} was embedded with {row.embedder}, not {self.embedder.model_id}",
                    fix=f"sync it again with this embedder (tunewise knowledge add FOLDER --name {self.name}), "
                    "or open it with the embedder it was built with",
                )
            loaded = self._loaded
            if loaded is not None and loaded.fingerprint == row.fingerprint and (loaded.dense or not need_dense):
                return loaded
            kind = self._dense_choice()
            with tables.reading(self.store) as connection:
                chunks = tables.load_chunks(connection, row.id, dim=row.dim,
                                            with_vectors=need_dense and kind == "exact")
            dense: VectorIndex | None = None
            if need_dense:
                dense = ExactIndex(chunks.ids, chunks.vectors) if kind == "exact" \
                    else PgvectorIndex.open(self.store, row.id, row.dim)
            if loaded is not None and loaded.fingerprint == row.fingerprint:
                lexical = loaded.lexical
            else:
                stored = ChunkConfig.model_validate(row.chunking)  # the chunking these chunks were made with
                lexical = LexicalIndex(chunks.ids, [indexed_text(text, position.get("heading") or [], stored)
                                                    for text, position in zip(chunks.texts, chunks.positions,
                                                                              strict=True)])
            row_of = {int(chunk_id): i for i, chunk_id in enumerate(chunks.ids)}
            self._loaded = _Loaded(row.fingerprint, chunks, row_of, dense, lexical)
            return self._loaded

    def _gone(self) -> StoreError:
        return StoreError(f"knowledge collection {self.name!r} no longer exists in the store", where=self.store.url,
                          fix="open it again (it is created empty) and sync its folder")


def delete_collection(store: Store, name: str) -> bool:
    """Remove a collection and everything in it; False if there was none of that name."""
    with tables.writing(store) as connection:
        found = tables.get_collection(connection, name)
        if found is None:
            return False
        tables.delete_collection(connection, found.id)
        drop_collection_indexes(connection, found.id)
    return True


def list_collections(store: Store) -> list[tuple[tables.CollectionRow, int, int]]:
    """(collection, documents, chunks) for every collection, by name."""
    with tables.reading(store) as connection:
        return tables.list_collections(connection)
