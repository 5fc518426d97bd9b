"""Total cost of ownership: what each arm costs over the card's horizon at its traffic.

Every dollar comes from a measurement or a written-down assumption, and the output says which:

one-time    labelling   examples to label before launch (the learning curve's suggestion for an
                        arm that needs more data), x ``costs.labelling_per_example``
            training    the bake-off's measured preparation cost (training compute; a distilled
                        arm's teacher calls)
            engineering setup hours for the arm's kind (``KIND_COSTS``) x ``costs.engineer_per_hour``
monthly     inference   API arms: measured tokens per request x the dated price table (or the card's
                        override); local arms: measured compute seconds per request x
                        ``costs.machine_per_hour``, but never less than the always-on machines
                        (``always_on_machines`` x 730 h): a served model needs a machine up all
                        month whether or not requests come
            retraining  at every base-model release (every ``costs.retrain_every_months``): training
                        compute again for arms that train, the kind's release hours (re-train or
                        re-validate the prompt) and re-evaluating on the test examples; shown
                        amortised per month, counted in the cumulative curve in the release month
            monitoring  the kind's monitoring hours per month x the engineer rate
            relabelling ``relabel_share_per_month`` of the training set re-labelled against drift,
                        for arms that learn from labels

Why the floor on local inference: without it a local model looks free at low volume, and the
break-even between "pay per token" and "run our own" - the number finance asks for - would be
wrong by exactly the cost of the idle machine.

Every arm's total is ``fixed + max(slope x volume, floor)`` in the monthly volume, so the
break-even volume between two arms has a closed form on each linear piece (``break_even``);
when the curves never cross, it is None. Falling API prices (``annual_api_price_drop``) scale
API inference month by month; sensitivity tables recompute the totals for other volumes,
release cadences and price drops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from tunewise.errors import TunewiseError
from tunewise.verdict import words

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12

Basis = Literal["api", "local", "mixed"]


class CostModelError(TunewiseError):
    """A cost assumption that cannot be used (negative, unknown kind, ...)."""


@dataclass(frozen=True)
class KindCosts:
    """The engineering effort behind one arm kind, in hours, and what recurs for it.

    Defaults are estimates for a team that has shipped an LLM feature before: write down your
    own with ``TcoAssumptions(kind_costs={...})`` when you know better.
    """

    setup_hours: float  # build, evaluate and ship it once
    release_hours: float  # at each base-model release: re-train or re-validate, re-evaluate, re-deploy
    monitoring_hours_per_month: float  # dashboards, spot checks, incident triage
    retrains: bool  # it trains on data, so every release spends its training compute again
    learns_from_labels: bool  # its quality rests on labelled examples, which drift and need re-labelling


#: Per arm kind. Prompting is cheap to set up and to keep; fine-tuning adds a training pipeline,
#: its evaluation gate and data upkeep; RAG adds an index to build and keep fresh.
KIND_COSTS: dict[str, KindCosts] = {
    "embed_classifier": KindCosts(8, 2, 2, retrains=True, learns_from_labels=True),
    "zero_shot": KindCosts(4, 2, 2, retrains=False, learns_from_labels=False),
    "few_shot_random": KindCosts(6, 2, 2, retrains=False, learns_from_labels=False),
    "few_shot_nearest": KindCosts(8, 3, 2, retrains=False, learns_from_labels=True),
    "rag": KindCosts(24, 4, 4, retrains=False, learns_from_labels=False),
    "lora": KindCosts(40, 8, 4, retrains=True, learns_from_labels=True),
    "lora_curve": KindCosts(40, 8, 4, retrains=True, learns_from_labels=True),  # ships its all-data adapter
    "rag_lora": KindCosts(56, 10, 6, retrains=True, learns_from_labels=True),
    "distill": KindCosts(40, 8, 4, retrains=True, learns_from_labels=False),
    "cascade": KindCosts(32, 6, 6, retrains=True, learns_from_labels=True),
}
#: For an arm kind the table does not know (a new arm): middle-of-the-road numbers, flagged.
UNKNOWN_KIND_COSTS = KindCosts(16, 4, 4, retrains=True, learns_from_labels=True)


@dataclass(frozen=True)
class TcoAssumptions:
    """The assumptions that are not in the task card, each overridable."""

    kind_costs: Mapping[str, KindCosts] = field(default_factory=lambda: dict(KIND_COSTS))
    relabel_share_per_month: float = 0.02  # of the training set, for arms that learn from labels
    always_on_machines: float = 1.0  # machines a local arm keeps up all month (0: pay per compute second)
    annual_api_price_drop: float = 0.0  # API prices fall by this share a year (0: today's prices throughout)

    def __post_init__(self) -> None:
        for name in ("relabel_share_per_month", "always_on_machines"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise CostModelError(f"{name} is {value}", where="TCO assumptions", fix="give 0 or more")
        if not 0 <= self.annual_api_price_drop < 1:
            raise CostModelError(f"annual_api_price_drop is {self.annual_api_price_drop}", where="TCO assumptions",
                                 fix="give a share in [0, 1), e.g. 0.3 for prices falling 30% a year")

    def for_kind(self, kind: str) -> KindCosts:
        return self.kind_costs.get(kind, UNKNOWN_KIND_COSTS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind_costs": {kind: asdict(costs) for kind, costs in self.kind_costs.items()},
            "unknown_kind_costs": asdict(UNKNOWN_KIND_COSTS),
            "relabel_share_per_month": self.relabel_share_per_month,
            "always_on_machines": self.always_on_machines,
            "hours_per_month": HOURS_PER_MONTH,
            "annual_api_price_drop": self.annual_api_price_drop,
        }


@dataclass(frozen=True)
class Economy:
    """The task's traffic and prices (from the card), the axes the sensitivity tables vary."""

    requests_per_month: float
    horizon_months: int
    retrain_every_months: float | None  # None: the base model never moves within the horizon
    machine_per_hour: float
    engineer_per_hour: float
    labelling_per_example: float

    @classmethod
    def from_card(cls, card: Any) -> Economy:
        return cls(
            requests_per_month=float(card.traffic.requests_per_month),
            horizon_months=int(card.traffic.horizon_months),
            retrain_every_months=float(card.costs.retrain_every_months),
            machine_per_hour=float(card.costs.machine_per_hour),
            engineer_per_hour=float(card.costs.engineer_per_hour),
            labelling_per_example=float(card.costs.labelling_per_example),
        )

    def releases_by(self, month: int) -> int:
        """Base-model releases in months 1..month (a release at month k x cadence)."""
        if self.retrain_every_months is None:
            return 0
        return math.floor(month / self.retrain_every_months + 1e-9)


