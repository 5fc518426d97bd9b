"""0003: knowledge collections, their documents and chunks (the RAG arm's index).

Additive only. The chunk's embedding is a float32 blob on both backends; the pgvector
mirror on PostgreSQL is created by the knowledge module when the server has the extension
(see ``tunewise/knowledge/vectors.py``), so a server without pgvector still opens the store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDocument = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "knowledge_collections",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("folder", sa.Text(), nullable=True),
        sa.Column("embedder", sa.String(500), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("chunking", JSONDocument, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_collections"),
        sa.UniqueConstraint("name", name="uq_knowledge_collections_name"),
    )
    op.create_table(
        "knowledge_documents",
        sa.Column("id", Id, primary_key=True),
        sa.Column("collection_id", Id, nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_documents"),
        sa.ForeignKeyConstraint(["collection_id"], ["knowledge_collections.id"],
                                name="fk_knowledge_documents_collection_id_knowledge_collections", ondelete="CASCADE"),
        sa.UniqueConstraint("collection_id", "path", name="uq_knowledge_documents_collection_id_path"),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("collection_id", Id, nullable=False),
        sa.Column("document_id", Id, nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("position", JSONDocument, nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_knowledge_chunks"),
        sa.ForeignKeyConstraint(["collection_id"], ["knowledge_collections.id"],
                                name="fk_knowledge_chunks_collection_id_knowledge_collections", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["document_id"], ["knowledge_documents.id"],
                                name="fk_knowledge_chunks_document_id_knowledge_documents", ondelete="CASCADE"),
    )
    op.create_index("ix_knowledge_chunks_collection_id", "knowledge_chunks", ["collection_id"])
    op.create_index("ix_knowledge_chunks_document_id", "knowledge_chunks", ["document_id"])


def downgrade() -> None:
    op.drop_index("ix_knowledge_chunks_document_id", table_name="knowledge_chunks")
    op.drop_index("ix_knowledge_chunks_collection_id", table_name="knowledge_chunks")
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_documents")
    op.drop_table("knowledge_collections")
