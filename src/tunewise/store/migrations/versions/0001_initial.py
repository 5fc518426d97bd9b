"""0001: tasks, runs, arms, predictions, artifacts.

A migration is frozen once released: it spells out its own column types instead of importing
the models, so later edits to ``schema.py`` cannot change what an old migration does.

Revision ids are plain numbers ("0001", "0002", ...) so ``alembic_version`` reads as a count.
A new migration sets ``down_revision`` to the previous number. SQLite cannot ALTER most
things: change a column there with ``with op.batch_alter_table("name") as batch:``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDocument = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("card_hash", sa.String(64), nullable=False),
        sa.Column("card_yaml", sa.Text(), nullable=False),
        sa.Column("card_json", JSONDocument, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("card_hash", name="uq_tasks_card_hash"),
    )
    op.create_index("ix_tasks_name", "tasks", ["name"])

    op.create_table(
        "runs",
        sa.Column("id", Id, primary_key=True),
        sa.Column("task_id", Id, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("card", JSONDocument, nullable=False),
        sa.Column("data_hashes", JSONDocument, nullable=False),
        sa.Column("package_versions", JSONDocument, nullable=False),
        sa.Column("seeds", JSONDocument, nullable=False),
        sa.Column("models", JSONDocument, nullable=False),
        sa.Column("config", JSONDocument, nullable=False),
        sa.Column("summary", JSONDocument, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_runs_task_id_tasks", ondelete="CASCADE"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_task_id_created_at", "runs", ["task_id", "created_at"])

    op.create_table(
        "arms",
        sa.Column("id", Id, primary_key=True),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("config", JSONDocument, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("metrics", JSONDocument, nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_arms"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_arms_run_id_runs", ondelete="CASCADE"),
        sa.UniqueConstraint("run_id", "name", name="uq_arms_run_id_name"),
    )

    op.create_table(
        "predictions",
        sa.Column("id", Id, primary_key=True),
        sa.Column("arm_id", Id, nullable=False),
        sa.Column("split", sa.String(20), nullable=False),
        sa.Column("example_index", sa.Integer(), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("expected", sa.Text(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.ForeignKeyConstraint(["arm_id"], ["arms.id"], name="fk_predictions_arm_id_arms", ondelete="CASCADE"),
        sa.UniqueConstraint("arm_id", "split", "example_index", name="uq_predictions_arm_id_split_example_index"),
    )

    op.create_table(
        "artifacts",
        sa.Column("id", Id, primary_key=True),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("arm_id", Id, nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("content", JSONDocument, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["arm_id"], ["arms.id"], name="fk_artifacts_arm_id_arms", ondelete="CASCADE"),
    )
    op.create_index("ix_artifacts_run_id", "artifacts", ["run_id"])


def downgrade() -> None:
    for table in ("artifacts", "predictions", "arms", "runs", "tasks"):
        op.drop_table(table)
