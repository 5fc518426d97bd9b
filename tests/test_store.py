"""The run store, on SQLite and on a real PostgreSQL server.

Tests taking the `store` or `store_url_for_backend` fixture run twice: on a SQLite file and on
a fresh PostgreSQL database (marked `postgres`; see the PostgreSQL section of conftest.py).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import socket
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text
from sqlalchemy.exc import IntegrityError

from tunewise.errors import StoreError
from tunewise.store import (
    PredictionRow,
    Status,
    Store,
    card_hash,
    open_store,
    sha256_text,
    store_url,
)
from tunewise.store.db import _sqlite_on_connect
from tunewise.store.migrate import head_revision
from tunewise.store.schema import Base
from tunewise.task.card import TaskCard, parse_card

TABLES = {"tasks", "runs", "arms", "predictions", "artifacts"}

CARD_YAML = """\
name: support-tickets
kind: classify
instruction: Route the ticket to the team that can solve it.
labels: [billing, bug, account]
data:
  file: tickets.csv
"""

# The newest numbered migration file: the head every fresh store must reach.
MIGRATION_FILES = sorted((Path(__file__).parents[1] / "src/tunewise/store/migrations/versions").glob("[0-9]*.py"))
LATEST_MIGRATION = MIGRATION_FILES[-1].name[:4]


@pytest.fixture
def card() -> TaskCard:
    return parse_card(CARD_YAML)


def other_card(old: str, new: str) -> TaskCard:
    """The test card with one piece of text changed."""
    return parse_card(CARD_YAML.replace(old, new))


def rows(indexes, split: str = "test", output: str = "billing") -> list[PredictionRow]:
    return [
        PredictionRow(
            split=split, example_index=i, input_hash=sha256_text(f"input {i}"), output=output, expected="billing",
            score=1.0 if output == "billing" else 0.0, latency_ms=12.5 + i, tokens_in=100 + i, tokens_out=2,
            cost_usd=0.0001, cached=i % 2 == 0,
        )
        for i in indexes
    ]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- migrations ------------------------------------------------------------------------------


def test_migrations_apply_from_empty_and_are_idempotent(store_url_for_backend: str, card: TaskCard):
    for attempt in range(3):  # the first open creates everything; later opens find nothing to do
        with open_store(store_url_for_backend) as store:
            task_id = store.record_task(card)  # what the first open stored is still there later
            with store.engine.connect() as connection:
                assert set(inspect(connection).get_table_names()) >= TABLES
                versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
                tasks = connection.execute(text("SELECT count(*) FROM tasks")).scalar()
        assert versions == [head_revision()]
        assert (task_id, tasks) == (1, 1), f"open number {attempt + 1}"
        assert head_revision() == LATEST_MIGRATION


def test_migration_files_are_numbered_without_gaps():
    assert [p.name[:4] for p in MIGRATION_FILES] == [f"{n:04d}" for n in range(1, len(MIGRATION_FILES) + 1)]


def test_models_match_the_migrations(store: Store):
    """A model changed without a migration (or the reverse) shows up here, on both backends."""
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_newer_database_revision_is_refused(store_url_for_backend: str):
    with open_store(store_url_for_backend) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError) as caught:
        open_store(store_url_for_backend)
    message = str(caught.value)
    assert "9999" in message and f"newer than this tunewise knows ({LATEST_MIGRATION})" in message
    assert "upgrade tunewise" in caught.value.fix


# -- SQLite specifics ------------------------------------------------------------------------


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(tmp_path: Path):
    path = tmp_path / "runs.db"
    with open_store(f"sqlite:///{path}") as store, store.engine.connect() as connection:
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") == 5000
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL
    # Writers take the write lock up front (BEGIN IMMEDIATE) so they queue on the busy timeout
    # instead of failing; readers do not lock. (The two-process test fails without this.)
    with open_store(f"sqlite:///{path}") as store:
        begins: list[str] = []
        event.listen(store.engine, "before_cursor_execute",
                     lambda _conn, _cursor, statement, *_: begins.append(statement) if "BEGIN" in statement else None)
        store.record_task(parse_card(CARD_YAML))
        store.list_runs()
    assert begins == ["BEGIN IMMEDIATE", "BEGIN"]
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_store_is_a_sqlite_file_in_tunewise_home(_isolated_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TUNEWISE_STORE", raising=False)
    assert store_url() == f"sqlite:///{_isolated_home / 'tunewise.db'}"
    with open_store() as store:
        assert store.url == f"sqlite:///{_isolated_home / 'tunewise.db'}"
    assert (_isolated_home / "tunewise.db").is_file()


def test_store_url_precedence_and_postgres_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNEWISE_STORE", "postgresql://bob:pw@db.example/runs")
    assert store_url() == "postgresql+psycopg://bob:pw@db.example/runs"
    assert store_url("postgres://bob@db.example/runs") == "postgresql+psycopg://bob@db.example/runs"
    assert store_url(str(tmp_path / "here.db")) == f"sqlite:///{tmp_path / 'here.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNEWISE_STORE")
    monkeypatch.delenv("TUNEWISE_HOME")
    assert store_url() == f"sqlite:///{tmp_path / '.tunewise' / 'tunewise.db'}"


def test_bulk_insert_of_10k_predictions_on_sqlite(tmp_path: Path, card: TaskCard):
    # Speed is measured in benchmarks, not here; this guards the bulk path's bookkeeping.
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        arm_id = store.add_arm(store.start_run(card, kind="bakeoff", data_hashes={}), "zero_shot", "m")
        stored = store.add_predictions(arm_id, rows(range(10_000)))
        again = store.add_predictions(arm_id, rows(range(9_990, 10_010)))
        assert store.completed_examples(arm_id, "test") == set(range(10_010))
    assert stored == 10_000
    assert again == 10


def _write_predictions(url: str, worker: int, start, results) -> None:
    """One of two processes writing to the same SQLite store at the same time."""
    try:
        card = parse_card(CARD_YAML.replace("support-tickets", f"worker-{worker}"))
        start.wait(timeout=60)
        with open_store(url) as store:  # both may find the store empty and race to migrate it
            run_id = store.start_run(card, kind="bakeoff", data_hashes={"file": f"{worker}"})
            arm_id = store.add_arm(run_id, "zero_shot", "m")
            for batch in range(20):
                store.add_predictions(arm_id, rows(range(batch * 100, batch * 100 + 100)))
                store.completed_examples(arm_id, "test")  # a read between writes, as a resume does
            store.finish_arm(arm_id, {"accuracy": 1.0})
            store.finish_run(run_id)
        results.put((worker, run_id, None))
    except BaseException as error:  # report every failure to the parent, "database is locked" included
        results.put((worker, None, f"{error.__class__.__name__}: {error}"))


def test_two_processes_write_the_same_sqlite_store_at_once(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # Two real processes. Fork starts them in milliseconds (spawn would re-import this module,
    # numpy and all, per child); the parent has no store open here, so none is inherited.
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_write_predictions, args=(url, n, start, results)) for n in (1, 2)]
    for process in workers:
        process.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=30)
    assert [error for _, _, error in outcomes] == [None, None]
    assert [process.exitcode for process in workers] == [0, 0]
    with open_store(url) as store:
        runs = store.list_runs()
    assert sorted(run.task_name for run in runs) == ["worker-1", "worker-2"]
    assert [(run.status, run.predictions) for run in runs] == [("finished", 2000)] * 2


def _open_new_file_at_once(path: str, start, results) -> None:
    try:
        start.wait(timeout=30)
        connection = sqlite3.connect(path, timeout=5)
        _sqlite_on_connect(connection, None)  # the store's own per-connection set-up
        results.put(connection.execute("PRAGMA journal_mode").fetchone()[0])
    except BaseException as error:
        results.put(f"{error.__class__.__name__}: {error}")


def test_processes_opening_a_new_sqlite_store_together_all_get_wal(tmp_path: Path):
    """Two processes switching a new file to WAL at the same instant: SQLite fails one of them
    at once ("database is locked", no busy wait) about one time in six. 40 tries all succeed."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    outcomes = []
    for attempt in range(40):
        start, results = context.Barrier(2), context.Queue()
        path = str(tmp_path / f"new-{attempt}.db")
        workers = [context.Process(target=_open_new_file_at_once, args=(path, start, results)) for _ in range(2)]
        for process in workers:
            process.start()
        outcomes += [results.get(timeout=30) for _ in workers]
        for process in workers:
            process.join(timeout=30)
    assert set(outcomes) == {"wal"}


