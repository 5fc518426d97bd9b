"""The total-cost-of-ownership model: components by hand, break-even by its definition, and
properties (monotone in volume, break-even equalises the totals) over random arms."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tunewise.errors import TunewiseError
from tunewise.verdict.tco import (
    HOURS_PER_MONTH,
    KIND_COSTS,
    ArmCostInput,
    CostModelError,
    Economy,
    KindCosts,
    TcoAssumptions,
    api_price_factor_to_match,
    arm_tco,
    break_even,
    build_tco,
    crossings,
    volume_curve,
)

ECONOMY = Economy(requests_per_month=60_000, horizon_months=12, retrain_every_months=3.0, machine_per_hour=0.10,
                  engineer_per_hour=100.0, labelling_per_example=0.50)
API = ArmCostInput("zero_shot@openai:gpt-4o-mini", "zero_shot", "api", cost_per_request_usd=0.0002, eval_examples=200)
LORA = ArmCostInput("lora@smollm2", "lora", "local", cost_per_request_usd=0.3 / 3600 * 0.10, training_usd=5.0,
                    training_examples=1_000, eval_examples=200, labels_needed=400)


def test_components_follow_the_written_down_rules():
    tco = arm_tco(LORA, ECONOMY)
    kind = KIND_COSTS["lora"]
    assert tco.one_time_usd == pytest.approx({"labelling": 400 * 0.5, "training": 5.0,
                                              "engineering": kind.setup_hours * 100})
    floor = HOURS_PER_MONTH * 0.10  # usage (60k x 0.3 s = 5 h) is below one always-on machine
    per_release = 5.0 + kind.release_hours * 100 + 200 * LORA.cost_per_request_usd
    assert tco.monthly_usd == pytest.approx({"inference": floor, "retraining": per_release / 3,
                                             "monitoring": kind.monitoring_hours_per_month * 100,
                                             "relabelling": 0.02 * 1_000 * 0.5})
    assert len(tco.cumulative_usd) == 13 and tco.cumulative_usd[0] == pytest.approx(tco.one_time_total)
    # Releases land in months 3, 6, 9 and 12: the cumulative curve steps up there.
    running = floor + kind.monitoring_hours_per_month * 100 + 10.0
    steps = [b - a for a, b in zip(tco.cumulative_usd, tco.cumulative_usd[1:])]
    assert steps == pytest.approx([running + (per_release if m % 3 == 0 else 0) for m in range(1, 13)])
    assert tco.total_usd == pytest.approx(tco.one_time_total + 12 * running + 4 * per_release)


def test_api_inference_is_tokens_at_prices_and_has_no_machine_floor():
    tco = arm_tco(API, ECONOMY)
    assert tco.monthly_usd["inference"] == pytest.approx(60_000 * 0.0002)
    assert tco.one_time_usd["training"] == 0 and tco.monthly_usd["relabelling"] == 0  # prompting needs no labels
    quiet = arm_tco(API, replace(ECONOMY, requests_per_month=0))
    assert quiet.monthly_usd["inference"] == 0


def test_a_busy_local_arm_pays_for_its_compute_above_the_floor():
    busy = replace(ECONOMY, requests_per_month=50_000_000)
    tco = arm_tco(LORA, busy)
    assert tco.monthly_usd["inference"] == pytest.approx(50_000_000 * LORA.cost_per_request_usd)
    assert tco.monthly_usd["inference"] > HOURS_PER_MONTH * 0.10


def test_no_releases_means_no_retraining_and_a_faster_cadence_costs_more():
    never = arm_tco(LORA, replace(ECONOMY, retrain_every_months=None))
    assert never.monthly_usd["retraining"] == 0
    monthly = arm_tco(LORA, replace(ECONOMY, retrain_every_months=1.0))
    quarterly = arm_tco(LORA, ECONOMY)
    assert never.total_usd < quarterly.total_usd < monthly.total_usd


def test_falling_api_prices_lower_api_inference_month_by_month_only():
    falling = TcoAssumptions(annual_api_price_drop=0.5)
    api = arm_tco(API, ECONOMY, falling)
    steps = [b - a for a, b in zip(api.cumulative_usd, api.cumulative_usd[1:])]
    assert steps[0] > steps[10]  # month 11 (no release in either) is cheaper than month 1
    assert api.total_usd < arm_tco(API, ECONOMY).total_usd
    assert arm_tco(LORA, ECONOMY, falling).total_usd == pytest.approx(arm_tco(LORA, ECONOMY).total_usd)


def test_engineering_hours_are_overridable_per_kind():
    cheap_lora = TcoAssumptions(kind_costs={**KIND_COSTS, "lora": KindCosts(1, 0, 0, True, False)})
    tco = arm_tco(LORA, ECONOMY, cheap_lora)
    assert tco.one_time_usd["engineering"] == 100 and tco.monthly_usd["monitoring"] == 0
    assert tco.monthly_usd["relabelling"] == 0


def test_bad_assumptions_and_measurements_are_errors_that_say_the_fix():
    with pytest.raises(CostModelError, match="annual_api_price_drop") as info:
        TcoAssumptions(annual_api_price_drop=1.5)
    assert isinstance(info.value, TunewiseError) and info.value.fix
    with pytest.raises(CostModelError, match="always_on_machines"):
        TcoAssumptions(always_on_machines=-1)
    with pytest.raises(CostModelError, match="cost_per_request_usd is nan"):
        ArmCostInput("x", "zero_shot", "api", cost_per_request_usd=math.nan)


def test_break_even_by_hand_for_two_linear_curves():
    # Both pay per token: totals are fixed + slope x V, equal at V = (fixed_b - fixed_a) / (slope_a - slope_b).
    big = ArmCostInput("big", "zero_shot", "api", cost_per_request_usd=0.001)
    small = ArmCostInput("small", "lora", "api", cost_per_request_usd=0.0001, training_usd=100.0)
    a, b = volume_curve(big, ECONOMY), volume_curve(small, ECONOMY)
    expected = (b.fixed - a.fixed) / (a.slope - b.slope)
    result = break_even(big, small, ECONOMY)
    assert result.requests_per_month == pytest.approx(expected)
    assert arm_tco(big, replace(ECONOMY, requests_per_month=expected)).total_usd == pytest.approx(
        arm_tco(small, replace(ECONOMY, requests_per_month=expected)).total_usd)
    assert result.text.startswith("Above ") and "small is cheaper than big" in result.text


def test_curves_that_never_cross_give_none_and_say_so():
    dear = ArmCostInput("dear", "lora", "api", cost_per_request_usd=0.01, training_usd=50.0)
    cheap = ArmCostInput("cheap", "zero_shot", "api", cost_per_request_usd=0.001)
    result = break_even(dear, cheap, ECONOMY)
    assert result.requests_per_month is None and result.all_crossings == []
    assert "cheap is cheaper than dear at every volume" in result.text
    same = break_even(cheap, replace(cheap, name="twin"), ECONOMY)
    assert same.requests_per_month is None and "cost the same" in same.text


def test_the_machine_floor_moves_the_break_even_to_where_the_floor_is_paid_off():
    # API at $0.0002 a request against a local model whose compute is nearly free but needs a
    # $73-a-month machine: the local arm wins once the API bill exceeds the machine (plus the
    # difference in fixed costs).
    local = ArmCostInput("local", "zero_shot", "local", cost_per_request_usd=1e-7)
    result = break_even(API, local, ECONOMY)
    a, b = volume_curve(API, ECONOMY), volume_curve(local, ECONOMY)
    assert b.kink is not None and result.requests_per_month is not None
    assert result.requests_per_month < b.kink  # crosses while the local arm still pays its floor
    volume = result.requests_per_month
    assert a.total(volume) == pytest.approx(b.total(volume))
    assert "local is cheaper than zero_shot@openai:gpt-4o-mini" in result.text


def test_build_tco_pairs_serious_arms_and_tabulates_sensitivity():
    result = build_tco([API, LORA], ECONOMY, serious=[LORA.name, API.name, "not-an-arm"])
    assert [(b.a, b.b) for b in result.break_even] == [(LORA.name, API.name)]
    data = result.to_dict()
    assert data["arms"][API.name]["total_usd"] == pytest.approx(arm_tco(API, ECONOMY).total_usd)
    volumes = [row["requests_per_month"] for row in data["sensitivity"]["volume"]]
    assert volumes == sorted(volumes) and 60_000 in volumes
    assert [row["retrain_every_months"] for row in data["sensitivity"]["cadence"]] == [1, 2, 3, 6, 12, None]
    drops = data["sensitivity"]["api_price_drop"]
    assert drops[0]["totals"][API.name] > drops[-1]["totals"][API.name]
    assert drops[0]["totals"][LORA.name] == drops[-1]["totals"][LORA.name]
    assert data["assumptions"]["kind_costs"]["lora"]["setup_hours"] == KIND_COSTS["lora"].setup_hours


def test_an_arm_kind_without_defaults_is_costed_and_flagged():
    new_kind = ArmCostInput("moe_router@x", "moe_router", "api", cost_per_request_usd=0.001)
    result = build_tco([new_kind], ECONOMY)
    assert result.arms[new_kind.name].one_time_usd["engineering"] > 0
    assert any("moe_router" in note for note in result.notes)


def test_api_price_factor_that_matches_a_target_total():
    target = arm_tco(API, ECONOMY).total_usd - 0.4 * 12 * 60_000 * API.cost_per_request_usd
    factor = api_price_factor_to_match(API, target, ECONOMY)
    assert factor == pytest.approx(0.6)
    assert api_price_factor_to_match(LORA, target, ECONOMY) is None  # not priced per token
    assert api_price_factor_to_match(API, arm_tco(API, ECONOMY).total_usd * 2, ECONOMY) is None


# -- properties over random arms -----------------------------------------------------------------

KINDS = st.sampled_from([*KIND_COSTS, "brand_new_kind"])
money = st.floats(0, 50.0, allow_nan=False)
per_request = st.floats(0, 0.05, allow_nan=False)


@st.composite
def arms(draw, name: str):
    return ArmCostInput(name, draw(KINDS), draw(st.sampled_from(["api", "local", "mixed"])), draw(per_request),
                        training_usd=draw(money), labels_needed=draw(st.integers(0, 5_000)),
                        training_examples=draw(st.integers(0, 20_000)), eval_examples=draw(st.integers(0, 500)))


economies = st.builds(
    Economy,
    requests_per_month=st.floats(0, 1e8, allow_nan=False),
    horizon_months=st.integers(1, 36),
    retrain_every_months=st.one_of(st.none(), st.floats(0.5, 24)),
    machine_per_hour=st.floats(0, 5),
    engineer_per_hour=st.floats(0, 300),
    labelling_per_example=st.floats(0, 5),
)
assumption_sets = st.builds(TcoAssumptions, always_on_machines=st.floats(0, 4),
                            annual_api_price_drop=st.floats(0, 0.9), relabel_share_per_month=st.floats(0, 0.2))


@settings(max_examples=150, deadline=None)
@given(arms("a"), arms("b"), economies, assumption_sets)
def test_break_even_volume_really_equalises_the_two_totals(a, b, economy, assumptions):
    result = break_even(a, b, economy, assumptions)
    for volume in result.all_crossings:
        at = replace(economy, requests_per_month=volume)
        total_a = arm_tco(a, at, assumptions).total_usd
        total_b = arm_tco(b, at, assumptions).total_usd
        assert total_a == pytest.approx(total_b, rel=1e-6, abs=1e-6)
    assert result.requests_per_month == (result.all_crossings[0] if result.all_crossings else None)


@settings(max_examples=150, deadline=None)
@given(arms("a"), arms("b"), economies, assumption_sets)
def test_between_crossings_the_cheaper_arm_never_changes(a, b, economy, assumptions):
    edges = [0.0, *break_even(a, b, economy, assumptions).all_crossings, 1e12]
    for low, high in itertools.pairwise(edges):
        samples = [low + (high - low) * f for f in (0.01, 0.5, 0.99)]
        signs = set()
        for volume in samples:
            at = replace(economy, requests_per_month=volume)
            gap = arm_tco(a, at, assumptions).total_usd - arm_tco(b, at, assumptions).total_usd
            if abs(gap) > 1e-6 * max(1.0, abs(arm_tco(a, at, assumptions).total_usd)):
                signs.add(gap > 0)
        assert len(signs) <= 1


@settings(max_examples=150, deadline=None)
@given(arms("a"), economies, assumption_sets, st.floats(0, 1e8), st.floats(0, 1e8))
def test_costs_never_fall_with_more_volume_or_more_months(arm, economy, assumptions, v1, v2):
    assume(v1 <= v2)
    low = arm_tco(arm, replace(economy, requests_per_month=v1), assumptions)
    high = arm_tco(arm, replace(economy, requests_per_month=v2), assumptions)
    assert low.total_usd <= high.total_usd + 1e-9 * max(1.0, high.total_usd)
    assert all(x <= y + 1e-9 for x, y in zip(low.cumulative_usd, low.cumulative_usd[1:]))
    # The closed form agrees with the month-by-month sum.
    assert volume_curve(arm, economy, assumptions).total(economy.requests_per_month) == pytest.approx(
        arm_tco(arm, economy, assumptions).total_usd, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1e4), st.floats(0, 1), st.floats(0, 1e5), st.floats(0, 1e4), st.floats(0, 1), st.floats(0, 1e5))
def test_crossings_are_where_two_volume_curves_meet(fa, sa, la, fb, sb, lb):
    from tunewise.verdict.tco import VolumeCurve

    a, b = VolumeCurve(fa, sa, la), VolumeCurve(fb, sb, lb)
    for volume in crossings(a, b):
        assert volume > 0
        assert a.total(volume) == pytest.approx(b.total(volume), rel=1e-9, abs=1e-6)
