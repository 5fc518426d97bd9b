"""Learning curves: how quality grows with the number of training examples, and what more
data would buy.

This is the evidence behind the "at least 1,000 examples" rule, measured on the team's own
task. LoRA is trained on nested subsets of the training split (n = 50, 100, 250, 500, 1000 and
all, those below the training size, as many as the time budget fits), each adapter is scored on
the same test examples with a bootstrap 95% interval, and a curve is fitted to the points:

    quality(n) = a - b * n^(-c)        a: the ceiling, b >= 0, c > 0 (a saturating power law)

with scipy's bounded ``curve_fit``, each point weighted by its interval. Three parameters need
at least four points to leave anything to check the fit against; with two or three the fit
falls back to ``quality(n) = intercept + slope * ln(n)`` (a constant gain per doubling, which
overstates far extrapolation and says so).

Why nested subsets: each larger subset contains the smaller, so the difference between two
points is the added data, not which examples a fresh draw happened to pick. For classify the
order is label-stratified: every prefix holds each label in (about) its share of the training
split, so a 50-example point on a 150-label task spreads over 50 labels instead of a few.

Why a joint bootstrap: every point is scored on the same test examples, so their errors are
correlated (a hard test set pulls every point down together). The uncertainty of what doubling
would buy comes from refitting the curve on bootstrap replicates that resample the test
examples once for all points (``joint_replicates``), keeping that correlation; when only the
points' intervals are known, each replicate draws every point independently within its interval
(``interval_replicates``), which is wider, never narrower, than the truth.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from tunewise.arms.base import Candidate, Prediction
from tunewise.errors import TunewiseError
from tunewise.models.base import Usage
from tunewise.scoring.stats import Estimate
from tunewise.task.dataset import Example

if TYPE_CHECKING:
    from tunewise.arms.base import ArmContext

CURVE_SIZES: tuple[int, ...] = (50, 100, 250, 500, 1000)
"""Training-set sizes of a learning curve; "all" (the whole training split) comes on top."""

MIN_POWER_LAW_POINTS = 4  # three parameters, and at least one point left to disagree with them
MIN_EXPONENT, MAX_EXPONENT = 0.05, 2.0  # flatter than n^-0.05 is a plateau; steeper than n^-2 is noise
MIN_SIGMA = 1e-3  # a point whose interval has zero width (all right) must not get infinite weight
Z95 = 1.959964
FIRST_TRAIN_SHARE = 0.6  # of the budget, to train the first size when answering time is not forecast (as lora)
UNPINNED_CEILING = 0.3  # a ceiling interval wider than this (in metric units) says little, and the text says so

FitForm = Literal["power_law", "log_linear", "none"]
Steepness = Literal["steep", "flat", "uncertain", "unknown"]


# -- the points -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvePoint:
    """Quality after training on the first ``n`` examples of the nested order."""

    n: int
    value: float
    low: float  # bootstrap 95% interval on the test examples
    high: float
    detail: dict[str, Any] = field(default_factory=dict)  # seconds, steps, losses, adapter folder

    @property
    def sigma(self) -> float:
        """A standard error read off the interval (for weighting the fit)."""
        return max((self.high - self.low) / (2 * Z95), MIN_SIGMA)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "value": self.value, "low": self.low, "high": self.high, **self.detail}


def curve_sizes(n_train: int, sizes: Sequence[int] = CURVE_SIZES) -> list[int]:
    """The sizes to train on: those of ``sizes`` below the training size, then all of it."""
    if n_train < 1:
        raise TunewiseError("a learning curve needs training examples, the task has none", where="data.train",
                            fix="add training examples to the task")
    chosen = sorted({s for s in sizes if 0 < s < n_train})
    return [*chosen, n_train]


def nested_order(keys: Sequence[Hashable], seed: int, *, strata: Sequence[Hashable] | None = None) -> list[int]:
    """Indices of ``keys`` in a seeded order whose every prefix is a fair subset: the first n
    make the size-n training subset, so each subset contains the smaller ones.

    With ``strata`` (classify: each example's label), every prefix holds each stratum in about
    its share of the whole (within one example): stratum s's k-th member, after a seeded
    shuffle within s, gets the position key (k + u) / |s| with u uniform in [0, 1), and the
    order sorts by key. ``keys`` only fix the length and make ties deterministic.
    """
    rng = random.Random(seed)
    if strata is None:
        order = list(range(len(keys)))
        rng.shuffle(order)
        return order
    if len(strata) != len(keys):
        raise ValueError(f"{len(strata)} strata for {len(keys)} examples")
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, stratum in enumerate(strata):
        members[stratum].append(index)
    position: list[tuple[float, int]] = []
    for stratum in sorted(members, key=str):  # a fixed stratum order: the draws must not depend on dict order
        group = members[stratum]
        rng.shuffle(group)
        position.extend(((rank + rng.random()) / len(group), index) for rank, index in enumerate(group))
    return [index for _, index in sorted(position)]


# -- fitting ----------------------------------------------------------------------------------


def power_law(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray | float:
    """a - b * n^(-c): rises towards the ceiling a, ever more slowly."""
    return a - b * np.power(n, -c)


def _power_law_jacobian(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """d(power_law)/d(a, b, c): exact derivatives for the optimiser, instead of finite
    differences whose step would need tuning near the bounds."""
    scaled = np.power(n, -c)
    return np.column_stack([np.ones_like(n), -scaled, b * scaled * np.log(n)])


def log_linear(n: np.ndarray | float, intercept: float, slope: float) -> np.ndarray | float:
    """intercept + slope * ln(n): the same gain for every doubling."""
    return intercept + slope * np.log(n)


def _fit(form: FitForm, n: np.ndarray, y: np.ndarray, sigma: np.ndarray, ceiling: float | None,
         start: Sequence[float] | None = None) -> tuple[float, ...] | None:
    """Least squares of one form, weighted by the points' standard errors; None if it fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # "covariance could not be estimated": expected at 4 points
        try:
            if form == "log_linear":
                params, _ = curve_fit(log_linear, n, y, p0=start or (float(y.mean()), 0.0), sigma=sigma,
                                      absolute_sigma=True)
                return tuple(float(p) for p in params)
            top = math.inf if ceiling is None else ceiling
            floor = float(y.min())
            # Start from a ceiling a little above the best point and the exponent of a typical
            # learning curve (~0.5), with b set so the curve passes through the smallest point.
            if start is None:
                a0 = float(np.clip(y.max() + 0.5 * (y.max() - y.min()) + 1e-3, floor, top))
                c0 = 0.5
                b0 = max((a0 - y[0]) * n[0] ** c0, 1e-6)
                start = (a0, b0, c0)
            start = (float(np.clip(start[0], floor, top)), max(start[1], 0.0), float(np.clip(start[2], MIN_EXPONENT,
                                                                                             MAX_EXPONENT)))
            params, _ = curve_fit(power_law, n, y, p0=start, sigma=sigma, absolute_sigma=True,
                                  bounds=([floor, 0.0, MIN_EXPONENT], [top, math.inf, MAX_EXPONENT]),
                                  jac=_power_law_jacobian, max_nfev=2000)
            return tuple(float(p) for p in params)
        except (RuntimeError, ValueError):
            return None


def _curve(form: FitForm, params: Sequence[float]):
    return (lambda n: power_law(n, *params)) if form == "power_law" else (lambda n: log_linear(n, *params))


def _n_for(form: FitForm, params: Sequence[float], target: float) -> float:
    """Training examples at which the fitted curve reaches ``target`` (inf: never)."""
    if form == "power_law":
        a, b, c = params
        if target >= a:
            return math.inf
        if b <= 0:
            return 1.0
        return float((b / (a - target)) ** (1.0 / c))
    intercept, slope = params
    if slope <= 0:
        return math.inf
    return float(math.exp(min((target - intercept) / slope, 700.0)))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass
class CurveFit:
    """A fitted learning curve and what it forecasts, with bootstrap intervals."""

    form: FitForm
    params: dict[str, float]
    largest_n: int  # the largest training size measured: extrapolation starts here
    doubling_gain: Interval | None = None  # quality(2N) - quality(N), N = largest_n
    ceiling: Interval | None = None  # a, the quality the power law levels off at (power law only)
    quality_bar: float | None = None
    n_for_bar: Interval | None = None  # examples needed to reach the bar (inf: the fit never does)
    steepness: Steepness = "unknown"
    replicates: int = 0  # bootstrap refits behind the intervals
    failed_replicates: int = 0

    def predict(self, n: float) -> float:
        if self.form == "none":
            raise ValueError("no curve was fitted")
        return float(_curve(self.form, list(self.params.values()))(n))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("doubling_gain", "ceiling", "n_for_bar"):  # JSON has no infinity: say "never" with null
            if data[key] is not None:
                data[key] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                             for k, v in data[key].items()}
        return data