@dataclass(frozen=True)
class ArmCostInput:
    """What the bake-off measured about one arm, as the cost model needs it."""

    name: str
    kind: str
    basis: Basis  # api: pays per token; local: pays for machine time; mixed: both (a cascade)
    cost_per_request_usd: float  # at today's prices: tokens x price, or compute seconds x machine price
    training_usd: float = 0.0  # measured one-time preparation cost, spent again at each release if it retrains
    labels_needed: int = 0  # examples to label before launch
    training_examples: int = 0  # size of the labelled training set (the base of re-labelling)
    eval_examples: int = 0  # test examples re-answered at each release
    basis_text: str = ""  # where the per-request cost comes from, in words

    def __post_init__(self) -> None:
        for name in ("cost_per_request_usd", "training_usd"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise CostModelError(f"{self.name}: {name} is {value}", where="TCO",
                                     fix="measured costs are finite and not negative; re-run the bake-off")

    @property
    def has_floor(self) -> bool:
        """Runs on our own machine, which is up whether or not requests come."""
        return self.basis in ("local", "mixed")

    @property
    def api_priced(self) -> bool:
        return self.basis == "api"


@dataclass
class ArmTco:
    """One arm's cost of ownership over the horizon."""

    name: str
    one_time_usd: dict[str, float]
    monthly_usd: dict[str, float]
    cumulative_usd: list[float]  # month 0 (launch, one-time costs) .. horizon
    basis: Basis
    basis_text: str
    release_usd: float  # what each base-model release costs

    @property
    def total_usd(self) -> float:
        return self.cumulative_usd[-1]

    @property
    def one_time_total(self) -> float:
        return sum(self.one_time_usd.values())

    @property
    def monthly_total(self) -> float:
        return sum(self.monthly_usd.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "one_time_usd": {k: round(v, 6) for k, v in self.one_time_usd.items()},
            "monthly_usd": {k: round(v, 6) for k, v in self.monthly_usd.items()},
            "cumulative_usd": [round(v, 6) for v in self.cumulative_usd],
            "total_usd": round(self.total_usd, 6),
            "basis": self.basis,
            "basis_text": self.basis_text,
            "per_release_usd": round(self.release_usd, 6),
        }


def _api_factor(month: int, annual_drop: float) -> float:
    """API price in month ``month`` (1-based) relative to today's, with prices falling steadily."""
    return (1.0 - annual_drop) ** ((month - 1) / 12.0)


def _inference_usd(arm: ArmCostInput, economy: Economy, assumptions: TcoAssumptions, month: int) -> float:
    usage = economy.requests_per_month * arm.cost_per_request_usd
    if arm.api_priced:
        return usage * _api_factor(month, assumptions.annual_api_price_drop)
    return max(usage, _floor_per_month(arm, economy, assumptions))


def _floor_per_month(arm: ArmCostInput, economy: Economy, assumptions: TcoAssumptions) -> float:
    if not arm.has_floor:
        return 0.0
    return assumptions.always_on_machines * HOURS_PER_MONTH * economy.machine_per_hour


def release_cost(arm: ArmCostInput, economy: Economy, assumptions: TcoAssumptions) -> float:
    """What one base-model release costs this arm: re-training compute (if it trains), the
    kind's release hours, and re-answering the test examples to check the new version."""
    kind = assumptions.for_kind(arm.kind)
    training = arm.training_usd if kind.retrains else 0.0
    return training + kind.release_hours * economy.engineer_per_hour + arm.eval_examples * arm.cost_per_request_usd


def arm_tco(arm: ArmCostInput, economy: Economy, assumptions: TcoAssumptions | None = None) -> ArmTco:
    """One arm's one-time, monthly and cumulative costs over ``economy.horizon_months``."""
    assumptions = assumptions or TcoAssumptions()
    kind = assumptions.for_kind(arm.kind)
    rate = economy.engineer_per_hour
    one_time = {
        "labelling": arm.labels_needed * economy.labelling_per_example,
        "training": arm.training_usd,
        "engineering": kind.setup_hours * rate,
    }
    per_release = release_cost(arm, economy, assumptions)
    monitoring = kind.monitoring_hours_per_month * rate
    relabelling = (assumptions.relabel_share_per_month * arm.training_examples * economy.labelling_per_example
                   if kind.learns_from_labels else 0.0)
    cadence = economy.retrain_every_months
    monthly = {
        "inference": _inference_usd(arm, economy, assumptions, 1),
        "retraining": per_release / cadence if cadence else 0.0,
        "monitoring": monitoring,
        "relabelling": relabelling,
    }
    cumulative = [sum(one_time.values())]
    for month in range(1, economy.horizon_months + 1):
        running = _inference_usd(arm, economy, assumptions, month) + monitoring + relabelling
        released = economy.releases_by(month) - economy.releases_by(month - 1)
        cumulative.append(cumulative[-1] + running + released * per_release)
    return ArmTco(arm.name, one_time, monthly, cumulative, arm.basis, arm.basis_text, per_release)


# -- break-even ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeCurve:
    """An arm's horizon total as a function of monthly volume V: fixed + max(slope x V, floor)."""

    fixed: float
    slope: float
    floor: float

    def total(self, requests_per_month: float) -> float:
        return self.fixed + max(self.slope * requests_per_month, self.floor)

    @property
    def kink(self) -> float | None:
        """The volume where usage starts to exceed the always-on floor."""
        if self.floor <= 0 or self.slope <= 0:
            return None
        return self.floor / self.slope


def volume_curve(arm: ArmCostInput, economy: Economy, assumptions: TcoAssumptions | None = None) -> VolumeCurve:
    """The horizon total as a closed-form function of volume (the rest of ``economy`` fixed).

    Inference is the only part that moves with volume: its horizon sum is ``slope x V`` (API
    prices possibly falling month by month, which only changes the slope), or for a machine we
    run ``max(slope x V, floor)`` per month, hence over the horizon too (the same every month)."""
    assumptions = assumptions or TcoAssumptions()
    at_zero = replace(economy, requests_per_month=0.0)
    # Everything but inference, as arm_tco counts it, at zero volume and no floor:
    without_inference = arm_tco(arm, at_zero, replace(assumptions, always_on_machines=0.0))
    fixed = without_inference.total_usd
    months = economy.horizon_months
    if arm.api_priced:
        slope = arm.cost_per_request_usd * sum(_api_factor(m, assumptions.annual_api_price_drop)
                                               for m in range(1, months + 1))
    else:
        slope = arm.cost_per_request_usd * months
    floor = _floor_per_month(arm, economy, assumptions) * months
    return VolumeCurve(fixed=fixed, slope=slope, floor=floor)


def crossings(a: VolumeCurve, b: VolumeCurve) -> list[float]:
    """Monthly volumes V > 0 where a.total(V) == b.total(V), in increasing order.

    Both curves are linear between their kinks, so on each piece the crossing is one division;
    pieces where the curves run parallel (or coincide) have no single crossing and are left out."""
    edges = sorted({0.0, *(k for k in (a.kink, b.kink) if k is not None and math.isfinite(k))})
    found: list[float] = []
    for start, end in zip(edges, [*edges[1:], math.inf]):
        probe = start + 1.0 if math.isinf(end) else (start + end) / 2
        slope_a, base_a = _piece(a, probe)
        slope_b, base_b = _piece(b, probe)
        if slope_a == slope_b:
            continue
        volume = (base_b - base_a) / (slope_a - slope_b)
        if start < volume <= end and math.isfinite(volume):  # a tiny slope difference: they never meet
            found.append(volume)
    return found


def _piece(curve: VolumeCurve, probe: float) -> tuple[float, float]:
    """(slope, intercept) of the curve's linear piece around volume ``probe``."""
    if curve.slope * probe >= curve.floor:
        return curve.slope, curve.fixed
    return 0.0, curve.fixed + curve.floor


def break_even(
    arm_a: ArmCostInput, arm_b: ArmCostInput, economy: Economy, assumptions: TcoAssumptions | None = None
) -> BreakEven:
    """Where the cost curves of two arms cross, in requests per month (None: they never do)."""
    curve_a = volume_curve(arm_a, economy, assumptions)
    curve_b = volume_curve(arm_b, economy, assumptions)
    points = crossings(curve_a, curve_b)
    return BreakEven(arm_a.name, arm_b.name, points[0] if points else None, points,
                     _break_even_text(arm_a.name, arm_b.name, curve_a, curve_b, points, economy))


@dataclass(frozen=True)
class BreakEven:
    a: str
    b: str
    requests_per_month: float | None  # the first crossing; None when the curves never cross
    all_crossings: list[float]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "requests_per_month": self.requests_per_month,
                "crossings": list(self.all_crossings), "text": self.text}