def test_threads_can_share_one_store(tmp_path: Path, card: TaskCard):
    """The gateway will log requests from many threads through one Store."""
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        run_id = store.start_run(card, kind="bakeoff", data_hashes={})
        errors: list[str] = []

        def write(worker: int) -> None:
            try:
                arm_id = store.add_arm(run_id, f"arm-{worker}", "m")
                for batch in range(10):
                    store.add_predictions(arm_id, rows(range(batch * 20, batch * 20 + 20)))
                    store.list_runs()
            except Exception as error:  # collected: an exception in a thread would be lost
                errors.append(repr(error))

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.get_run(run_id).predictions == 4 * 200


def test_a_file_that_is_not_a_store_gives_a_store_error(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{path}")
    assert "not a database" in str(caught.value)
    assert caught.value.where == f"sqlite:///{path}"


def test_an_unusable_home_folder_gives_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TUNEWISE_HOME", str(blocker / "home"))
    with pytest.raises(StoreError) as caught:
        open_store()
    assert caught.value.where == str(blocker / "home")
    assert "TUNEWISE_HOME" in caught.value.fix


# -- connection failures ---------------------------------------------------------------------


def test_unreachable_postgres_names_the_url_with_the_password_masked():
    port = closed_port()
    with pytest.raises(StoreError) as caught:
        open_store(f"postgresql://bob:s3cret-pw@127.0.0.1:{port}/runs")
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert caught.value.where == f"postgresql+psycopg://bob:***@127.0.0.1:{port}/runs"
    assert "cannot use the run store" in message and "server is running" in caught.value.fix


def test_missing_postgres_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://bob:s3cret-pw@localhost/runs")
    assert caught.value.fix == "pip install 'tunewise[postgres]'"
    assert "s3cret-pw" not in str(caught.value) and "bob:***@localhost" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [("nosuchdb://bob:s3cret-pw@host/x", "unknown kind of database"), ("://bob:s3cret-pw@host", "not a database URL")],
)
def test_bad_urls_give_a_store_error_without_the_password(url: str, message: str):
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert message in str(caught.value)
    assert "s3cret-pw" not in str(caught.value) and "***" in str(caught.value)