def _interval(values: np.ndarray, point: float) -> Interval:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return Interval(point, point, point)
    low, high = np.quantile(finite, [0.025, 0.975])
    return Interval(point, float(low), float(high))


def interval_replicates(points: Sequence[CurvePoint], n_replicates: int = 200, seed: int = 0) -> np.ndarray:
    """(replicates x points) values drawn independently around each point, normal with the
    standard error its interval implies: for points whose per-example scores are not at hand."""
    rng = np.random.default_rng(seed)
    values = np.array([p.value for p in points])
    sigma = np.array([p.sigma for p in points])
    return values + rng.standard_normal((n_replicates, len(points))) * sigma


def joint_replicates(metric, stats: Sequence[np.ndarray], n_replicates: int = 200, seed: int = 0) -> np.ndarray:
    """(replicates x points) metric values on bootstrap resamples of the test examples, the
    same resample for every point (``stats``: each point's per-example statistics, same rows)."""
    from tunewise.scoring.stats import bootstrap_distribution

    return np.column_stack(bootstrap_distribution(metric, [np.asarray(s, dtype=float) for s in stats],
                                                  n_replicates, seed))


def fit_learning_curve(
    points: Sequence[CurvePoint],
    *,
    replicates: np.ndarray | None = None,
    ceiling: float | None = 1.0,
    quality_bar: float | None = None,
    worthwhile_gain: float = 0.02,
    n_replicates: int = 200,
    seed: int = 0,
) -> CurveFit:
    """Fit the points and forecast what doubling the data (and reaching ``quality_bar``) takes.

    ``replicates`` (replicates x points, e.g. from ``joint_replicates``) carry the points'
    uncertainty; without them, ``n_replicates`` draws of each point within its interval do.
    ``ceiling`` bounds the power law's a (1.0 for every built-in metric; None for an unbounded
    custom metric).
    ``worthwhile_gain``: the gain per doubling, in metric units, that makes collecting data
    worth it; it sets ``steepness``:
      steep      the estimate is at least that, and the interval excludes no gain at all
      flat       even the interval's optimistic end is below it
      uncertain  the points cannot tell yet
    """
    points = sorted(points, key=lambda p: p.n)
    if len({p.n for p in points}) != len(points):
        raise ValueError("learning-curve points must have distinct sizes")
    n = np.array([p.n for p in points], dtype=float)
    y = np.array([p.value for p in points], dtype=float)
    sigma = np.array([p.sigma for p in points])
    largest = int(n.max()) if len(points) else 0
    if len(points) < 2:
        return CurveFit(form="none", params={}, largest_n=largest, quality_bar=quality_bar)
    form: FitForm = "power_law" if len(points) >= MIN_POWER_LAW_POINTS else "log_linear"
    params = _fit(form, n, y, sigma, ceiling)
    if params is None and form == "power_law":
        form, params = "log_linear", _fit("log_linear", n, y, sigma, ceiling)
    if params is None:
        return CurveFit(form="none", params={}, largest_n=largest, quality_bar=quality_bar)
    names = ("a", "b", "c") if form == "power_law" else ("intercept", "slope")
    fit = CurveFit(form=form, params=dict(zip(names, params)), largest_n=largest, quality_bar=quality_bar)

    if replicates is None:
        replicates = interval_replicates(points, n_replicates, seed=seed)
    replicates = np.asarray(replicates, dtype=float)
    if replicates.ndim != 2 or replicates.shape[1] != len(points):
        raise ValueError(f"replicates must be (replicates x {len(points)} points), got {replicates.shape}")
    gains, ceilings, needed = [], [], []
    for row in replicates:
        refit = _fit(form, n, row, sigma, ceiling, start=params)
        if refit is None:
            continue
        curve = _curve(form, refit)
        gains.append(float(curve(2 * largest) - curve(largest)))
        ceilings.append(refit[0] if form == "power_law" else math.nan)
        needed.append(_n_for(form, refit, quality_bar) if quality_bar is not None else math.nan)
    fit.replicates = len(gains)
    fit.failed_replicates = len(replicates) - len(gains)
    curve = _curve(form, params)
    fit.doubling_gain = _interval(np.array(gains), float(curve(2 * largest) - curve(largest)))
    if form == "power_law":
        fit.ceiling = _interval(np.array(ceilings), params[0])
    if quality_bar is not None:
        fit.n_for_bar = _quantile_n(np.array(needed), _n_for(form, params, quality_bar))
    fit.steepness = _steepness(fit.doubling_gain, worthwhile_gain)
    return fit