def _cheaper(curve_a: VolumeCurve, curve_b: VolumeCurve, volume: float, a: str, b: str) -> tuple[str, str]:
    return (a, b) if curve_a.total(volume) <= curve_b.total(volume) else (b, a)


def _break_even_text(a: str, b: str, curve_a: VolumeCurve, curve_b: VolumeCurve, points: Sequence[float],
                     economy: Economy) -> str:
    horizon = f"over {words.months(economy.horizon_months)}"
    if not points:
        cheap, dear = _cheaper(curve_a, curve_b, max(economy.requests_per_month, 1.0), a, b)
        if math.isclose(curve_a.total(1e6), curve_b.total(1e6)) and math.isclose(curve_a.total(0), curve_b.total(0)):
            return f"{a} and {b} cost the same at every volume {horizon}."
        return f"{cheap} is cheaper than {dear} at every volume {horizon}: the cost curves never cross."
    first = points[0]
    above, below = _cheaper(curve_a, curve_b, first * 1.5 + 1, a, b)
    text = (f"Above {words.volume(first)} requests a month, {above} is cheaper than {below} {horizon}; "
            f"below it, {below} is.")
    if len(points) > 1:
        later = ", ".join(words.volume(p) for p in points[1:])
        text += f" The curves cross again at {later} requests a month."
    return text


