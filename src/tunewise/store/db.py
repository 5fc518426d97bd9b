"""Opening a database engine for the store: SQLite pragmas, driver and connection errors.

SQLite is tuned for several processes sharing one file (a bake-off writing while
`tunewise runs list` reads, two bake-offs at once):

- ``journal_mode=WAL``: readers never block the writer, and the writer never blocks readers;
- ``busy_timeout=5000``: a writer waits up to 5 s for another writer instead of failing at
  once with "database is locked";
- ``foreign_keys=ON``: SQLite ignores foreign keys unless asked, per connection;
- ``synchronous=NORMAL``: durable at every checkpoint, and safe against corruption in WAL
  mode; a power cut may lose the last transactions, which a resumed run simply redoes.

Write transactions start with ``BEGIN IMMEDIATE`` (take the write lock first). A deferred
transaction that reads and then writes can find that another process wrote in between; SQLite
then fails it at once with "database is locked", *without* waiting out the busy timeout,
because waiting could deadlock. Taking the lock up front makes writers queue instead.
Read transactions stay deferred, so they never wait for anyone. Python 3.11's sqlite3 would
issue its own BEGIN (deferred, and not before DDL), so it is told to stay out of it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from tunewise.errors import StoreError
from tunewise.store.location import masked, parse_url
from tunewise.store.values import dumps_json

BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 10
WRITE = "tunewise_write"  # execution option: this transaction will write (BEGIN IMMEDIATE on SQLite)

_DRIVER_INSTALL = {
    "postgresql": "pip install 'tunewise[postgres]'",
}


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once; StoreError if that is impossible."""
    parsed = parse_url(url)
    engine = _sqlite_engine(parsed) if parsed.get_backend_name() == "sqlite" else _server_engine(parsed)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        engine.dispose()
        raise connection_error(parsed, error) from None
    return engine


def connection_error(url: URL, error: BaseException) -> StoreError:
    """A StoreError for a database that refused us, naming the (masked) URL and a fix."""
    reason = _first_line(getattr(error, "orig", None) or error)
    if url.password:
        reason = reason.replace(str(url.password), "***")  # drivers should not echo it; be sure
    if url.get_backend_name() == "sqlite":
        fix = "check that the file is a tunewise store (SQLite) and that its folder is writable, " \
              "or point TUNEWISE_STORE / --store elsewhere"
        if "locked" in reason:
            fix = "another process held the store for over 5 s; retry when it is done"
    else:
        fix = "check that the server is running and the host, port, user, password and database " \
              "in the URL (TUNEWISE_STORE or --store) are right"
    return StoreError(f"cannot use the run store: {reason}", where=masked(url), fix=fix)


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        folder = Path(url.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot create the store's folder ({error.strerror or error})", where=str(folder),
                fix="set TUNEWISE_HOME (or TUNEWISE_STORE / --store) to a writable place",
            ) from None
    engine = create_engine(
        url,
        json_serializer=dumps_json,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry | None) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see the module docstring)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _ensure_wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    """Put the file in WAL mode (a lasting property of the file, so usually already done).

    Switching a new file to WAL can fail at once with "database is locked" when another
    process is switching it at the same moment: SQLite skips the busy handler there to avoid
    a deadlock (measured: 2 processes opening one new store, 178 failures in 1,000). Reading
    the mode first makes the common case lock-free; the switch itself is retried.
    """
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _server_engine(url: URL) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S  # libpq would otherwise wait forever
    try:
        return create_engine(url, json_serializer=dumps_json, connect_args=connect_args, pool_pre_ping=True)
    except NoSuchModuleError:
        raise StoreError(
            f"unknown kind of database {url.drivername!r}", where=masked(url),
            fix="use sqlite:///path/to/tunewise.db or postgresql://user:password@host/database",
        ) from None
    except ImportError as error:
        backend = url.get_backend_name()
        fix = _DRIVER_INSTALL.get(backend, f"install the database driver for {url.drivername}")
        raise StoreError(
            f"the driver for {url.drivername} is not installed ({_first_line(error)})", where=masked(url), fix=fix
        ) from None


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else error.__class__.__name__