def _quantile_n(values: np.ndarray, point: float) -> Interval:
    """Like _interval, but infinity ("never") is a value that counts, not one to drop."""
    if values.size == 0:
        return Interval(point, point, point)
    ordered = np.sort(values)  # inf sorts last; quantiles by rank so inf survives
    low = ordered[math.floor(0.025 * (len(ordered) - 1))]
    high = ordered[math.ceil(0.975 * (len(ordered) - 1))]
    return Interval(point, float(low), float(high))


def _steepness(gain: Interval, worthwhile: float) -> Steepness:
    if gain.value >= worthwhile and gain.low > 0:
        return "steep"
    if gain.high < worthwhile:
        return "flat"
    return "uncertain"


# -- in words ---------------------------------------------------------------------------------


def describe_curve(points: Sequence[CurvePoint], fit: CurveFit, *, metric: str, subject: str = "",
                   worthwhile_gain: float = 0.02) -> str:
    """What the curve says, in plain words: the points, the gain from doubling the data with its
    95% interval, whether the curve is still steep, and (with a quality bar) how many examples
    the bar would take."""
    points = sorted(points, key=lambda p: p.n)
    if not points:
        return f"{subject or 'The learning curve'}: no point was measured (the time budget fitted none)."
    first, last = points[0], points[-1]
    head = f"{subject}: " if subject else ""
    measured = (f"{head}{metric} {_num(first.value)} [{_num(first.low)}, {_num(first.high)}] with "
                f"{first.n:,} training examples")
    if len(points) > 1:
        measured += f" -> {_num(last.value)} [{_num(last.low)}, {_num(last.high)}] with {last.n:,}"
    measured += f" ({len(points)} point{'s' if len(points) > 1 else ''})."
    if fit.form == "none" or fit.doubling_gain is None:
        return measured + " Too few points to fit a curve: give the run more time to measure at least two sizes."
    gain = fit.doubling_gain
    if fit.form == "power_law":
        shape = f"Fitted curve a - b*n^-c with ceiling a = {_num(fit.params['a'])}"
        if fit.ceiling is not None:
            shape += f" [{_num(fit.ceiling.low)}, {_num(fit.ceiling.high)}]"
            if fit.ceiling.high - fit.ceiling.low > UNPINNED_CEILING:
                shape += " (the points do not pin the ceiling down yet)"
        shape += "."
    else:
        shape = (f"Only {len(points)} points, so a log-linear fit (the same gain per doubling; it overstates far "
                 "extrapolation).")
    doubling = (f"Doubling the data to {2 * fit.largest_n:,} examples would buy about {_signed(gain.value)} {metric} "
                f"(95% interval {_signed(gain.low)} to {_signed(gain.high)}).")
    verdict = {
        "steep": "The curve is still steep: collect more data first, it is likely to pay more than anything else.",
        "flat": (f"The curve has flattened: even the optimistic end of that interval is below "
                 f"{_signed(worthwhile_gain)} per doubling, so more data of the same kind will buy little; "
                 "look at a larger model, better labels or a different approach."),
        "uncertain": ("The points cannot tell yet whether more data pays: the interval spans both a useful gain "
                      f"({_signed(worthwhile_gain)} or more per doubling) and next to none."),
    }[fit.steepness]
    text = f"{measured} {shape} {doubling} {verdict}"
    if fit.quality_bar is not None and fit.n_for_bar is not None:
        text += " " + _bar_sentence(fit.quality_bar, fit.n_for_bar, metric)
    return text


