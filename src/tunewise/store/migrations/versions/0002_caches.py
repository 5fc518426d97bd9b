"""0002: call_cache and embedding_cache.

``call_cache`` keeps model calls (keyed by a sha256 the caller computes) with the original
call's tokens, latency and cost, so a re-run bake-off is nearly free and still reports the
measured columns. ``embedding_cache`` keeps one float32 vector per (embedding model, text
sha256). Column types are spelled out here, not imported (a released migration is frozen).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONDocument = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "call_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(500), nullable=False),
        sa.Column("output", JSONDocument, nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_call_cache"),
    )
    op.create_index("ix_call_cache_model_id", "call_cache", ["model_id"])

    op.create_table(
        "embedding_cache",
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("model", "text_sha256", name="pk_embedding_cache"),
    )


def downgrade() -> None:
    op.drop_table("embedding_cache")
    op.drop_index("ix_call_cache_model_id", table_name="call_cache")
    op.drop_table("call_cache")
