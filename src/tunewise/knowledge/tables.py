"""The knowledge tables in the run store: collections, documents, chunks (SQL only).

Every function takes a SQLAlchemy ``Connection`` that the caller opened (``reading`` or
``writing`` below), so one sync writes all its changes in one transaction: a crash leaves
the collection as it was before, never half-updated. Vectors are float32 little-endian
blobs, like the embedding cache's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from tunewise.errors import StoreError
from tunewise.store.api import Store
from tunewise.store.db import WRITE, connection_error
from tunewise.store.schema import KnowledgeChunk, KnowledgeCollection, KnowledgeDocument, utcnow

COLLECTIONS = KnowledgeCollection.__table__
DOCUMENTS = KnowledgeDocument.__table__
CHUNKS = KnowledgeChunk.__table__
VECTOR_DTYPE = np.dtype("<f4")
_ROWS_PER_INSERT = 1000


@dataclass(frozen=True, slots=True)
class CollectionRow:
    id: int
    name: str
    folder: str | None
    embedder: str
    dim: int
    chunking: dict[str, Any]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: int
    path: str
    sha256: str
    bytes: int
    kind: str
    chunks: int


@dataclass(frozen=True, slots=True)
class NewChunk:
    ordinal: int
    text: str
    position: dict[str, Any]
    vector: np.ndarray


@contextmanager
def reading(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.connect() as connection, connection.begin():
            yield connection
    except OperationalError as error:
        raise connection_error(store.engine.url, error) from None


@contextmanager
def writing(store: Store) -> Iterator[Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite: writers queue instead of failing)."""
    try:
        with store.engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                yield connection
    except OperationalError as error:
        raise connection_error(store.engine.url, error) from None


# -- collections ---------------------------------------------------------------------------------


def get_collection(connection: Connection, name: str) -> CollectionRow | None:
    row = connection.execute(select(*_collection_columns()).where(COLLECTIONS.c.name == name)).first()
    return CollectionRow(*row) if row else None


def list_collections(connection: Connection) -> list[tuple[CollectionRow, int, int]]:
    """Every collection with its document and chunk counts, by name."""
    documents = (select(DOCUMENTS.c.collection_id, func.count().label("n"))
                 .group_by(DOCUMENTS.c.collection_id).subquery())
    chunks = select(CHUNKS.c.collection_id, func.count().label("n")).group_by(CHUNKS.c.collection_id).subquery()
    statement = (
        select(*_collection_columns(), func.coalesce(documents.c.n, 0), func.coalesce(chunks.c.n, 0))
        .outerjoin(documents, documents.c.collection_id == COLLECTIONS.c.id)
        .outerjoin(chunks, chunks.c.collection_id == COLLECTIONS.c.id)
        .order_by(COLLECTIONS.c.name)
    )
    return [(CollectionRow(*row[:7]), int(row[7]), int(row[8])) for row in connection.execute(statement)]


def create_collection(connection: Connection, name: str, embedder: str, dim: int, chunking: dict[str, Any],
                      fingerprint: str) -> CollectionRow:
    """The collection ``name``, created if missing (another process may create it at the same time)."""
    now = utcnow()
    try:
        with connection.begin_nested():  # a savepoint: losing the race must not abort the transaction
            connection.execute(insert(COLLECTIONS).values(
                name=name, embedder=embedder, dim=dim, chunking=chunking, fingerprint=fingerprint,
                created_at=now, updated_at=now,
            ))
    except IntegrityError:
        pass
    found = get_collection(connection, name)
    assert found is not None, "inserted or found just above"
    return found


def update_collection(connection: Connection, collection_id: int, **values: Any) -> None:
    statement = update(COLLECTIONS).where(COLLECTIONS.c.id == collection_id)
    connection.execute(statement.values(updated_at=utcnow(), **values))


def delete_collection(connection: Connection, collection_id: int) -> None:
    # Children first: the ON DELETE CASCADE is declared, but explicit deletes do not depend on
    # SQLite's per-connection foreign_keys pragma.
    connection.execute(delete(CHUNKS).where(CHUNKS.c.collection_id == collection_id))
    connection.execute(delete(DOCUMENTS).where(DOCUMENTS.c.collection_id == collection_id))
    connection.execute(delete(COLLECTIONS).where(COLLECTIONS.c.id == collection_id))


def fingerprint_of(connection: Connection, collection_id: int) -> str | None:
    return connection.scalar(select(COLLECTIONS.c.fingerprint).where(COLLECTIONS.c.id == collection_id))