def _bar_sentence(bar: float, needed: Interval, metric: str) -> str:
    if not math.isfinite(needed.value):
        return (f"The fitted curve never reaches the quality bar {_num(bar)} {metric}: more data of this kind is "
                "unlikely to get there.")
    upper = "never, within the fit" if not math.isfinite(needed.high) else f"{_count(needed.high)}"
    return (f"Reaching the quality bar {_num(bar)} {metric} would take about {_count(needed.value)} training "
            f"examples (95% interval {_count(needed.low)} to {upper}); forecasts far beyond the largest size measured "
            "are rough.")


def _num(value: float) -> str:
    return f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _count(value: float) -> str:
    if value >= 1e7:
        return f"more than {10_000_000:,}"
    return f"{max(1, round(value)):,}"


# -- scoring a point --------------------------------------------------------------------------


@dataclass
class TestScore:
    """A candidate's answers on the test examples, scored: the estimate with its interval, and
    the per-example statistics (for the joint bootstrap and paired comparisons)."""

    estimate: Estimate
    stats: np.ndarray
    outputs: list[str]
    inputs: list[str]
    predictions: list[Prediction] | None = None  # None when read back from the store
    seconds: float = 0.0  # wall time of answering

    @classmethod
    def from_outputs(cls, metric, outputs: Sequence[str], examples: Sequence[Example], *,
                     predictions: list[Prediction] | None = None, seconds: float = 0.0) -> TestScore:
        from tunewise.scoring import bootstrap_ci_from_stats

        stats = metric.stats(list(outputs), [ex.answers for ex in examples])
        return cls(bootstrap_ci_from_stats(metric, stats), stats, list(outputs), [ex.input for ex in examples],
                   predictions, seconds)

    def answers(self, examples: Sequence[tuple[int, Example]] | None = None) -> dict[str, Prediction]:
        """The answers by input text, for ``AnsweredCandidate``."""
        if self.predictions is None:
            return {}
        return dict(zip(self.inputs, self.predictions))