# -- the whole table -----------------------------------------------------------------------------

VOLUME_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CADENCES: tuple[float | None, ...] = (1.0, 2.0, 3.0, 6.0, 12.0, None)
ANNUAL_PRICE_DROPS = (0.0, 0.25, 0.5, 0.75)


@dataclass
class TcoResult:
    economy: Economy
    assumptions: TcoAssumptions
    arms: dict[str, ArmTco]
    break_even: list[BreakEven]
    sensitivity: dict[str, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)

    def cheapest(self, names: Iterable[str] | None = None) -> str | None:
        pool = [n for n in (names if names is not None else self.arms) if n in self.arms]
        return min(pool, key=lambda n: (self.arms[n].total_usd, n)) if pool else None

    def to_dict(self) -> dict[str, Any]:
        economy = self.economy
        return {
            "horizon_months": economy.horizon_months,
            "requests_per_month": round(economy.requests_per_month),
            "retrain_every_months": economy.retrain_every_months,
            "assumptions": {
                "machine_per_hour_usd": economy.machine_per_hour,
                "engineer_per_hour_usd": economy.engineer_per_hour,
                "labelling_per_example_usd": economy.labelling_per_example,
                **self.assumptions.to_dict(),
                "notes": list(self.notes),
            },
            "arms": {name: tco.to_dict() for name, tco in self.arms.items()},
            "break_even": [b.to_dict() for b in self.break_even],
            "sensitivity": self.sensitivity,
        }


