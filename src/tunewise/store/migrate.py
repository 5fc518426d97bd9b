"""Bringing a store's tables up to date: Alembic, run from code.

``upgrade(engine)`` is called by every ``open_store``. It is cheap when nothing is pending
(read one row, compare), and safe when several processes open a new store at once: the check
and the migration run in one transaction that first takes a lock (``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL), so the second process waits, then
finds the work done.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from tunewise.errors import StoreError
from tunewise.store.db import WRITE
from tunewise.store.location import masked

MIGRATIONS = Path(__file__).parent / "migrations"

# Any fixed 64-bit number works; it only has to be the same in every tunewise process.
_POSTGRES_MIGRATION_LOCK = 0x7475_6E65_7769_7365 & 0x7FFF_FFFF_FFFF_FFFF  # "tunewise"


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration this version of tunewise knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the store ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None for an empty database."""
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def upgrade(engine: Engine) -> None:
    """Apply every pending migration; StoreError if the database is newer than this code."""
    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    head = script.get_current_head()
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_MIGRATION_LOCK})
            current = MigrationContext.configure(connection).get_current_heads()
            unknown = [revision for revision in current if revision not in known]
            if unknown:
                raise StoreError(
                    f"the store is at migration {', '.join(unknown)}, newer than this tunewise knows ({head})",
                    where=masked(engine.url),
                    fix="upgrade tunewise (pip install -U tunewise), or point TUNEWISE_STORE / --store "
                    "at another store",
                )
            if tuple(current) == (head,):
                return
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
