"""The run store's tables, as SQLAlchemy ORM models.

These models are what the code queries; the numbered migrations in ``migrations/versions``
are what creates the tables. ``tests/test_store.py`` compares the two on SQLite and
PostgreSQL, so a model changed without a migration (or the reverse) fails the tests.

Adding a table (knowledge chunks, adapters, a request log...):
  1. add its model class below, on ``Base``;
  2. add ``migrations/versions/000N_<what>.py`` with ``revision = "000N"`` and
     ``down_revision`` the previous number (copy ``0001_initial.py`` for the shape);
  3. run the store tests: the model/migration comparison tells you what differs.

Portable choices, because the same code runs on SQLite and PostgreSQL:
- ids are BIGINT on PostgreSQL but ``INTEGER`` on SQLite, where only ``INTEGER PRIMARY KEY``
  is an auto-incrementing rowid;
- JSON columns are JSONB on PostgreSQL (indexable, compact), JSON text on SQLite; a Python
  ``None`` is stored as SQL NULL, not the JSON literal ``null``;
- timestamps are timezone-aware UTC going in and coming out (SQLite keeps no zone, so the
  zone is stripped on the way in and put back on the way out);
- every constraint and index has a name (``NAMING_CONVENTION``), which later migrations need
  to alter or drop it, and which SQLite's batch mode needs to rebuild a table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")
JSONDocument = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(StrEnum):
    """Where a run or an arm stands. `interrupted` means stopped on purpose (Ctrl-C) or by a
    crash noticed later; such a run can be resumed, its finished predictions kept."""

    running = "running"
    finished = "finished"
    failed = "failed"
    interrupted = "interrupted"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Task(Base):
    """A task card as it was when something ran on it; identical cards share one row."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    card_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the card's canonical JSON
    card_yaml: Mapped[str] = mapped_column(Text)
    card_json: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """One execution (a check, a bake-off...) with everything needed to rebuild it."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_task_id_created_at", "task_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    task_id: Mapped[int] = mapped_column(Id, ForeignKey("tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    card: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    data_hashes: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    package_versions: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    seeds: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    models: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    error: Mapped[str | None] = mapped_column(Text)


class Arm(Base):
    """One approach (zero-shot, LoRA, RAG...) on one model, within a run."""

    __tablename__ = "arms"
    # The unique constraint also serves "arms of run N" lookups (run_id leads).
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Prediction(Base):
    """One arm's output on one example. (arm, split, example) is unique, so a resumed run
    cannot store an example twice; the unique index also serves "predictions of arm N"."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("arm_id", "split", "example_index"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    arm_id: Mapped[int] = mapped_column(Id, ForeignKey("arms.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(20))
    example_index: Mapped[int] = mapped_column(Integer)
    input_hash: Mapped[str] = mapped_column(String(64))
    output: Mapped[str | None] = mapped_column(Text)
    expected: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Double)
    latency_ms: Mapped[float | None] = mapped_column(Double)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Double)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)  # why there is no output (timeout, refusal...)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    """A file or folder a run produced (adapter, report, plot), or a small inline JSON
    document; the sha256 says whether the file on disk is still the one recorded."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    arm_id: Mapped[int | None] = mapped_column(Id, ForeignKey("arms.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(500))
    path: Mapped[str | None] = mapped_column(Text)
    content: Mapped[Any | None] = mapped_column(JSONDocument)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallCache(Base):
    """One model call's answer, keyed by a digest of everything that decides it (the caller
    builds the key: model id, prompt, options...). A re-run finds its calls here and costs
    nearly nothing, yet reports what the original call measured: the latency and cost
    columns are the first call's, so a cached bake-off shows the same numbers as a live one."""

    __tablename__ = "call_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    model_id: Mapped[str] = mapped_column(String(500), index=True)  # to find (and drop) one model's entries
    output: Mapped[Any] = mapped_column(JSONDocument)  # whatever the caller stored: output, raw, valid...
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Double)
    cost_usd: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmbeddingCache(Base):
    """One text's embedding under one embedding model: float32, little-endian, ``dim`` of them.
    Keyed by the model id (name + weights fingerprint + precision) so new weights never reuse
    old vectors, and by the text's sha256 so the text itself is not stored."""

    __tablename__ = "embedding_cache"

    model: Mapped[str] = mapped_column(String(500), primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- knowledge (RAG) ---------------------------------------------------------------------------
# A named collection of documents, cut into chunks, each with its embedding. The vector blob
# is the source of truth on both backends: the embedded exact index reads it, and on
# PostgreSQL with pgvector the knowledge module mirrors it into an indexed vector column
# (see knowledge/vectors.py for why that table is not part of the migrations).


class KnowledgeCollection(Base):
    """A named set of documents (``tunewise knowledge add FOLDER --name NAME``), bound to one
    embedding model and one chunking configuration; changing either re-embeds on next sync."""

    __tablename__ = "knowledge_collections"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    folder: Mapped[str | None] = mapped_column(Text)  # the folder last synced, absolute
    embedder: Mapped[str] = mapped_column(String(500))  # Embedder.model_id
    dim: Mapped[int] = mapped_column(Integer)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSONDocument)  # the ChunkConfig used
    fingerprint: Mapped[str] = mapped_column(String(64))  # changes with content, embedder, chunking
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnowledgeDocument(Base):
    """One file of a collection, by its path relative to the folder, with its content hash:
    a re-sync re-reads only files whose hash changed."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("collection_id", "path"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    collection_id: Mapped[int] = mapped_column(Id, ForeignKey("knowledge_collections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1000))  # POSIX, relative to the folder
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))  # the reader: markdown, text, html, pdf, json, jsonl
    chunks: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KnowledgeChunk(Base):
    """A retrievable piece of a document: its text, where it came from (heading path,
    paragraph range, character span, page), and its embedding (float32, little-endian)."""

    __tablename__ = "knowledge_chunks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        Id, ForeignKey("knowledge_collections.id", ondelete="CASCADE"), index=True
    )
    document_id: Mapped[int] = mapped_column(Id, ForeignKey("knowledge_documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)  # the chunk's place in its document
    text: Mapped[str] = mapped_column(Text)
    position: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
