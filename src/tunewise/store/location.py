"""Where the run store lives: one URL, resolved the same way for the library and the CLI.

Order of precedence: an explicit URL (``--store``), then ``$TUNEWISE_STORE``, then a SQLite
file at ``$TUNEWISE_HOME/tunewise.db`` with ``TUNEWISE_HOME`` defaulting to ``./.tunewise``
(project-local, beside the task cards, so each project keeps its own history).

Any SQLAlchemy URL is accepted. A bare path (no ``://``) means a SQLite file, and
``postgresql://`` / ``postgres://`` are mapped to the psycopg 3 driver, the one
``tunewise[postgres]`` installs: SQLAlchemy's own default for ``postgresql://`` is psycopg2,
which we do not depend on.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tunewise.errors import StoreError

STORE_FILE = "tunewise.db"
_POSTGRES_ALIASES = ("postgresql", "postgres")


def tunewise_home() -> Path:
    """The folder tunewise keeps its state in: ``$TUNEWISE_HOME`` or ``./.tunewise``."""
    return Path(os.environ.get("TUNEWISE_HOME") or ".tunewise").expanduser()


def store_url(url: str | None = None) -> str:
    """The store URL in force: ``url``, else ``$TUNEWISE_STORE``, else the SQLite default.

    The result is a full SQLAlchemy URL (password kept: this is for connecting, not printing;
    use :func:`masked` for messages).
    """
    raw = url or os.environ.get("TUNEWISE_STORE") or ""
    if not raw.strip():
        return _sqlite_url(tunewise_home() / STORE_FILE)
    if "://" not in raw:
        return _sqlite_url(Path(raw).expanduser())
    return parse_url(raw).render_as_string(hide_password=False)


def parse_url(raw: str) -> URL:
    """Parse a store URL, choosing psycopg 3 for PostgreSQL; StoreError if it is not a URL."""
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StoreError(
            "not a database URL", where=_mask_unparsed(raw),
            fix="give a SQLAlchemy URL such as sqlite:///path/to/tunewise.db or postgresql://user@host/db",
        ) from None
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def masked(url: str | URL) -> str:
    """The URL with its password replaced by ``***``: safe for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _mask_unparsed(url)


def _sqlite_url(path: Path) -> str:
    # Absolute, so a process that changes directory later still opens the same file.
    return URL.create("sqlite", database=str(path.absolute())).render_as_string(hide_password=False)


def _mask_unparsed(raw: str) -> str:
    """Hide anything between ``user:`` and ``@`` in a string SQLAlchemy could not parse."""
    scheme, sep, rest = raw.partition("://")
    if not sep or "@" not in rest:
        return raw
    credentials, at, host = rest.rpartition("@")
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"
