"""The bake-off: every chosen arm on the same frozen test split, every prediction stored.

For each arm, in order: skip it (with the reason) when it does not apply or the time budget
is spent; answer what the call cache already knows; `prepare` the arm only if something is
left to answer; predict in batches, storing each batch as it lands (so a killed run resumes
where it stopped); then score it: the metric with a bootstrap 95% interval, latency
percentiles, tokens and dollars per 1,000 requests.

The runner knows nothing of an arm's insides (see arms/base.py) and never prints: it reports
through an `Observer`, which the CLI renders as progress bars.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunewise.arms.base import Arm, ArmContext, Budget, Candidate, Prediction
from tunewise.bakeoff.cache import CallCache
from tunewise.bakeoff.results import ArmResult, BakeoffResult, score_arm
from tunewise.models.base import Backend, Usage
from tunewise.scoring import resolve_metric
from tunewise.store import PredictionRow, Store, sha256_text
from tunewise.store.schema import Status
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Dataset, Example
from tunewise.task.load import load_task

SPLIT = "test"


class Observer:
    """What the bake-off tells the outside world while it runs. Override what you need."""

    def run_started(self, run_id: int, resumed: bool, n_examples: int) -> None: ...
    def arm_started(self, name: str, total: int, already: int) -> None: ...
    def arm_progress(self, name: str, done: int) -> None: ...
    def arm_finished(self, result: ArmResult) -> None: ...


@dataclass
class BakeoffOptions:
    limit: int | None = None  # score on a seeded sample of this many test examples
    budget_s: float | None = None  # wall-clock budget for the whole bake-off
    use_cache: bool = True
    seed: int = 0
    embedder: str = "all-minilm-l6-v2"  # the embedding model spec for arms that embed


@dataclass
class _Services:
    """Loaded models and the embedder, shared by every arm of one bake-off."""

    card: TaskCard
    store: Store
    load_backend: Callable[[str], Backend]
    load_embedder: Callable[[], Any]
    backends: dict[str, Backend] = field(default_factory=dict)
    embedder: Any = None

    def backend(self, spec: str) -> Backend:
        if spec not in self.backends:
            self.backends[spec] = self.load_backend(spec)
        return self.backends[spec]

    def get_embedder(self) -> Any:
        if self.embedder is None:
            self.embedder = self.load_embedder()
        return self.embedder

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()


MIN_ARM_SECONDS = 10.0
"""An arm whose turn comes with less of the budget left is skipped: it could load, not answer.
(At most a twentieth of the budget, so that a tiny budget still runs its first arm.)"""


FIRST_TIMED_BATCH = 16
"""Under a time budget, an arm's first batch is at most this many examples: it measures the
arm's rate, which sizes the later batches to the time left."""


def _min_arm_seconds(budget_s: float | None) -> float:
    return 0.0 if budget_s is None else min(MIN_ARM_SECONDS, budget_s / 20)


def run_bakeoff(
    card: TaskCard,
    arms: Sequence[Arm],
    *,
    store: Store,
    options: BakeoffOptions | None = None,
    observer: Observer | None = None,
    load_backend: Callable[[str], Backend] | None = None,
    load_embedder: Callable[[], Any] | None = None,
) -> BakeoffResult:
    """Run ``arms`` on the card's test split and record everything in ``store``.

    ``load_backend`` / ``load_embedder`` default to the real loaders; tests pass scripted ones.
    A run with the same task, data and settings that was interrupted is resumed, not redone.
    """
    options = options or BakeoffOptions()
    observer = observer or Observer()
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    started = time.monotonic()
    dataset = load_task(card)
    examples = select_examples(dataset.test, options.limit, options.seed)
    metric = resolve_metric(card.metric_name, card.kind, labels=dataset.labels, schema=card.schema_dict())
    config = {"arms": names, "limit": options.limit, "n_examples": len(examples), "seed": options.seed,
              "metric": metric.name}
    run_id, resumed = _start_or_resume(store, card, dataset, config, options.seed)
    observer.run_started(run_id, resumed, len(examples))

    services = _Services(card, store, load_backend or _default_backend_loader(card),
                         load_embedder or _default_embedder_loader(store, options.embedder))
    cache = CallCache(store, card, dataset, embedder=options.embedder, enabled=options.use_cache)
    results: list[ArmResult] = []
    try:
        for arm in arms:
            remaining = None if options.budget_s is None else options.budget_s - (time.monotonic() - started)
            result = _run_arm(arm, dataset, examples, metric, run_id, store, services, cache, observer,
                              remaining, options.seed, min_seconds=_min_arm_seconds(options.budget_s))
            results.append(result)
            observer.arm_finished(result)
    except KeyboardInterrupt:
        store.finish_run(run_id, Status.interrupted, error="interrupted (Ctrl-C); run again to resume")
        raise
    except Exception as error:
        store.finish_run(run_id, Status.failed, error=f"{type(error).__name__}: {error}")
        raise
    finally:
        services.close()
    result = BakeoffResult(run_id=run_id, task=card.name, metric=metric.name, n_examples=len(examples),
                           arms=results, resumed=resumed, elapsed_s=time.monotonic() - started)
    store.finish_run(run_id, Status.finished, summary=result.summary())
    return result