def build_tco(
    arms: Sequence[ArmCostInput],
    economy: Economy,
    assumptions: TcoAssumptions | None = None,
    *,
    serious: Sequence[str] = (),
) -> TcoResult:
    """Every arm's TCO, the break-even volume between each pair of ``serious`` arms, and the
    sensitivity of every total to volume, release cadence and falling API prices."""
    assumptions = assumptions or TcoAssumptions()
    by_name = {arm.name: arm for arm in arms}
    tcos = {arm.name: arm_tco(arm, economy, assumptions) for arm in arms}
    chosen = [name for name in dict.fromkeys(serious) if name in by_name]
    pairs = [(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1:]]
    evens = [break_even(by_name[a], by_name[b], economy, assumptions) for a, b in pairs]
    notes = [f"{arm.name}: {arm.basis_text}" for arm in arms if arm.basis_text]
    unknown = sorted({arm.kind for arm in arms if arm.kind not in assumptions.kind_costs})
    if unknown:
        notes.append(f"no engineering-hour defaults for arm kind {', '.join(unknown)}: assumed "
                     f"{UNKNOWN_KIND_COSTS.setup_hours:g} h setup, {UNKNOWN_KIND_COSTS.release_hours:g} h per release, "
                     f"{UNKNOWN_KIND_COSTS.monitoring_hours_per_month:g} h a month")
    return TcoResult(economy, assumptions, tcos, evens, sensitivity(arms, economy, assumptions), notes)


def _totals(arms: Sequence[ArmCostInput], economy: Economy, assumptions: TcoAssumptions) -> dict[str, float]:
    return {arm.name: round(arm_tco(arm, economy, assumptions).total_usd, 6) for arm in arms}


def _row(arms: Sequence[ArmCostInput], economy: Economy, assumptions: TcoAssumptions, **key: Any) -> dict[str, Any]:
    totals = _totals(arms, economy, assumptions)
    cheapest = min(totals, key=lambda n: (totals[n], n)) if totals else None
    return {**key, "totals": totals, "cheapest": cheapest}


def sensitivity(arms: Sequence[ArmCostInput], economy: Economy, assumptions: TcoAssumptions
                ) -> dict[str, list[dict[str, Any]]]:
    """Horizon totals per arm when one thing changes: volume, release cadence, API prices."""
    base_volume = economy.requests_per_month or 10_000.0  # a card with no traffic still gets a scale
    volumes = sorted({round(base_volume * f) for f in VOLUME_FACTORS} | {round(economy.requests_per_month)})
    return {
        "volume": [_row(arms, replace(economy, requests_per_month=float(v)), assumptions, requests_per_month=v)
                   for v in volumes],
        "cadence": [_row(arms, replace(economy, retrain_every_months=c), assumptions, retrain_every_months=c)
                    for c in CADENCES],
        "api_price_drop": [_row(arms, economy, replace(assumptions, annual_api_price_drop=d), annual_drop=d)
                           for d in ANNUAL_PRICE_DROPS],
    }


def api_price_factor_to_match(api_arm: ArmCostInput, target_total: float, economy: Economy,
                              assumptions: TcoAssumptions | None = None) -> float | None:
    """The factor on today's API prices at which ``api_arm``'s horizon total equals
    ``target_total`` (0.6: prices 40% lower); None if no factor in (0, 1) does it."""
    if not api_arm.api_priced:
        return None
    curve = volume_curve(api_arm, economy, assumptions)
    usage = curve.slope * economy.requests_per_month
    if usage <= 0:
        return None
    factor = (target_total - curve.fixed) / usage
    return factor if 0 < factor < 1 else None