# -- recording and reading back --------------------------------------------------------------


def test_a_run_round_trips_with_what_rebuilds_it(store: Store, card: TaskCard, tmp_path: Path):
    before = datetime.now(UTC)
    run_id = store.start_run(
        card,
        kind="bakeoff",
        data_hashes={"file": "ab" * 32},
        seeds={"split": 0, "bootstrap": 1234},
        models={"small": "HuggingFaceTB/SmolLM2-135M-Instruct@q4_1", "large": "gpt-4o-mini-2024-07-18"},
        config={"budget_usd": 5, "knowledge": tmp_path / "docs"},  # a Path is stored as its string
    )
    arm_id = store.add_arm(run_id, "zero_shot", "HuggingFaceTB/SmolLM2-135M-Instruct", {"max_tokens": 8})
    predictions = rows(range(5)) + [
        PredictionRow("test", 5, sha256_text("input 5"), "facturación ✓", expected="billing", score=float("nan")),
        PredictionRow("test", 6, sha256_text("input 6"), None, error="timeout after 30 s"),
    ]
    assert store.add_predictions(arm_id, predictions) == 7
    store.finish_arm(arm_id, {"accuracy": np.float64(0.8), "n": np.int64(7), "ci": np.array([0.7, 0.9]),
                              "p_value": float("nan")})
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 1000)
    report = tmp_path / "report.md"
    report.write_text("# verdict\n")
    store.add_artifact(run_id, kind="adapter", name="lora", path=adapter, arm_id=arm_id)
    store.add_artifact(run_id, kind="report", name="report.md", path=report)
    store.add_artifact(run_id, kind="confusion", name="confusion", content={"billing": {"billing": 4}})
    store.finish_run(run_id, summary={"winner": "zero_shot"})

    detail = store.get_run(run_id)
    assert (detail.id, detail.task_name) == (run_id, "support-tickets")
    assert (detail.kind, detail.status) == ("bakeoff", "finished")
    assert TaskCard.model_validate(detail.card) == card
    assert detail.data_hashes == {"file": "ab" * 32}
    assert detail.seeds == {"split": 0, "bootstrap": 1234}
    assert detail.models["large"] == "gpt-4o-mini-2024-07-18"
    assert detail.config == {"budget_usd": 5, "knowledge": str(tmp_path / "docs")}
    assert detail.summary == {"winner": "zero_shot"} and detail.error is None
    versions = detail.package_versions
    assert versions["python"].endswith(".".join(map(str, sys.version_info[:3])))
    assert versions["packages"]["tunewise"] and versions["packages"]["sqlalchemy"] and versions["cpu"]
    assert before <= detail.created_at <= detail.finished_at <= datetime.now(UTC)
    assert detail.created_at.tzinfo == UTC

    (arm,) = detail.arms
    assert (arm.name, arm.status, arm.predictions) == ("zero_shot", "finished", 7)
    assert arm.config == {"max_tokens": 8}
    assert arm.metrics == {"accuracy": 0.8, "n": 7, "ci": [0.7, 0.9], "p_value": None}  # NaN has no JSON form
    assert math.isclose(arm.cost_usd, 0.0005)
    assert detail.arm("zero_shot") == arm
    with pytest.raises(StoreError, match="has no arm 'lora'"):
        detail.arm("lora")

    stored = store.predictions(arm_id)
    assert stored[:5] == rows(range(5))
    assert stored[5].output == "facturación ✓" and stored[5].score is None  # NaN is stored as "no score"
    assert stored[6].output is None and stored[6].error == "timeout after 30 s"

    folder, file, inline = detail.artifacts
    assert (folder.kind, folder.arm_id, folder.path, folder.bytes) == ("adapter", arm_id, str(adapter), 1000 + 9)
    assert len(folder.sha256) == 64 and folder.sha256 != file.sha256
    assert file.arm_id is None and file.bytes == len("# verdict\n")
    assert inline.path is None and inline.content == {"billing": {"billing": 4}}
    json.dumps(detail.to_dict())  # JSON-ready as is, for `tunewise runs show --json`