def score_candidate(candidate: Candidate, examples: Sequence[Example], metric) -> TestScore:
    """Answer ``examples`` in the candidate's batch size and score the answers."""
    size = max(1, candidate.batch_size())
    predictions: list[Prediction] = []
    began = time.perf_counter()
    for start in range(0, len(examples), size):
        batch = examples[start : start + size]
        got = candidate.predict(batch)
        if len(got) != len(batch):
            raise TunewiseError(f"the candidate returned {len(got)} answers for {len(batch)} examples",
                                where=candidate.model_id, fix="return one answer per example")
        predictions.extend(got)
    seconds = time.perf_counter() - began
    return TestScore.from_outputs(metric, [p.output for p in predictions], examples, predictions=predictions,
                                  seconds=seconds)


def bakeoff_examples(context: ArmContext) -> list[tuple[int, Example]]:
    """The test examples this bake-off scores every arm on: its seeded ``--limit`` sample (the
    run's recorded config says which), else the whole test split. Scoring the curve's points
    and the distillation teacher on exactly these makes them comparable with the table."""
    from tunewise.bakeoff.run import select_examples

    limit, seed = None, context.seed
    if context.store is not None and context.run_id is not None:
        config = context.store.get_run(context.run_id).config or {}
        limit, seed = config.get("limit"), config.get("seed", seed)
    return select_examples(context.dataset.test, limit, seed)