def select_examples(test: Sequence[Example], limit: int | None, seed: int) -> list[tuple[int, Example]]:
    """(index, example) pairs to score: all of test, or a seeded sample of ``limit`` of them in
    split order. A sample rather than the first N, because files are often sorted by label."""
    indexes = list(range(len(test)))
    if limit is not None and limit < len(test):
        indexes = sorted(random.Random(seed).sample(indexes, limit))
    return [(i, test[i]) for i in indexes]


# -- one arm --------------------------------------------------------------------------------


def _run_arm(
    arm: Arm,
    dataset: Dataset,
    examples: list[tuple[int, Example]],
    metric,
    run_id: int,
    store: Store,
    services: _Services,
    cache: CallCache,
    observer: Observer,
    remaining_s: float | None,
    seed: int,
    min_seconds: float = 0.0,
) -> ArmResult:
    reason = arm.applies(dataset)
    if reason is None and remaining_s is not None:
        forecast = arm.estimated_seconds(dataset, len(examples))
        if remaining_s <= min_seconds:
            reason = "the time budget was spent before this arm's turn (raise --budget)"
        elif forecast is not None and forecast > remaining_s:
            reason = (f"needs about {_minutes(forecast)} but {_minutes(remaining_s)} of the time budget is left "
                      f"(raise --budget or lower --limit)")
    if reason is not None:
        return ArmResult.skipped(arm.name, reason)

    arm_id = _arm_id(store, run_id, arm)
    done = store.completed_examples(arm_id, SPLIT)
    todo = [(i, ex) for i, ex in examples if i not in done]
    observer.arm_started(arm.name, len(examples), len(examples) - len(todo))
    arm_started = time.monotonic()

    hits = cache.lookup(arm, [ex for _, ex in todo])
    if hits:
        _store_rows(store, arm_id, [(i, ex, hits[ex.input]) for i, ex in todo if ex.input in hits], metric, cached=True)
        todo = [(i, ex) for i, ex in todo if ex.input not in hits]
        observer.arm_progress(arm.name, len(examples) - len(todo))

    candidate: Candidate | None = None
    stopped: str | None = None
    if todo:
        context = ArmContext(dataset=dataset, backend=services.backend, embedder=services.get_embedder,
                             budget=Budget(seconds=remaining_s), seed=seed, store=store, run_id=run_id)
        try:
            candidate = arm.prepare(context)
        except Exception as error:
            store.finish_arm(arm_id, {"error": f"{type(error).__name__}: {error}"}, Status.failed)
            raise
        stopped = _predict_all(arm, candidate, todo, examples, store, arm_id, metric, cache, observer,
                               deadline=None if remaining_s is None else arm_started + remaining_s)

    rows = store.predictions(arm_id, SPLIT)
    if stopped and not rows:  # nothing to score: the arm did not run, whatever it prepared
        store.finish_arm(arm_id, {"error": stopped}, Status.interrupted)
        return ArmResult.skipped(arm.name, f"{stopped} (it had prepared; nothing was answered)")
    result = score_arm(arm.name, candidate, rows, examples, metric, dataset, stopped=stopped,
                       prepare_usage=candidate.prepare_usage if candidate else None,
                       wall_s=time.monotonic() - arm_started, model_id=cache.model_ids.get(arm.name))
    result.secondary.update(_detail_scores(store, cache, arm, examples, rows))
    store.finish_arm(arm_id, result.to_metrics(), Status.interrupted if stopped else Status.finished)
    return result