def test_identical_cards_share_one_task(store: Store, card: TaskCard):
    first = store.record_task(card)
    assert store.record_task(parse_card(CARD_YAML)) == first
    changed = other_card("Route the ticket", "Send the ticket")
    assert card_hash(changed) != card_hash(card)
    assert store.record_task(changed) != first
    run_a = store.start_run(card, kind="check", data_hashes={})
    run_b = store.start_run(card, kind="check", data_hashes={})
    assert store.get_run(run_a).task_id == store.get_run(run_b).task_id == first


def test_predictions_are_unique_per_example_so_a_resume_never_duplicates(store: Store, card: TaskCard):
    arm_id = store.add_arm(store.start_run(card, kind="bakeoff", data_hashes={}), "few_shot", "m")
    assert store.completed_examples(arm_id, "test") == set()
    assert store.add_predictions(arm_id, rows(range(10))) == 10
    # A resumed run re-sends 5..9 (with different outputs) and goes on to 14.
    assert store.add_predictions(arm_id, rows(range(5, 15), output="bug")) == 5
    assert store.add_predictions(arm_id, rows(range(3), split="validation")) == 3
    assert store.add_predictions(arm_id, []) == 0
    assert store.completed_examples(arm_id, "test") == set(range(15))
    assert store.completed_examples(arm_id, "validation") == {0, 1, 2}
    outputs = {row.example_index: row.output for row in store.predictions(arm_id, split="test")}
    assert outputs[7] == "billing" and outputs[12] == "bug"  # the first answer stored is kept
    # The database itself refuses a duplicate, whatever the API does.
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO predictions (arm_id, split, example_index, input_hash, cached, created_at) "
                 "VALUES (:arm, 'test', 0, 'x', false, :now)"),
            {"arm": arm_id, "now": datetime.now(UTC).replace(tzinfo=None)},
        )


def test_foreign_keys_are_enforced(store: Store):
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO arms (run_id, name, model, config, status, started_at) "
                 "VALUES (999, 'orphan', 'm', '{}', 'running', :now)"),
            {"now": datetime.now(UTC).replace(tzinfo=None)},
        )


def test_list_runs_newest_first_with_counts_and_task_filter(store: Store, card: TaskCard):
    assert store.list_runs() == []
    other = other_card("support-tickets", "intents")
    first = store.start_run(card, kind="check", data_hashes={})
    second = store.start_run(other, kind="bakeoff", data_hashes={})
    third = store.start_run(card, kind="bakeoff", data_hashes={})
    arm_id = store.add_arm(third, "zero_shot", "m")
    store.add_arm(third, "lora", "m")
    store.add_predictions(arm_id, rows(range(4)))
    store.finish_run(first, summary={"ok": True})

    listed = store.list_runs()
    assert [run.id for run in listed] == [third, second, first]
    assert [(run.arms, run.predictions) for run in listed] == [(2, 4), (0, 0), (0, 0)]
    assert listed[2].status == "finished" and listed[2].summary == {"ok": True} and listed[2].duration_s >= 0
    assert listed[0].status == "running" and listed[0].duration_s is None
    assert [run.id for run in store.list_runs(task_name="support-tickets")] == [third, first]
    assert [run.id for run in store.list_runs(limit=1)] == [third]
    assert store.list_runs(task_name="nothing-like-this") == []
    json.dumps([run.to_dict() for run in listed])
    with pytest.raises(StoreError, match="limit must be at least 1"):
        store.list_runs(limit=0)