# -- documents -----------------------------------------------------------------------------------


def documents(connection: Connection, collection_id: int) -> dict[str, DocumentRow]:
    columns = [DOCUMENTS.c[name] for name in DocumentRow.__dataclass_fields__]
    rows = connection.execute(select(*columns).where(DOCUMENTS.c.collection_id == collection_id))
    return {row.path: DocumentRow(*row) for row in rows}


def delete_documents(connection: Connection, collection_id: int, paths: Sequence[str]) -> list[int]:
    """Delete these documents and their chunks; returns the deleted chunks' ids."""
    chunk_ids: list[int] = []
    for start in range(0, len(paths), 500):
        batch = list(paths[start : start + 500])
        document_ids = select(DOCUMENTS.c.id).where(DOCUMENTS.c.collection_id == collection_id,
                                                    DOCUMENTS.c.path.in_(batch))
        chunk_ids += connection.scalars(select(CHUNKS.c.id).where(CHUNKS.c.document_id.in_(document_ids))).all()
        connection.execute(delete(CHUNKS).where(CHUNKS.c.document_id.in_(document_ids)))
        connection.execute(delete(DOCUMENTS).where(DOCUMENTS.c.collection_id == collection_id,
                                                   DOCUMENTS.c.path.in_(batch)))
    return chunk_ids


def add_document(connection: Connection, collection_id: int, *, path: str, sha256: str, size: int, kind: str,
                 chunks: Sequence[NewChunk]) -> list[int]:
    """Insert a document and its chunks; returns the chunks' ids, in order."""
    document_id = connection.execute(
        insert(DOCUMENTS).values(collection_id=collection_id, path=path, sha256=sha256, bytes=size, kind=kind,
                                 chunks=len(chunks), updated_at=utcnow()).returning(DOCUMENTS.c.id)
    ).scalar_one()
    rows = [
        {"collection_id": collection_id, "document_id": document_id, "ordinal": chunk.ordinal, "text": chunk.text,
         "position": chunk.position, "vector": np.ascontiguousarray(chunk.vector, dtype=VECTOR_DTYPE).tobytes()}
        for chunk in chunks
    ]
    ids: list[int] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        # sort_by_parameter_order: the ids come back in the order of the rows, on every backend.
        result = connection.execute(insert(CHUNKS).returning(CHUNKS.c.id, sort_by_parameter_order=True),
                                    rows[start : start + _ROWS_PER_INSERT])
        ids += [row[0] for row in result]
    return ids


# -- chunks --------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadedChunks:
    """A collection's chunks in memory, ordered by id: what search needs to build hits."""

    ids: np.ndarray  # int64
    sources: list[str]
    texts: list[str]
    positions: list[dict[str, Any]]
    vectors: np.ndarray | None  # (n, dim) float32, when asked for


def load_chunks(connection: Connection, collection_id: int, *, dim: int, with_vectors: bool) -> LoadedChunks:
    columns = [CHUNKS.c.id, DOCUMENTS.c.path, CHUNKS.c.text, CHUNKS.c.position]
    if with_vectors:
        columns.append(CHUNKS.c.vector)
    statement = (select(*columns).join(DOCUMENTS, DOCUMENTS.c.id == CHUNKS.c.document_id)
                 .where(CHUNKS.c.collection_id == collection_id).order_by(CHUNKS.c.id))
    rows = connection.execute(statement).all()
    vectors = None
    if with_vectors:
        width = dim * VECTOR_DTYPE.itemsize
        damaged = next((row[0] for row in rows if len(row[4]) != width), None)
        if damaged is not None:
            raise StoreError(f"chunk {damaged} does not hold a {dim}-dimensional float32 vector",
                             fix="sync the collection with another name, or delete it and add its folder again")
        # One buffer for all rows: 100,000 chunks load in a fraction of a second.
        vectors = np.frombuffer(b"".join(row[4] for row in rows), dtype=VECTOR_DTYPE).astype(np.float32)
        vectors = vectors.reshape(len(rows), dim)
    return LoadedChunks(
        ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
        sources=[row[1] for row in rows], texts=[row[2] for row in rows], positions=[row[3] for row in rows],
        vectors=vectors,
    )


def chunk_count(connection: Connection, collection_id: int) -> int:
    return int(connection.scalar(select(func.count()).where(CHUNKS.c.collection_id == collection_id)) or 0)


def _collection_columns() -> list[Any]:
    return [COLLECTIONS.c[name] for name in CollectionRow.__dataclass_fields__]