def _detail_scores(store: Store, cache: CallCache, arm: Arm, examples: list[tuple[int, Example]],
                   rows: list[PredictionRow]) -> dict[str, float]:
    """Retrieval (hit@k, MRR, nDCG against the data's ``source``) and groundedness numbers, for
    arms that record retrieval in ``Prediction.extra`` (RAG); empty for the others. The extras
    are read back from the call cache, where every fresh answer is saved, so answers taken
    from the cache or from an interrupted run count as well."""
    from tunewise.scoring.retrieval import detail_scores

    answered = {row.example_index for row in rows}
    pairs = [ex for i, ex in examples if i in answered]
    keys = [cache.key(arm, ex) for ex in pairs]
    found = store.cached_calls(list(dict.fromkeys(keys)))
    details = [found[key].output.get("extra") if key in found else None for key in keys]
    return detail_scores(details, [ex.meta.get("source") for ex in pairs])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _predict_all(arm, candidate, todo, examples, store, arm_id, metric, cache, observer, *, deadline) -> str | None:
    """Predict ``todo`` batch by batch; returns why it stopped early, or None.

    Under a deadline, batches shrink to what the time left is expected to fit (at the rate
    measured so far; the first batch is at most ``FIRST_TIMED_BATCH``, to measure it): a
    batch of 64 slow examples would otherwise overrun the budget by minutes."""
    size = max(1, candidate.batch_size())
    finished = len(examples) - len(todo)
    per_example: float | None = None
    start = 0
    while start < len(todo):
        step = size
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"the time budget ran out after {finished} of {len(examples)} examples"
            step = min(size, FIRST_TIMED_BATCH) if per_example is None else max(1, min(size, int(left / per_example)))
        batch = todo[start : start + step]
        began = time.monotonic()
        predictions = candidate.predict([ex for _, ex in batch])
        per_example = (time.monotonic() - began) / len(batch)
        if len(predictions) != len(batch):
            raise RuntimeError(f"arm {arm.name} returned {len(predictions)} predictions for {len(batch)} examples")
        _store_rows(store, arm_id, [(i, ex, p) for (i, ex), p in zip(batch, predictions)], metric, cached=False)
        cache.save(arm, candidate, [ex for _, ex in batch], predictions)
        finished += len(batch)
        start += len(batch)
        observer.arm_progress(arm.name, finished)
    return None


def _store_rows(store: Store, arm_id: int, items: list[tuple[int, Example, Prediction]], metric, *, cached: bool):
    from tunewise.scoring import per_example_scores

    if not items:
        return
    scores = per_example_scores(metric, [p.output for _, _, p in items], [ex.answers for _, ex, _ in items])
    rows = [
        PredictionRow(
            split=SPLIT, example_index=i, input_hash=sha256_text(ex.input), output=p.output, expected=ex.output,
            score=float(score), latency_ms=p.usage.latency_s * 1000, tokens_in=p.usage.tokens_in,
            tokens_out=p.usage.tokens_out, cost_usd=p.usage.cost_usd, cached=cached,
            error=None if p.valid else "invalid: the answer did not parse or fit the schema",
        )
        for (i, ex, p), score in zip(items, scores)
    ]
    store.add_predictions(arm_id, rows)


# -- the run record --------------------------------------------------------------------------


def _start_or_resume(store: Store, card: TaskCard, dataset: Dataset, config: dict, seed: int) -> tuple[int, bool]:
    """Resume the newest unfinished bake-off of this task with the same data and settings."""
    for summary in store.list_runs(task_name=card.name, limit=20):
        if summary.kind != "bakeoff" or summary.status not in (Status.running, Status.interrupted):
            continue
        detail = store.get_run(summary.id)
        if detail.config == config and detail.data_hashes == dataset.data_hashes and detail.card == _card_json(card):
            store.reopen_run(summary.id)
            return summary.id, True
    run_id = store.start_run(card, kind="bakeoff", data_hashes=dataset.data_hashes,
                             seeds={"split": card.data.split.seed, "bakeoff": seed}, models={}, config=config)
    return run_id, False


def _card_json(card: TaskCard) -> dict:
    return card.model_dump(mode="json")


def _arm_id(store: Store, run_id: int, arm: Arm) -> int:
    detail = store.get_run(run_id)
    for existing in detail.arms:
        if existing.name == arm.name:
            return existing.id
    params = arm.params()
    return store.add_arm(run_id, arm.name, str(params.get("model", "")), config=params)


def _default_backend_loader(card: TaskCard) -> Callable[[str], Backend]:
    from tunewise.models.load import load_backend

    return lambda spec: load_backend(spec, card)


def _default_embedder_loader(store: Store, spec: str) -> Callable[[], Any]:
    def load():
        from tunewise.knowledge.embed import Embedder

        return Embedder.load(spec, store=store)

    return load


__all__ = ["BakeoffOptions", "Observer", "Usage", "run_bakeoff", "select_examples"]
