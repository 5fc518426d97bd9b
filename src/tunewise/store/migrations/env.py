"""Alembic's entry point for the run store's migrations.

tunewise runs migrations itself (``tunewise.store.migrate.upgrade``), on a connection it has
already opened and locked, so there is no ``alembic.ini`` and no offline (--sql) mode: this
script only takes that connection from the Alembic config and runs the pending versions in
the caller's transaction (one transaction for all of them, so a failure leaves the store at
its old revision, on SQLite too).
"""

from __future__ import annotations

from alembic import context

from tunewise.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations through tunewise.store.open_store(), not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite rebuilds tables to alter them; batch mode does that for us
)
with context.begin_transaction():
    context.run_migrations()