class AnsweredCandidate(Candidate):
    """A candidate whose answers on the test examples were already computed while preparing
    (the curve's last point, the distilled student): the bake-off gets those answers, with
    the latency and cost measured when they were computed, instead of asking twice."""

    def __init__(self, inner: Candidate, answered: dict[str, Prediction], *, config: dict[str, Any] | None = None,
                 prepare_usage: Usage | None = None):
        self.inner = inner
        self.answered = answered
        self.config = config if config is not None else inner.config
        self.model_id = inner.model_id
        self.prepare_usage = prepare_usage if prepare_usage is not None else inner.prepare_usage

    def batch_size(self) -> int:
        return self.inner.batch_size()

    def predict(self, batch: Sequence[Example]) -> list[Prediction]:
        missing = [ex for ex in batch if ex.input not in self.answered]
        fresh = iter(self.inner.predict(missing) if missing else [])
        return [self.answered[ex.input] if ex.input in self.answered else next(fresh) for ex in batch]


# -- the runs ---------------------------------------------------------------------------------


@dataclass
class TrainedPoint:
    """What training one size yields: a candidate to score, and what the training measured."""

    candidate: Candidate
    train_seconds: float
    work: float  # examples processed (steps x batch size): what training time scales with
    cut_short: bool = False  # the time budget stopped training before it converged or finished
    detail: dict[str, Any] = field(default_factory=dict)


TrainPoint = Callable[[list[Example], float | None], TrainedPoint]
"""Trains on a subset within a time limit (seconds, None: none) and returns the trained point."""

PlannedWork = Callable[[int], float]
"""The work (examples processed) that training on n examples is planned to take."""


@dataclass
class CurveRun:
    metric: str
    points: list[CurvePoint]  # every size trained, in order
    fit: CurveFit
    text: str
    not_run: list[dict[str, Any]]  # sizes left out, each with the reason
    scores: list[TestScore]  # per point, in order of size
    last: TrainedPoint | None  # the largest size trained: the curve arm's candidate

    def document(self, arm: str) -> dict[str, Any]:
        """The ``learning_curve`` artifact the verdict and report read: ``points`` are those the
        fit stands on; a point whose training the budget cut short is under ``cut_short``, so a
        reader that refits the points (against another quality bar) leaves it out as well."""
        fitted = [p.to_dict() for p in self.points if not p.detail.get("cut_short")]
        cut = [p.to_dict() for p in self.points if p.detail.get("cut_short")]
        return _json_safe({"arm": arm, "metric": self.metric, "points": fitted, "cut_short": cut,
                           "fit": self.fit.to_dict(), "text": self.text, "not_run": self.not_run})