def test_missing_things_and_misuse_give_store_errors(store: Store, card: TaskCard, tmp_path: Path):
    with pytest.raises(StoreError) as caught:
        store.get_run(999)
    assert caught.value.message == "no run 999" and caught.value.fix == "see `tunewise runs list`"
    with pytest.raises(StoreError, match="no run 999"):
        store.add_arm(999, "zero_shot", "m")
    with pytest.raises(StoreError, match="no arm 999"):
        store.add_predictions(999, rows(range(2)))
    with pytest.raises(StoreError, match="no arm 999"):
        store.completed_examples(999, "test")
    run_id = store.start_run(card, kind="bakeoff", data_hashes={})
    arm_id = store.add_arm(run_id, "zero_shot", "m")
    with pytest.raises(StoreError, match="already has an arm named 'zero_shot'"):
        store.add_arm(run_id, "zero_shot", "other-model")
    with pytest.raises(StoreError, match="'done' is not a final status"):
        store.finish_run(run_id, status="done")
    with pytest.raises(StoreError, match="'running' is not a final status"):
        store.finish_arm(arm_id, {}, status="running")
    with pytest.raises(StoreError, match="give either path or content, not both"):
        store.add_artifact(run_id, kind="report", name="r", path=tmp_path, content={})
    with pytest.raises(StoreError, match="give either path or content, not neither"):
        store.add_artifact(run_id, kind="report", name="r")
    with pytest.raises(StoreError, match="artifact file not found"):
        store.add_artifact(run_id, kind="report", name="r", path=tmp_path / "missing.md")
    other_run = store.start_run(card, kind="bakeoff", data_hashes={})
    with pytest.raises(StoreError, match=f"no arm {arm_id} in run {other_run}"):
        store.add_artifact(other_run, kind="report", name="r", content={}, arm_id=arm_id)
    with pytest.raises(StoreError, match="a run needs a kind"):
        store.start_run(card, kind=" ", data_hashes={})


def test_a_failed_run_closes_its_arms_and_can_be_reopened(store: Store, card: TaskCard):
    run_id = store.start_run(card, kind="bakeoff", data_hashes={})
    done = store.add_arm(run_id, "zero_shot", "m")
    store.finish_arm(done, {"accuracy": 0.5})
    busy = store.add_arm(run_id, "lora", "m")
    store.add_predictions(busy, rows(range(3)))
    store.finish_run(run_id, Status.interrupted, error="KeyboardInterrupt")

    detail = store.get_run(run_id)
    assert (detail.status, detail.error) == ("interrupted", "KeyboardInterrupt")
    assert [(arm.name, arm.status) for arm in detail.arms] == [("zero_shot", "finished"), ("lora", "interrupted")]

    store.reopen_run(run_id)
    detail = store.get_run(run_id)
    assert (detail.status, detail.finished_at, detail.error) == ("running", None, None)
    assert [(arm.name, arm.status) for arm in detail.arms] == [("zero_shot", "finished"), ("lora", "running")]
    assert store.completed_examples(detail.arm("lora").id, "test") == {0, 1, 2}


def test_record_check_stores_a_finished_check_run(store: Store, card: TaskCard):
    class Report:
        data_hashes = {"file": "cd" * 32}

        def to_dict(self):
            return {"ok": True, "sizes": {"train": 80, "validation": 10, "test": 10},
                    "findings": [{"code": "duplicate_input", "count": 3, "examples": []}],
                    "readiness": [{"key": "metric", "status": "met"}]}

    run_id = store.record_check(card, Report())
    detail = store.get_run(run_id)
    assert (detail.kind, detail.status) == ("check", "finished")
    assert detail.summary == {"examples": {"train": 80, "validation": 10, "test": 10},
                              "findings": {"duplicate_input": 3}, "readiness": {"metric": "met"}}
    assert detail.data_hashes == Report.data_hashes
    assert detail.seeds == {"split": 0}
    [artifact] = detail.artifacts
    assert (artifact.kind, artifact.name) == ("check_report", "check.json")


@pytest.mark.postgres
def test_the_test_postgres_server_has_pgvector(postgres_url: str):
    """Later issues keep knowledge chunks in pgvector: the server the tests start must have it."""
    with open_store(postgres_url) as store, store.engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        distance = connection.execute(text("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector")).scalar()
    assert distance == 1.0
