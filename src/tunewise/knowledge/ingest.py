"""Syncing a folder into a collection: only what changed is read, chunked and embedded.

1. `folder.scan` lists the documents (confined to the folder; what it skips is reported).
2. Each file is read once and hashed (sha256 of its bytes). A file whose hash, and the
   collection's embedder and chunking, are what the index holds is ``unchanged`` and not
   parsed. Others are parsed (`readers`), chunked (`chunk`) and queued.
3. Every queued chunk is embedded in one `Embedder.encode` call (batched across files; texts
   already in the embedding cache, such as the untouched paragraphs of an edited file, are
   not embedded again).
4. One write transaction replaces the changed documents' chunks, inserts the new ones,
   deletes documents no longer in the folder (or no longer readable), mirrors vectors into
   pgvector when that index is used, and records the collection's new fingerprint. A crash
   before the commit leaves the collection exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.errors import DataError
from tunewise.knowledge import tables
from tunewise.knowledge.chunk import Chunk, ChunkConfig, chunk_document
from tunewise.knowledge.folder import (
    DEFAULT_MAX_BYTES,
    FoundFile,
    Skipped,
    read_confined,
    scan,
)
from tunewise.knowledge.readers import read_document
from tunewise.knowledge.vectors import drop_collection_indexes
from tunewise.store.api import Store
from tunewise.store.digests import sha256_json

IngestProgress = Callable[[str, int, int], None]
"""Called with (stage, done, total): stage "read" per file, then "embed" per batch."""


@dataclass
class IngestReport:
    """What a sync did. File lists hold paths relative to the folder."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason: code and detail)
    chunks: int = 0  # chunks in the collection after the sync
    chunks_embedded: int = 0  # chunks (re)written by this sync; texts embedded before come from the cache
    fingerprint: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def to_dict(self) -> dict[str, object]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed, "unchanged": self.unchanged,
                "skipped": [list(item) for item in self.skipped], "chunks": self.chunks,
                "chunks_embedded": self.chunks_embedded, "fingerprint": self.fingerprint}


@dataclass
class _Pending:
    file: FoundFile
    sha256: str
    chunks: list[Chunk]
    is_new: bool


def collection_fingerprint(embedder_id: str, chunking: ChunkConfig, documents: dict[str, str]) -> str:
    """sha256 over the embedder, the chunking and every (path, content hash): changes when any does."""
    return sha256_json({"embedder": embedder_id, "chunking": chunking.model_dump(mode="json"),
                        "documents": sorted(documents.items())})


def sync_folder(
    store: Store,
    collection: tables.CollectionRow,
    folder: Path,
    *,
    embedder,  # tunewise.knowledge.embed.Embedder (not imported: it pulls in torch)
    chunking: ChunkConfig,
    mirror=None,  # a PgvectorIndex to keep in step, or None
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: IngestProgress | None = None,
) -> IngestReport:
    found, skipped = scan(folder, max_bytes=max_bytes)
    report = IngestReport(skipped=[(item.name, _reason(item)) for item in skipped])
    with tables.reading(store) as connection:
        indexed = tables.documents(connection, collection.id)
    # Another embedder or chunking makes every stored chunk stale: all files are redone.
    settings_changed = (collection.embedder != embedder.model_id
                        or collection.chunking != chunking.model_dump(mode="json"))

    pending: list[_Pending] = []
    current: dict[str, str] = {}  # path -> sha256 of every readable document
    for number, file in enumerate(found, start=1):
        if progress:
            progress("read", number, len(found))
        try:
            data = read_confined(file, max_bytes=max_bytes)
        except DataError as error:
            report.skipped.append((file.name, f"unreadable ({error.message})"))
            continue
        digest = _sha256(data)
        old = indexed.get(file.name)
        if old is not None and old.sha256 == digest and not settings_changed:
            report.unchanged.append(file.name)
            current[file.name] = digest
            continue
        try:
            chunks = chunk_document(read_document(file.name, data, file.kind), chunking)
        except DataError as error:
            report.skipped.append((file.name, f"unreadable ({error.message})"))
            continue
        current[file.name] = digest
        pending.append(_Pending(file, digest, chunks, is_new=old is None))

    texts = [chunk.indexed_text for item in pending for chunk in item.chunks]
    on_batch = (lambda done, total: progress("embed", done, total)) if progress else None
    vectors = embedder.encode(texts, progress=on_batch)

    removed = sorted(set(indexed) - set(current))
    fingerprint = collection_fingerprint(embedder.model_id, chunking, current)
    with tables.writing(store) as connection:
        if mirror is not None and settings_changed:
            # Every chunk is rewritten, maybe at another dimension: rebuild the HNSW index after.
            drop_collection_indexes(connection, collection.id)
        tables.delete_documents(connection, collection.id, removed + [item.file.name for item in pending])
        offset = 0
        for item in pending:
            new_chunks = [tables.NewChunk(ordinal, chunk.text, chunk.position, vectors[offset + ordinal])
                          for ordinal, chunk in enumerate(item.chunks)]
            ids = tables.add_document(connection, collection.id, path=item.file.name, sha256=item.sha256,
                                      size=item.file.size, kind=item.file.kind, chunks=new_chunks)
            if mirror is not None and ids:
                mirror.add(connection, ids, vectors[offset : offset + len(ids)])
            offset += len(item.chunks)
            (report.added if item.is_new else report.updated).append(item.file.name)
        if mirror is not None:
            mirror.create_index(connection)  # built over the rows just written, if it is new
        tables.update_collection(connection, collection.id, folder=str(folder.expanduser().resolve()),
                                 embedder=embedder.model_id, dim=embedder.dim,
                                 chunking=chunking.model_dump(mode="json"), fingerprint=fingerprint)
        report.chunks = tables.chunk_count(connection, collection.id)
    report.removed = removed
    report.chunks_embedded = len(texts)
    report.fingerprint = fingerprint
    report.skipped.sort()
    return report


def _reason(item: Skipped) -> str:
    return f"{item.reason} ({item.detail})" if item.detail else item.reason


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