def run_learning_curve(
    train_point: TrainPoint,
    train: Sequence[Example],
    test: Sequence[Example],
    metric,
    *,
    sizes: Sequence[int] = CURVE_SIZES,
    seed: int = 0,
    stratify: bool = False,
    budget_s: float | None = None,
    planned_work: PlannedWork = float,
    answer_seconds: float | None = None,
    quality_bar: float | None = None,
    worthwhile_gain: float = 0.02,
    subject: str = "",
    progress: Callable[[str], None] | None = None,
) -> CurveRun:
    """Train on each nested subset in turn, score each on ``test``, fit the curve.

    Before each size after the first, its time is forecast from the previous size's measured
    seconds per unit of work (``planned_work``) plus the previous scoring time; the run stops,
    saying so, when the forecast exceeds what is left of ``budget_s``. Training stops in time to
    answer ``test``: the first size keeps ``answer_seconds`` (a measured forecast; without one,
    what FIRST_TRAIN_SHARE leaves), later sizes the previous size's answering time. A point whose
    training the budget cut short is reported but left out of the fit: it measures the clock,
    not the data.
    """
    began = time.perf_counter()
    plan = curve_sizes(len(train), sizes)
    order = nested_order([ex.input for ex in train], seed, strata=[ex.output for ex in train] if stratify else None)
    points: list[CurvePoint] = []
    scores: list[TestScore] = []
    not_run: list[dict[str, Any]] = []
    last: TrainedPoint | None = None
    previous: tuple[float, float, float] | None = None  # (seconds per unit of work, scoring seconds, work)
    for position, n in enumerate(plan):
        left = None if budget_s is None else budget_s - (time.perf_counter() - began)
        if left is not None and previous is not None:
            per_work, scoring_s, _ = previous
            forecast = per_work * planned_work(n) + scoring_s
            if forecast > left:
                reason = (f"needs about {_duration(forecast)} (forecast from n={points[-1].n:,}) but "
                          f"{_duration(left)} of the time budget is left")
                not_run.append({"n": n, "reason": reason})
                not_run.extend({"n": m, "reason": "a smaller size already did not fit"} for m in plan[position + 1:])
                break
        if left is not None and left <= 0:
            not_run.extend({"n": m, "reason": "the time budget was spent"} for m in plan[position:])
            break
        if progress:
            progress(f"learning curve: training on {n:,} examples")
        # The subset in the training split's own order (the loop shuffles each epoch anyway): the
        # full-data point then trains exactly the pairs a plain fine-tune does, under the same key.
        subset = [train[i] for i in sorted(order[:n])]
        if left is None:
            train_budget = None
        elif previous is not None:
            train_budget = max(0.0, left - previous[1])
        elif answer_seconds is not None:
            train_budget = max(0.0, left - answer_seconds)
        else:
            train_budget = FIRST_TRAIN_SHARE * left
        trained = train_point(subset, train_budget)
        score = score_candidate(trained.candidate, test, metric)
        detail = {"train_s": trained.train_seconds, "score_s": score.seconds, "cut_short": trained.cut_short,
                  **trained.detail}
        point = CurvePoint(n, score.estimate.value, score.estimate.low, score.estimate.high, detail)
        points.append(point)
        scores.append(score)
        if progress:
            progress(f"learning curve: n={n:,}: {metric.name} {_num(point.value)} [{_num(point.low)}, "
                     f"{_num(point.high)}] (training {_duration(trained.train_seconds)}, answering "
                     f"{_duration(score.seconds)})")
        last = trained
        previous = (trained.train_seconds / max(trained.work, 1.0), score.seconds, trained.work)
    fitted = [(p, s) for p, s in zip(points, scores) if not p.detail.get("cut_short")]
    replicates = joint_replicates(metric, [s.stats for _, s in fitted], seed=seed) if len(fitted) >= 2 else None
    from tunewise.scoring import BUILTIN_METRICS

    ceiling = 1.0 if metric.name in BUILTIN_METRICS else None  # a custom hook's scale is its own
    fit = fit_learning_curve([p for p, _ in fitted], replicates=replicates, ceiling=ceiling, quality_bar=quality_bar,
                             worthwhile_gain=worthwhile_gain, seed=seed)
    cut = [p for p in points if p.detail.get("cut_short")]
    if points and not fitted:
        head = f"{subject}: " if subject else ""
        text = (f"{head}no training size finished within the time budget, so there is no curve; cut short, "
                + "; ".join(f"n={p.n:,} scored {metric.name} {_num(p.value)} [{_num(p.low)}, {_num(p.high)}]"
                            for p in cut) + ".")
    else:
        text = describe_curve([p for p, _ in fitted], fit, metric=metric.name, subject=subject,
                              worthwhile_gain=worthwhile_gain)
        if cut:
            text += (f" Left out of the fit: n={', '.join(f'{p.n:,}' for p in cut)}, whose training the time budget "
                     "cut short.")
    if not_run:
        sizes_left = ", ".join(f"{r['n']:,}" for r in not_run)
        text += f" Not run: n={sizes_left} (the time budget)."
    return CurveRun(metric.name, points, fit, text, not_run, scores, last)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _json_safe(value: Any) -> Any:
    """JSON for the store: numpy numbers as Python ones, NaN and infinity as null."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
