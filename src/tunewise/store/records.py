"""What goes into the store and what comes out: plain frozen dataclasses.

The Store API returns these, never ORM objects, so a caller can keep them after the store is
closed, pass them between processes, and never trigger a lazy load by reading an attribute.
Times are timezone-aware UTC. ``to_dict()`` gives JSON-ready data (ISO 8601 times).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tunewise.errors import StoreError
from tunewise.store.values import to_json_value


class _ToDict:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601 strings)."""
        return to_json_value(dataclasses.asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class PredictionRow(_ToDict):
    """One arm's answer on one example, with what it cost. Goes in and comes out as is.

    ``input_hash`` identifies the input without storing it (``sha256_text(example.input)``),
    so a resumed run can tell that example N is still the same example. ``error`` says why
    there is no output (a timeout, a refusal); such a row still counts as done on resume.
    """

    split: str
    example_index: int
    input_hash: str
    output: str | None
    expected: str | None = None
    score: float | None = None
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    cached: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CachedCall(_ToDict):
    """One model call kept in the call cache. Goes in and comes out as is.

    ``key`` is a sha256 hex digest of everything that decides the answer (the caller builds
    it); ``output`` is any JSON document the caller wants back (e.g. ``{"output": ...,
    "raw": ..., "valid": ...}``). Tokens, latency and cost are the *original* call's, so a
    cached re-run reports what the live call measured. ``created_at`` is set by the store.
    """

    key: str
    model_id: str
    output: Any
    tokens_in: int
    tokens_out: int
    latency_s: float
    cost_usd: float
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArmSummary(_ToDict):
    """An arm of a run, with how many predictions it stored and what they cost in all."""

    id: int
    run_id: int
    name: str
    model: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None
    predictions: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class ArtifactRecord(_ToDict):
    """A file/folder a run produced (``path``) or an inline JSON document (``content``)."""

    id: int
    run_id: int
    arm_id: int | None
    kind: str
    name: str
    path: str | None
    content: Any
    sha256: str
    bytes: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _RunHead(_ToDict):
    """What every view of a run starts with: which run, of which task, and when."""

    id: int
    task_id: int
    task_name: str
    kind: str
    status: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish; None while running."""
        return None if self.finished_at is None else (self.finished_at - self.created_at).total_seconds()


@dataclass(frozen=True, slots=True)
class RunSummary(_RunHead):
    """One line of `tunewise runs list`."""

    arms: int
    predictions: int
    summary: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RunDetail(_RunHead):
    """Everything about one run (`tunewise runs show ID`): what rebuilds it and what it found."""

    card: dict[str, Any]  # the task card as it was, every field (TaskCard.model_validate rebuilds it)
    data_hashes: dict[str, Any]  # sha256 of each data file, by role
    package_versions: dict[str, Any]  # python, platform, cpu, packages (see provenance.environment)
    seeds: dict[str, Any]
    models: dict[str, Any]  # model identifiers (name, revision or file hash) by role or arm
    config: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    arms: list[ArmSummary]
    artifacts: list[ArtifactRecord]

    @property
    def predictions(self) -> int:
        return sum(arm.predictions for arm in self.arms)

    def arm(self, name: str) -> ArmSummary:
        """The arm called ``name`` (to resume it); StoreError if the run has none."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        names = ", ".join(arm.name for arm in self.arms) or "none"
        raise StoreError(f"run {self.id} has no arm {name!r}", fix=f"its arms: {names}")
