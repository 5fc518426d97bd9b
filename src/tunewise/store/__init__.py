"""The run store: every task, run, arm, prediction and artifact tunewise records.

A SQLite file by default (``$TUNEWISE_HOME/tunewise.db``), PostgreSQL by URL, on one code
path (SQLAlchemy + numbered Alembic migrations, applied on open)::

    from tunewise.store import open_store

    with open_store() as store:                 # or open_store("postgresql://user@host/db")
        for run in store.list_runs(limit=10):
            print(run.id, run.task_name, run.status)

Modules: ``location`` (which URL), ``db`` (engine, SQLite pragmas, connection errors),
``schema`` (tables), ``migrate`` + ``migrations/`` (numbered versions), ``api`` (the Store),
``records`` (what comes back), ``provenance`` (what rebuilds a run), ``digests``/``values``
(hashing, JSON).
"""

from tunewise.store.api import CheckReportLike, Store, open_store
from tunewise.store.digests import sha256_text
from tunewise.store.location import masked, store_url, tunewise_home
from tunewise.store.provenance import card_hash, environment
from tunewise.store.records import ArmSummary, ArtifactRecord, PredictionRow, RunDetail, RunSummary
from tunewise.store.schema import Status

__all__ = [
    "ArmSummary",
    "ArtifactRecord",
    "CheckReportLike",
    "PredictionRow",
    "RunDetail",
    "RunSummary",
    "Status",
    "Store",
    "card_hash",
    "environment",
    "masked",
    "open_store",
    "sha256_text",
    "store_url",
    "tunewise_home",
]
