"""The Store API: record tasks, runs, arms, predictions and artifacts; read them back;
keep the model-call and embedding caches.

One ``Store`` wraps one database (SQLite file or PostgreSQL). Every method is one short
transaction on a connection of its own from the pool, so threads may share a Store and
processes may share the database. Ids are integers. What comes back are plain frozen dataclasses from
``records.py`` (never ORM objects), so they outlive the store and never lazy-load.

A bake-off's life in the store::

    run_id = store.start_run(card, kind="bakeoff", data_hashes=dataset.data_hashes,
                             seeds={"split": 0}, models={"small": "HuggingFaceTB/SmolLM2-135M"})
    arm_id = store.add_arm(run_id, "zero_shot", "HuggingFaceTB/SmolLM2-135M", {"max_tokens": 16})
    done = store.completed_examples(arm_id, "test")     # non-empty when resuming
    todo = [i for i in range(len(test)) if i not in done]
    store.add_predictions(arm_id, rows)            # PredictionRow(split, index, sha256_text(input), ...), in batches
    store.finish_arm(arm_id, {"accuracy": 0.81})
    store.finish_run(run_id, summary={...})        # or status="failed", error="..."

The caches outlive runs: ``cached_calls`` / ``cache_calls`` keep model answers with what the
original call measured; ``cached_embeddings`` / ``cache_embeddings`` keep embedding vectors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, Insert, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tunewise.errors import StoreError
from tunewise.store.db import WRITE, connection_error, create_store_engine
from tunewise.store.digests import path_digest, sha256_json
from tunewise.store.location import masked, store_url
from tunewise.store.migrate import upgrade
from tunewise.store.provenance import card_document, card_hash, environment
from tunewise.store.records import ArmSummary, ArtifactRecord, CachedCall, PredictionRow, RunDetail, RunSummary
from tunewise.store.schema import (
    Arm,
    Artifact,
    CallCache,
    EmbeddingCache,
    Prediction,
    Run,
    Status,
    Task,
    utcnow,
)
from tunewise.store.values import canonical_json
from tunewise.task.card import TaskCard

# Rows per INSERT round: large enough to amortise the round trip, small enough to keep any
# one statement's memory and lock time short.
_PREDICTION_BATCH = 5000
_PREDICTION_KEY = ["arm_id", "split", "example_index"]
_PREDICTIONS = Prediction.metadata.tables["predictions"]  # the Table, for Core bulk inserts
_CALL_CACHE = CallCache.metadata.tables["call_cache"]
_EMBEDDING_CACHE = EmbeddingCache.metadata.tables["embedding_cache"]
# Keys per ``IN (...)`` look-up: well under SQLite's bound-parameter limit (32,766 since 3.32,
# 999 before) and PostgreSQL's 65,535, so any number of keys works, a chunk at a time.
_KEYS_PER_QUERY = 900
_CACHE_BATCH = 1000  # cache rows per INSERT round
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_VECTOR_DTYPE = np.dtype("<f4")  # float32, little-endian: the same bytes on every machine
_FINAL = (Status.finished, Status.failed, Status.interrupted)


class CheckReportLike(Protocol):
    """What ``record_check`` needs from a check report."""

    def to_dict(self) -> dict[str, Any]: ...


def open_store(url: str | None = None) -> Store:
    """Open the run store at ``url`` (see ``store_url`` for the default), creating it and
    applying pending migrations. StoreError, naming the URL (password masked) and a fix, if
    it cannot be reached, needs a driver, or was written by a newer tunewise."""
    engine = create_store_engine(store_url(url))
    try:
        upgrade(engine)
    except StoreError:
        engine.dispose()
        raise
    except SQLAlchemyError as error:
        engine.dispose()
        raise connection_error(engine.url, error) from None
    return Store(engine)


class Store:
    """The run store. Use as a context manager, or call ``close()``."""

    def __init__(self, engine: Engine):
        self.engine = engine  # for modules that add their own tables (on schema.Base)
        self.url = masked(engine.url)
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(engine.execution_options(**{WRITE: True}), expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # -- writing ---------------------------------------------------------------------------

    def record_task(self, card: TaskCard) -> int:
        """The id of the task row for this card's content, inserting it if new."""
        with self._session(write=True) as session:
            return self._task_id(session, card)

    def start_run(
        self,
        card: TaskCard,
        *,
        kind: str,
        data_hashes: Mapping[str, str],
        seeds: Mapping[str, int] | None = None,
        models: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> int:
        """Open a run (status ``running``) recording what rebuilds it: the card, the data
        hashes, seeds, model identifiers and config, plus this machine's package versions."""
        if not kind.strip():
            raise StoreError("a run needs a kind", fix='pass kind="check", "bakeoff", ...')
        with self._session(write=True) as session:
            run = Run(
                task_id=self._task_id(session, card),
                kind=kind,
                status=Status.running.value,
                card=card_document(card),
                data_hashes=dict(data_hashes),
                package_versions=environment(),
                seeds=dict(seeds or {}),
                models=dict(models or {}),
                config=dict(config or {}),
            )
            session.add(run)
            session.flush()
            return run.id

    def add_arm(self, run_id: int, name: str, model: str, config: Mapping[str, Any] | None = None) -> int:
        """Add an arm (status ``running``) to a run. Arm names are unique within a run."""
        with self._session(write=True) as session:
            _require_run(session, run_id)
            taken = session.scalar(select(Arm.id).where(Arm.run_id == run_id, Arm.name == name))
            if taken is not None:
                raise StoreError(
                    f"run {run_id} already has an arm named {name!r} (arm {taken})",
                    fix="give each arm its own name; to resume it, use get_run(run_id).arm(name).id",
                )
            arm = Arm(run_id=run_id, name=name, model=model, config=dict(config or {}), status=Status.running.value)
            session.add(arm)
            session.flush()
            return arm.id

    def add_predictions(self, arm_id: int, rows: Iterable[PredictionRow]) -> int:
        """Store an arm's predictions in bulk; returns how many were new.

        A row whose (split, example_index) the arm already has is skipped, not overwritten:
        the first answer stored is the one scored, so re-sending a batch after a crash (or a
        resumed run overlapping the old one) never duplicates or changes results.
        """
        now = utcnow()
        values = [_prediction_values(arm_id, row, now) for row in rows]
        with self._session(write=True) as session:
            _require_arm(session, arm_id)
            if not values:
                return 0
            # Counting before and after, because executemany's rowcount is not reliable on
            # every driver (psycopg reports 0), and RETURNING made the insert 2-4x slower.
            before = _prediction_count(session, arm_id)
            statement = self._insert_skipping_duplicates(_PREDICTIONS, _PREDICTION_KEY)
            connection = session.connection()
            for start in range(0, len(values), _PREDICTION_BATCH):
                connection.execute(statement, values[start : start + _PREDICTION_BATCH])
            return _prediction_count(session, arm_id) - before

    def finish_arm(self, arm_id: int, metrics: Mapping[str, Any] | None, status: str = Status.finished) -> None:
        """Close an arm with its metrics (any JSON-able mapping; NaN is stored as null)."""
        final = _final_status(status)
        with self._session(write=True) as session:
            _require_arm(session, arm_id)
            session.execute(
                update(Arm).where(Arm.id == arm_id).values(
                    status=final, metrics=None if metrics is None else dict(metrics), finished_at=utcnow()
                )
            )

    def finish_run(
        self,
        run_id: int,
        status: str = Status.finished,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Close a run. Arms still ``running`` take the run's status (a failed or interrupted
        run leaves no arm that looks alive)."""
        final = _final_status(status)
        now = utcnow()
        with self._session(write=True) as session:
            _require_run(session, run_id)
            session.execute(
                update(Run).where(Run.id == run_id).values(
                    status=final, finished_at=now, summary=None if summary is None else dict(summary), error=error
                )
            )
            session.execute(
                update(Arm)
                .where(Arm.run_id == run_id, Arm.status == Status.running.value)
                .values(status=final, finished_at=now)
            )

    def reopen_run(self, run_id: int) -> None:
        """Mark an interrupted or failed run ``running`` again, to resume it: its unfinished
        arms go back to ``running`` too; finished arms and every stored prediction stay."""
        with self._session(write=True) as session:
            _require_run(session, run_id)
            session.execute(
                update(Run).where(Run.id == run_id).values(status=Status.running.value, finished_at=None, error=None)
            )
            session.execute(
                update(Arm)
                .where(Arm.run_id == run_id, Arm.status != Status.finished.value)
                .values(status=Status.running.value, finished_at=None)
            )

    def add_artifact(
        self,
        run_id: int,
        *,
        kind: str,
        name: str,
        path: str | Path | None = None,
        content: Any = None,
        arm_id: int | None = None,
    ) -> int:
        """Record a file or folder a run produced (``path``: its sha256 and size are taken
        now) or a small JSON document (``content``). Give exactly one of the two."""
        if (path is None) == (content is None):
            raise StoreError(
                f"artifact {name!r}: give either path or content, not {'both' if path else 'neither'}",
                fix="path= for a file or folder, content= for an inline JSON document",
            )
        if path is not None:
            location = Path(path).absolute()
            if not location.exists():
                raise StoreError("artifact file not found", where=str(location),
                                 fix="write the artifact before recording it")
            digest, size = path_digest(location)
            stored_path: str | None = str(location)
        else:
            digest, size, stored_path = sha256_json(content), len(canonical_json(content).encode()), None
        with self._session(write=True) as session:
            _require_run(session, run_id)
            if arm_id is not None:
                owner = session.scalar(select(Arm.run_id).where(Arm.id == arm_id))
                if owner != run_id:
                    raise StoreError(f"no arm {arm_id} in run {run_id}", fix="see `tunewise runs show RUN`")
            artifact = Artifact(run_id=run_id, arm_id=arm_id, kind=kind, name=name, path=stored_path,
                                content=content, sha256=digest, bytes=size)
            session.add(artifact)
            session.flush()
            return artifact.id

    def record_check(
        self, card: TaskCard, report: CheckReportLike, *, data_hashes: Mapping[str, str] | None = None
    ) -> int:
        """Record a clean `tunewise check` as a finished run of kind ``check``: a short summary
        (split sizes, finding counts, readiness) on the run, the full report as an artifact.
        Data hashes: ``data_hashes``, else the report's own."""
        hashes = data_hashes if data_hashes is not None else getattr(report, "data_hashes", None) or {}
        full = report.to_dict()
        run_id = self.start_run(card, kind="check", data_hashes=hashes, seeds={"split": card.data.split.seed})
        self.add_artifact(run_id, kind="check_report", name="check.json", content=full)
        summary = {
            "examples": full.get("sizes", {}),
            "findings": {f["code"]: f["count"] for f in full.get("findings", [])},
            "readiness": {item["key"]: item["status"] for item in full.get("readiness", [])},
        }
        self.finish_run(run_id, Status.finished, summary=summary)
        return run_id

    # -- reading ---------------------------------------------------------------------------

    def completed_examples(self, arm_id: int, split: str) -> set[int]:
        """Example indexes of ``split`` this arm already has predictions for (to resume)."""
        with self._session() as session:
            _require_arm(session, arm_id)
            found = session.scalars(
                select(Prediction.example_index).where(Prediction.arm_id == arm_id, Prediction.split == split)
            )
            return set(found)

    def predictions(self, arm_id: int, split: str | None = None) -> list[PredictionRow]:
        """An arm's predictions, by split then example index."""
        columns = [getattr(Prediction, name) for name in PredictionRow.__dataclass_fields__]
        statement = select(*columns).where(Prediction.arm_id == arm_id)
        if split is not None:
            statement = statement.where(Prediction.split == split)
        with self._session() as session:
            _require_arm(session, arm_id)
            rows = session.execute(statement.order_by(Prediction.split, Prediction.example_index))
            return [PredictionRow(*row) for row in rows]

    def list_runs(self, task_name: str | None = None, limit: int | None = 50) -> list[RunSummary]:
        """Runs, newest first, optionally of one task only; at most ``limit`` (None: all)."""
        if limit is not None and limit < 1:
            raise StoreError(f"limit must be at least 1, got {limit}", fix="pass --limit 1 or more")
        statement = (
            select(Run.id, Run.task_id, Task.name, Run.kind, Run.status, Run.created_at, Run.finished_at, Run.summary)
            .join(Task, Task.id == Run.task_id)
            .order_by(Run.created_at.desc(), Run.id.desc())
            .limit(limit)
        )
        if task_name is not None:
            statement = statement.where(Task.name == task_name)
        with self._session() as session:
            runs = session.execute(statement).all()
            ids = [run.id for run in runs]
            arm_counts = dict(
                session.execute(select(Arm.run_id, func.count()).where(Arm.run_id.in_(ids)).group_by(Arm.run_id)).all()
            )
            prediction_counts = dict(
                session.execute(
                    select(Arm.run_id, func.count())
                    .join(Prediction, Prediction.arm_id == Arm.id)
                    .where(Arm.run_id.in_(ids))
                    .group_by(Arm.run_id)
                ).all()
            )
        return [
            RunSummary(
                id=run.id, task_id=run.task_id, task_name=run.name, kind=run.kind, status=run.status,
                created_at=run.created_at, finished_at=run.finished_at,
                arms=arm_counts.get(run.id, 0), predictions=prediction_counts.get(run.id, 0), summary=run.summary,
            )
            for run in runs
        ]

    def get_run(self, run_id: int) -> RunDetail:
        """One run with its arms (and their prediction counts and cost) and artifacts."""
        with self._session() as session:
            found = session.execute(
                select(Run, Task.name).join(Task, Task.id == Run.task_id).where(Run.id == run_id)
            ).first()
            if found is None:
                raise _no_run(run_id)
            run, task_name = found
            arms = session.scalars(select(Arm).where(Arm.run_id == run_id).order_by(Arm.id)).all()
            totals: dict[int, tuple[int, float]] = {
                arm_id: (count, float(cost or 0.0))
                for arm_id, count, cost in session.execute(
                    select(Prediction.arm_id, func.count(), func.sum(Prediction.cost_usd))
                    .where(Prediction.arm_id.in_([arm.id for arm in arms]))
                    .group_by(Prediction.arm_id)
                ).all()
            }
            artifacts = session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)).all()
        return RunDetail(
            id=run.id, task_id=run.task_id, task_name=task_name, kind=run.kind, status=run.status,
            created_at=run.created_at, finished_at=run.finished_at, card=run.card, data_hashes=run.data_hashes,
            package_versions=run.package_versions, seeds=run.seeds, models=run.models, config=run.config,
            summary=run.summary, error=run.error,
            arms=[_arm_summary(arm, *totals.get(arm.id, (0, 0.0))) for arm in arms],
            artifacts=[_artifact_record(artifact) for artifact in artifacts],
        )

    # -- caches ----------------------------------------------------------------------------

    def cached_calls(self, keys: Sequence[str]) -> dict[str, CachedCall]:
        """The cached calls among ``keys``, by key; keys not in the cache are left out."""
        columns = [getattr(CallCache, name) for name in CachedCall.__dataclass_fields__]
        found: dict[str, CachedCall] = {}
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(keys)), _KEYS_PER_QUERY):
                for row in session.execute(select(*columns).where(CallCache.key.in_(chunk))):
                    found[row.key] = CachedCall(*row)
        return found

    def cache_calls(self, entries: Iterable[CachedCall]) -> None:
        """Keep calls in the cache. A key already cached keeps its first entry: the first
        measurement is the one every re-run reports."""
        now = utcnow()
        values: dict[str, dict[str, Any]] = {}
        for entry in entries:
            values.setdefault(entry.key, _cached_call_values(entry, now))
        self._insert_ignoring_conflicts(_CALL_CACHE, ["key"], list(values.values()))

    def cached_embeddings(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached float32 vectors of ``model`` among the text ``hashes``, by hash."""
        found: dict[str, np.ndarray] = {}
        columns = (EmbeddingCache.text_sha256, EmbeddingCache.dim, EmbeddingCache.vector)
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(hashes)), _KEYS_PER_QUERY):
                statement = select(*columns).where(EmbeddingCache.model == model, EmbeddingCache.text_sha256.in_(chunk))
                for text_hash, dim, blob in session.execute(statement):
                    vector = np.frombuffer(blob, dtype=_VECTOR_DTYPE)
                    if vector.size == dim:  # a damaged row reads as a miss: the text is embedded again
                        found[text_hash] = vector.astype(np.float32)  # native order, writable
        return found

    def cache_embeddings(self, model: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep ``model``'s vectors, by text sha256; a (model, hash) already cached is kept."""
        now = utcnow()
        rows = [_embedding_values(model, text_hash, vector, now) for text_hash, vector in vectors.items()]
        self._insert_ignoring_conflicts(_EMBEDDING_CACHE, ["model", "text_sha256"], rows)

    # -- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction; commits on success. Database trouble becomes a StoreError."""
        maker = self._writer if write else self._reader
        try:
            with maker.begin() as session:
                yield session
        except OperationalError as error:
            raise connection_error(self.engine.url, error) from None

    def _task_id(self, session: Session, card: TaskCard) -> int:
        digest = card_hash(card)
        found = session.scalar(select(Task.id).where(Task.card_hash == digest))
        if found is not None:
            return found
        task = Task(name=card.name, kind=card.kind.value, card_hash=digest, card_yaml=card.to_yaml(),
                    card_json=card_document(card))
        try:
            with session.begin_nested():  # a savepoint, so losing a race does not abort the transaction
                session.add(task)
        except IntegrityError:
            # Another process recorded the same card between our look-up and insert (PostgreSQL;
            # on SQLite, BEGIN IMMEDIATE already serialises writers).
            found = session.scalar(select(Task.id).where(Task.card_hash == digest))
            if found is None:
                raise
            return found
        return task.id

    def _insert_skipping_duplicates(self, table: Table, key: list[str]) -> Insert:
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing(index_elements=key)
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert(table).on_conflict_do_nothing(index_elements=key)
        return insert(table)  # other databases: a duplicate raises instead

    def _insert_ignoring_conflicts(self, table: Table, key: list[str], rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` in batches, in one transaction; rows whose key exists are skipped."""
        if not rows:
            return
        statement = self._insert_skipping_duplicates(table, key)
        with self._session(write=True) as session:
            connection = session.connection()
            for start in range(0, len(rows), _CACHE_BATCH):
                connection.execute(statement, rows[start : start + _CACHE_BATCH])


# -- helpers ---------------------------------------------------------------------------------


def _no_run(run_id: int) -> StoreError:
    return StoreError(f"no run {run_id}", fix="see `tunewise runs list`")


def _require_run(session: Session, run_id: int) -> None:
    if session.scalar(select(Run.id).where(Run.id == run_id)) is None:
        raise _no_run(run_id)


def _require_arm(session: Session, arm_id: int) -> None:
    if session.scalar(select(Arm.id).where(Arm.id == arm_id)) is None:
        raise StoreError(f"no arm {arm_id}", fix="add it with add_arm(), or see `tunewise runs show RUN` for arm ids")


def _prediction_count(session: Session, arm_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Prediction).where(Prediction.arm_id == arm_id)) or 0


def _final_status(status: str) -> str:
    try:
        value = Status(status)
    except ValueError:
        value = None
    if value not in _FINAL:
        raise StoreError(f"{status!r} is not a final status",
                         fix=f"use one of: {', '.join(s.value for s in _FINAL)}")
    return value.value


def _finite(value: float | None) -> float | None:
    # SQLite stores NaN as NULL and PostgreSQL keeps it; store NULL on both ("no number").
    return None if value is None or not math.isfinite(value) else float(value)


def _prediction_values(arm_id: int, row: PredictionRow, now: Any) -> dict[str, Any]:
    return {
        "arm_id": arm_id,
        "split": row.split,
        "example_index": int(row.example_index),
        "input_hash": row.input_hash,
        "output": row.output,
        "expected": row.expected,
        "score": _finite(row.score),
        "latency_ms": _finite(row.latency_ms),
        "tokens_in": None if row.tokens_in is None else int(row.tokens_in),
        "tokens_out": None if row.tokens_out is None else int(row.tokens_out),
        "cost_usd": _finite(row.cost_usd),
        "cached": bool(row.cached),
        "error": row.error,
        "created_at": now,
    }


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _cached_call_values(entry: CachedCall, now: Any) -> dict[str, Any]:
    if not _SHA256_HEX.match(entry.key):
        raise StoreError(f"call cache key {entry.key[:80]!r} is not a sha256 hex digest",
                         fix="key calls by hashlib.sha256(...).hexdigest() of what decides the answer")
    for name in ("latency_s", "cost_usd"):
        if not math.isfinite(getattr(entry, name)):
            raise StoreError(f"call cache entry {entry.key[:12]}: {name} is {getattr(entry, name)}",
                             fix="cache only calls whose latency and cost were measured")
    return {
        "key": entry.key,
        "model_id": entry.model_id,
        "output": entry.output,
        "tokens_in": int(entry.tokens_in),
        "tokens_out": int(entry.tokens_out),
        "latency_s": float(entry.latency_s),
        "cost_usd": float(entry.cost_usd),
        "created_at": now,
    }


def _embedding_values(model: str, text_hash: str, vector: np.ndarray, now: Any) -> dict[str, Any]:
    if not _SHA256_HEX.match(text_hash):
        raise StoreError(f"embedding cache key {text_hash[:80]!r} is not a sha256 hex digest",
                         fix="key vectors by sha256_text(text)")
    array = np.asarray(vector)
    if array.ndim != 1 or array.size == 0:
        raise StoreError(f"embedding {text_hash[:12]} has shape {array.shape}, not one non-empty row",
                         fix="cache one 1-d vector per text")
    flat = np.ascontiguousarray(array, dtype=_VECTOR_DTYPE)
    return {"model": model, "text_sha256": text_hash, "dim": int(flat.size), "vector": flat.tobytes(),
            "created_at": now}


def _arm_summary(arm: Arm, predictions: int, cost_usd: float) -> ArmSummary:
    return ArmSummary(
        id=arm.id, run_id=arm.run_id, name=arm.name, model=arm.model, config=arm.config, status=arm.status,
        metrics=arm.metrics, started_at=arm.started_at, finished_at=arm.finished_at,
        predictions=predictions, cost_usd=float(cost_usd),
    )


def _artifact_record(artifact: Artifact) -> ArtifactRecord:
    return ArtifactRecord(
        id=artifact.id, run_id=artifact.run_id, arm_id=artifact.arm_id, kind=artifact.kind, name=artifact.name,
        path=artifact.path, content=artifact.content, sha256=artifact.sha256, bytes=artifact.bytes,
        created_at=artifact.created_at,
    )

