"""Shared test set-up.

The network switch: tests must never spend money or reach a remote host by accident. Every
socket connection to anything but loopback or a local (unix) socket fails loudly. Tests that
start their own servers on 127.0.0.1 are unaffected.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if "TUNEWISE_SHARED_DATASETS" in os.environ:
    SHARED_DATASETS = Path(os.environ["TUNEWISE_SHARED_DATASETS"])

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class RemoteCallBlocked(RuntimeError):
    """Raised when a test tries to reach a non-local address."""


def _is_local(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: would need DNS, so it is remote


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        raise RemoteCallBlocked(f"tests may not reach {address!r}: only loopback and local sockets are allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        raise RemoteCallBlocked(f"tests may not reach {address!r}: only loopback and local sockets are allowed")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_remote_calls():
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def shared_datasets() -> Path:
    """The real public datasets beside the repository (../shared/datasets)."""
    if not SHARED_DATASETS.is_dir():
        pytest.fail(f"real datasets not found at {SHARED_DATASETS}; set TUNEWISE_SHARED_DATASETS")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own tunewise home, so no test reads or writes the user's store."""
    home = tmp_path / "tunewise-home"
    monkeypatch.setenv("TUNEWISE_HOME", str(home))
    return home


# -- PostgreSQL ----------------------------------------------------------------------------
# A real server for tests marked `postgres` (tests/postgres.py starts it). Started once per
# session, only when a test asks for it; every test gets a fresh database, dropped after.
# When it cannot start, the tests are skipped with the reason, except under CI (env CI set),
# where they fail: CI must really run them.


@pytest.fixture(scope="session")
def postgres_service():
    from postgres import PostgresUnavailable, start_postgres

    try:
        service = start_postgres()
    except PostgresUnavailable as error:
        reason = str(error)
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(reason)
    yield service
    service.stop()


@pytest.fixture
def postgres_url(postgres_service) -> str:
    """URL of a new, empty PostgreSQL database (postgresql://...), dropped after the test."""
    url = postgres_service.create_database()
    yield url
    postgres_service.drop_database(url)


# -- the run store on both backends ---------------------------------------------------------
# Tests that take `store` run twice: on a SQLite file and on a fresh PostgreSQL database.


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url_for_backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'runs.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url_for_backend: str):
    from tunewise.store import open_store

    with open_store(store_url_for_backend) as opened:
        yield opened


# -- tiny real models --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A folder holding a 2-layer random Llama and its tokenizer (see tests/tiny_models.py)."""
    from tiny_models import write_llama, write_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    write_tokenizer(folder)
    write_llama(folder)
    return folder
