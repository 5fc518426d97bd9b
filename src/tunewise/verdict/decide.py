"""The recommendation: which approach, why (with numbers), what would flip it, and where the
evidence cannot tell arms apart.

The rules, in order (each a sentence a team can argue with):

1. Only arms that finished count. The *best prompting arm* (zero- or few-shot, highest score)
   is the baseline: every other arm is compared with it on the same test examples (paired
   bootstrap, McNemar for right/wrong metrics), Holm-corrected across the arms.
2. An arm is *acceptable* when it meets the card's quality bar (its score, not its interval)
   and its p95 latency is within the card's limit; a missing goal excludes nobody.
3. With a quality bar, "good enough" is the card's word: the recommendation is the acceptable
   arm with the lowest total cost of ownership over the horizon. Without one, the candidates
   are the acceptable arms the tests cannot separate from the best of them (Holm-corrected
   against it), and the cheapest of those wins: quality first, then money.
4. The winner's kind names the choice: prompt, rag, fine_tune (LoRA), rag_fine_tune, distill,
   cascade, or no_llm (the embedding classifier: by rule 3 it is then as good as the LLM arms
   that matter - meets the bar, or is not significantly worse than the best - and cheaper).
5. When no arm is acceptable: collect_more_data if a learning curve is still steep (more
   labelled data is the best buy), else undecided, saying what falls short and by how much.

Ties are stated, not hidden: any arm the paired tests cannot separate from the winner is
named with the difference, its interval and p-value. Flips are the conditions under which the
answer changes: the break-even volume against each other acceptable arm, the bar at which a
cheaper arm would suffice (or the winner would not), a latency limit that would admit a cheaper
arm, the API price drop that would make an API arm as cheap, and a release cadence that would
reorder the costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tunewise.scoring.stats import Comparison, holm
from tunewise.task.readiness import PromptingGap
from tunewise.verdict import words
from tunewise.verdict.curves import CurveSummary
from tunewise.verdict.evidence import ArmEvidence, RunEvidence, paired
from tunewise.verdict.tco import (
    KIND_COSTS,
    ArmCostInput,
    Economy,
    TcoAssumptions,
    TcoResult,
    api_price_factor_to_match,
    arm_tco,
    break_even,
    build_tco,
)

ALPHA = 0.05  # family-wise error rate of the paired tests
SMALL_SAMPLE = 100  # below this many test examples, intervals are too wide to decide much
MAX_SERIOUS = 5  # arms whose pairwise break-even volumes are worked out
BAR_DROP_SHOWN = 0.15  # a lower bar is named as a flip when within this share of the card's bar

CHOICE_BY_FAMILY = {"prompt": "prompt", "rag": "rag", "fine_tune": "fine_tune", "rag_fine_tune": "rag_fine_tune",
                    "distill": "distill", "cascade": "cascade", "no_llm": "no_llm"}
HEADLINE_VERB = {
    "prompt": "Prompt", "rag": "Use retrieval (RAG)", "fine_tune": "Fine-tune", "rag_fine_tune": "Fine-tune with RAG",
    "distill": "Distill", "cascade": "Cascade", "no_llm": "No LLM needed",
}


@dataclass
class Recommendation:
    choice: str
    arm: str | None
    headline: str
    reasons: list[str] = field(default_factory=list)
    flips: list[str] = field(default_factory=list)
    ties: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "arm": self.arm, "headline": self.headline, "reasons": list(self.reasons),
                "flips": list(self.flips), "ties": list(self.ties), "caveats": list(self.caveats)}


@dataclass
class ArmJudgement:
    """What the decision concluded about one arm."""

    meets_bar: bool | None
    meets_latency: bool | None
    vs_best_prompt: Comparison | None = None  # with p_value_adjusted (Holm)
    pareto: bool = False

    @property
    def acceptable(self) -> bool:
        return self.meets_bar is not False and self.meets_latency is not False

    def vs_best_prompt_dict(self) -> dict[str, Any] | None:
        c = self.vs_best_prompt
        if c is None:
            return None
        p_holm = c.p_value_adjusted if c.p_value_adjusted is not None else c.p_value
        return {"baseline": c.arm_b, "delta": c.difference, "low": c.ci_low, "high": c.ci_high,
                "p_value": c.p_value, "p_holm": p_holm, "significant": bool(p_holm < ALPHA), "test": c.test}


@dataclass
class Decision:
    recommendation: Recommendation
    judgements: dict[str, ArmJudgement]
    baseline: str | None  # the best prompting arm
    tco: TcoResult
    gap: PromptingGap | None


# -- helpers ----------------------------------------------------------------------------------------


def _best(arms: Sequence[ArmEvidence], totals: dict[str, float]) -> ArmEvidence | None:
    """Highest score; among equal scores, the cheaper."""
    return max(arms, key=lambda a: (a.value, -totals.get(a.name, math.inf), a.name), default=None)


def _significant(c: Comparison | None) -> bool:
    if c is None:
        return False
    p = c.p_value_adjusted if c.p_value_adjusted is not None else c.p_value
    return p < ALPHA


def _p(c: Comparison) -> float:
    return c.p_value_adjusted if c.p_value_adjusted is not None else c.p_value


def _holm_against(evidence: RunEvidence, reference: ArmEvidence, others: Sequence[ArmEvidence]
                  ) -> dict[str, Comparison]:
    """Each of ``others`` against ``reference`` (difference = other - reference), Holm-corrected."""
    pairs = [(arm, paired(evidence.metric, arm, reference, memo=evidence.comparisons))
             for arm in others if arm.name != reference.name]
    found = [(arm, c) for arm, c in pairs if c is not None]
    adjusted = holm([c for _, c in found])
    return {arm.name: c for (arm, _), c in zip(found, adjusted)}


def _pareto(arms: Sequence[ArmEvidence], cost: dict[str, float]) -> set[str]:
    """Arms no other arm beats on both quality and cost (and ties on neither)."""
    front = set()
    for a in arms:
        if a.name not in cost:
            continue
        dominated = any(
            b.name in cost and b.value >= a.value and cost[b.name] <= cost[a.name]
            and (b.value > a.value or cost[b.name] < cost[a.name])
            for b in arms if b is not a
        )
        if not dominated:
            front.add(a.name)
    return front


# -- the decision -----------------------------------------------------------------------------------


def decide(
    evidence: RunEvidence,
    costs: Sequence[ArmCostInput],
    economy: Economy,
    assumptions: TcoAssumptions,
    curves: Sequence[CurveSummary] = (),
    price_warnings: Sequence[str] = (),
) -> Decision:
    """Weigh the measured arms into a recommendation (rules in the module docstring)."""
    goals = evidence.card.goals
    bar, limit = goals.quality_bar, goals.latency_p95_ms
    metric = evidence.metric.name
    by_cost = {c.name: c for c in costs}
    scored = [arm for arm in evidence.scored_arms if arm.name in by_cost]
    totals = {c.name: arm_tco(c, economy, assumptions).total_usd for c in costs}

    prompting = [arm for arm in scored if arm.family == "prompt"]
    baseline = _best(prompting, totals)
    versus = _holm_against(evidence, baseline, scored) if baseline is not None else {}

    judgements: dict[str, ArmJudgement] = {}
    for arm in evidence.arms:
        if not arm.scored:
            judgements[arm.name] = ArmJudgement(meets_bar=None, meets_latency=None)
            continue
        p95 = arm.latency_percentile(95)
        judgements[arm.name] = ArmJudgement(
            meets_bar=None if bar is None else bool(arm.value >= bar),
            meets_latency=None if limit is None or p95 is None else bool(p95 <= limit),
            vs_best_prompt=versus.get(arm.name),
        )
    per_1k = {c.name: c.cost_per_request_usd * 1000 for c in costs}
    for name in _pareto(scored, per_1k):
        judgements[name].pareto = True

    pool = [arm for arm in scored if judgements[arm.name].acceptable]
    if bar is None and pool:
        top = _best(pool, totals)
        assert top is not None
        against_top = _holm_against(evidence, top, pool)
        candidates = [top] + [a for a in pool if a is not top and not (
            a.name in against_top and _significant(against_top[a.name]) and against_top[a.name].difference < 0)]
    else:
        candidates = pool
    winner = min(candidates, key=lambda a: (totals[a.name], -a.value, a.name)) if candidates else None

    serious = _serious(winner, baseline, candidates, scored, totals)
    tco = build_tco(costs, economy, assumptions, serious=[a.name for a in serious])
    context = _Context(evidence, by_cost, economy, assumptions, totals, judgements, baseline, bar, limit, metric, tco)
    if winner is None:
        recommendation = _nothing_acceptable(context, scored, curves)
    else:
        recommendation = _recommend(context, winner, candidates, scored)
    recommendation.caveats += _caveats(context, winner, price_warnings)
    gap = _prompting_gap(context, scored)
    return Decision(recommendation, judgements, baseline.name if baseline else None, tco, gap)


@dataclass
class _Context:
    evidence: RunEvidence
    costs: dict[str, ArmCostInput]
    economy: Economy
    assumptions: TcoAssumptions
    totals: dict[str, float]
    judgements: dict[str, ArmJudgement]
    baseline: ArmEvidence | None
    bar: float | None
    limit: float | None
    metric: str
    tco: TcoResult

    def value(self, arm: ArmEvidence) -> str:
        return words.share(arm.value, self.metric)

    def interval(self, arm: ArmEvidence) -> str:
        assert arm.estimate is not None
        return f"95% CI {words.share(arm.estimate.low, self.metric)}-{words.share(arm.estimate.high, self.metric)}"

    def horizon(self) -> str:
        return (f"over {words.months(self.economy.horizon_months)} at {words.volume(self.economy.requests_per_month)} "
                "requests a month")


def _serious(winner, baseline, candidates, scored, totals) -> list[ArmEvidence]:
    """The arms worth a break-even volume: the winner, the best prompt, the other acceptable
    arms (cheapest first) and the best arm overall, at most MAX_SERIOUS."""
    ordered = [winner, baseline, *sorted(candidates, key=lambda a: totals[a.name]), _best(scored, totals)]
    chosen: list[ArmEvidence] = []
    for arm in ordered:
        if arm is not None and arm not in chosen:
            chosen.append(arm)
    return chosen[:MAX_SERIOUS]


# -- a winner ---------------------------------------------------------------------------------------


def _recommend(ctx: _Context, winner: ArmEvidence, candidates: Sequence[ArmEvidence],
               scored: Sequence[ArmEvidence]) -> Recommendation:
    choice = CHOICE_BY_FAMILY.get(winner.family)
    tco = ctx.tco.arms[winner.name]
    if choice is None:
        return Recommendation("undecided", winner.name,
                              f"Undecided: the cheapest acceptable arm, {winner.name}, is of a kind ({winner.kind}) "
                              "the recommendation does not know how to name.",
                              reasons=[_quality_reason(ctx, winner)])
    if ctx.bar is not None:
        bar_words = f"meets the {words.share(ctx.bar, ctx.metric)} bar"
    elif winner.value >= max(a.value for a in candidates):
        bar_words = "scores highest"
    else:
        bar_words = "is as good as the best arm within the evidence"
    cost_words = f"{words.usd(tco.total_usd)} over {words.months(ctx.economy.horizon_months)}"
    if len(candidates) > 1:
        cost_words += ", the lowest cost of those that do" if ctx.bar is not None else ", the lowest cost of the ties"
    subject = "the embedding classifier" if choice == "no_llm" else winner.name
    headline = f"{HEADLINE_VERB[choice]}: {subject} {bar_words} at {cost_words}."
    reasons = [_quality_reason(ctx, winner), *_baseline_reasons(ctx, winner, scored), _cost_reason(ctx, winner,
                                                                                                 candidates)]
    if choice == "no_llm":
        reasons.append(_no_llm_reason(ctx, winner, scored))
    latency = _latency_reason(ctx, winner)
    if latency:
        reasons.append(latency)
    return Recommendation(choice, winner.name, headline, reasons=[r for r in reasons if r],
                          flips=_flips(ctx, winner, candidates, scored), ties=_ties(ctx, winner, scored))


def _quality_reason(ctx: _Context, arm: ArmEvidence) -> str:
    text = f"{arm.name} scores {ctx.value(arm)} {ctx.metric} ({ctx.interval(arm)}) on {arm.n:,} test examples"
    if ctx.bar is not None:
        gap = arm.value - ctx.bar
        text += (f", {words.points(gap, ctx.metric).lstrip('+')} above the {words.share(ctx.bar, ctx.metric)} bar"
                 if gap >= 0 else f", {words.points(-gap, ctx.metric).lstrip('+')} below the "
                                  f"{words.share(ctx.bar, ctx.metric)} bar")
    return text + "."


def _comparison_words(ctx: _Context, c: Comparison, family_size: int) -> str:
    correction = f" after Holm correction across {family_size} arms" if family_size > 1 else ""
    return (f"{words.points(c.difference, ctx.metric)} (95% CI {words.points_range(c.ci_low, c.ci_high, ctx.metric)}, "
            f"{words.p_value(_p(c))}{correction})")


def _baseline_reasons(ctx: _Context, winner: ArmEvidence, scored: Sequence[ArmEvidence]) -> list[str]:
    base = ctx.baseline
    if base is None:
        return ["No prompting arm ran, so nothing here is measured against prompting."]
    family = sum(1 for j in ctx.judgements.values() if j.vs_best_prompt is not None)
    if winner is base:
        others = [a for a in scored if a.family != "prompt" and ctx.judgements[a.name].vs_best_prompt is not None]
        best_other = max(others, key=lambda a: a.value, default=None)
        if best_other is None:
            return ["It is the best prompting arm; no other kind of arm finished to compare with."]
        c = ctx.judgements[best_other.name].vs_best_prompt
        assert c is not None
        verdict = ("significantly better, but costs more" if _significant(c) and c.difference > 0 else
                   "significantly worse" if _significant(c) else "not significantly different")
        return [(f"It is the best prompting arm. The best other arm, {best_other.name}, differs by "
                 f"{_comparison_words(ctx, c, family)}: {verdict}.")]
    c = ctx.judgements[winner.name].vs_best_prompt
    if c is None:
        return [f"It could not be paired with the best prompting arm, {base.name} (no shared test examples)."]
    if _significant(c):
        direction = "better" if c.difference > 0 else "worse"
        text = (f"Against the best prompting arm, {base.name} ({ctx.value(base)}), it is significantly {direction}: "
                f"{_comparison_words(ctx, c, family)}.")
    else:
        text = (f"Against the best prompting arm, {base.name} ({ctx.value(base)}), the difference is "
                f"{_comparison_words(ctx, c, family)}: not significant.")
    if ctx.bar is not None and ctx.judgements[base.name].meets_bar is False:
        text += f" {base.name} falls {words.points(ctx.bar - base.value, ctx.metric).lstrip('+')} short of the bar."
    return [text]


def _cost_reason(ctx: _Context, winner: ArmEvidence, candidates: Sequence[ArmEvidence]) -> str:
    tco = ctx.tco.arms[winner.name]
    cost = ctx.costs[winner.name]
    inference = f"inference {words.usd(tco.monthly_usd['inference'])}"
    usage = cost.cost_per_request_usd * ctx.economy.requests_per_month
    if cost.has_floor and usage < tco.monthly_usd["inference"]:
        inference += f", the always-on machine; the requests alone use {words.usd(usage)} of it"
    horizon = ctx.horizon()
    text = (f"{horizon[0].upper()}{horizon[1:]} it costs {words.usd(tco.total_usd)} in all: "
            f"{words.usd(tco.one_time_total)} up front, then about {words.usd(tco.monthly_total)} a month "
            f"({inference}; {cost.basis_text}).")
    rivals = sorted((a for a in candidates if a is not winner), key=lambda a: ctx.totals[a.name])
    what = "arms that meet the bar" if ctx.bar is not None else "arms the tests cannot separate from the best"
    if rivals:
        nxt = rivals[0]
        text += (f" It is the cheapest of the {len(candidates)} {what}; the next, {nxt.name}, costs "
                 f"{words.usd(ctx.totals[nxt.name])}.")
    return text


def _latency_reason(ctx: _Context, arm: ArmEvidence) -> str | None:
    p95 = arm.latency_percentile(95)
    if p95 is None:
        return None
    if ctx.limit is None:
        return f"Its p95 latency is {words.milliseconds(p95)} per request (no limit in the card)."
    return f"Its p95 latency, {words.milliseconds(p95)}, is within the {words.milliseconds(ctx.limit)} limit."


def _no_llm_reason(ctx: _Context, winner: ArmEvidence, scored: Sequence[ArmEvidence]) -> str:
    llms = [a for a in scored if a.family != "no_llm"]
    best_llm = max(llms, key=lambda a: a.value, default=None)
    if best_llm is None:
        return "No LLM arm finished to compare with."
    c = paired(ctx.evidence.metric, winner, best_llm, memo=ctx.evidence.comparisons)
    if c is None:
        return f"It could not be paired with the best LLM arm, {best_llm.name}."
    saving = ctx.totals[best_llm.name] - ctx.totals[winner.name]
    cheaper = (f"{words.usd(saving)} cheaper" if saving >= 0 else f"{words.usd(-saving)} dearer")
    if best_llm is ctx.baseline:  # the comparison was given already, as the one with the best prompt
        return f"It needs no LLM at all, and is {cheaper} than {best_llm.name} {ctx.horizon()}."
    if _significant(c) and c.difference < 0:
        return (f"The best LLM arm, {best_llm.name}, scores higher by {words.points(-c.difference, ctx.metric)} "
                f"({words.p_value(c.p_value)}), but both meet the bar and it costs {words.usd(saving)} more.")
    return (f"It is not significantly worse than the best LLM arm, {best_llm.name}: "
            f"{_comparison_words(ctx, c, 1)}; and {cheaper}.")


def _ties(ctx: _Context, winner: ArmEvidence, scored: Sequence[ArmEvidence]) -> list[str]:
    others = sorted((a for a in scored if a is not winner), key=lambda a: -a.value)
    against = _holm_against(ctx.evidence, winner, others)
    ties = []
    for arm in others:
        c = against.get(arm.name)
        if c is None or _significant(c):
            continue
        ties.append(f"{winner.name} and {arm.name} cannot be told apart on {ctx.metric}: {arm.name} differs by "
                    f"{_comparison_words(ctx, c, len(against))} on {c.n:,} shared examples.")
    return ties[:4]


# -- flips ------------------------------------------------------------------------------------------


def _flips(ctx: _Context, winner: ArmEvidence, candidates: Sequence[ArmEvidence],
           scored: Sequence[ArmEvidence]) -> list[str]:
    flips: list[str] = []
    current = ctx.economy.requests_per_month
    for rival in candidates:
        if rival is winner:
            continue
        even = break_even(ctx.costs[winner.name], ctx.costs[rival.name], ctx.economy, ctx.assumptions)
        if even.requests_per_month is None:
            continue
        point = even.requests_per_month
        side = "Above" if point > current else "Below"
        flips.append(f"{side} {words.volume(point)} requests a month (now {words.volume(current)}), {rival.name} "
                     f"becomes cheaper than {winner.name} over {words.months(ctx.economy.horizon_months)}.")
    flips += _bar_flips(ctx, winner, scored)
    flips += _latency_flips(ctx, winner, scored)
    flips += _price_flips(ctx, winner, candidates)
    flips += _cadence_flips(ctx, winner, candidates)
    return flips


def _bar_flips(ctx: _Context, winner: ArmEvidence, scored: Sequence[ArmEvidence]) -> list[str]:
    flips = []
    if ctx.bar is None:
        return flips
    # A cheaper arm far below the bar is no flip anyone would take: only a drop of at most
    # BAR_DROP_SHOWN (relative) is worth a sentence.
    cheaper = [a for a in scored if ctx.totals[a.name] < ctx.totals[winner.name]
               and ctx.judgements[a.name].meets_bar is False and ctx.judgements[a.name].meets_latency is not False
               and a.value >= ctx.bar - BAR_DROP_SHOWN * abs(ctx.bar)]
    if cheaper:
        nearest = max(cheaper, key=lambda a: a.value)
        flips.append(f"If the bar dropped to {words.share(nearest.value, ctx.metric)} (from "
                     f"{words.share(ctx.bar, ctx.metric)}), {nearest.name} would suffice at "
                     f"{words.usd(ctx.totals[nearest.name])} instead of {words.usd(ctx.totals[winner.name])}.")
    better = sorted((a for a in scored if a.value > winner.value and ctx.judgements[a.name].meets_latency is not False),
                    key=lambda a: ctx.totals[a.name])
    above = words.share(winner.value, ctx.metric)
    if better:
        flips.append(f"If the bar rose above {above}, {winner.name} would no longer meet it; "
                     f"{better[0].name} ({words.share(better[0].value, ctx.metric)}) would, at "
                     f"{words.usd(ctx.totals[better[0].name])}.")
    else:
        flips.append(f"If the bar rose above {above}, no arm measured here would meet it.")
    return flips


def _latency_flips(ctx: _Context, winner: ArmEvidence, scored: Sequence[ArmEvidence]) -> list[str]:
    if ctx.limit is None:
        return []
    slow = [a for a in scored if ctx.totals[a.name] < ctx.totals[winner.name]
            and ctx.judgements[a.name].meets_latency is False and ctx.judgements[a.name].meets_bar is not False]
    if not slow:
        return []
    arm = min(slow, key=lambda a: ctx.totals[a.name])
    p95 = arm.latency_percentile(95) or 0.0
    return [(f"If a p95 latency of {words.milliseconds(p95)} were acceptable (the limit is "
             f"{words.milliseconds(ctx.limit)}), {arm.name} would do at {words.usd(ctx.totals[arm.name])}.")]


def _price_flips(ctx: _Context, winner: ArmEvidence, candidates: Sequence[ArmEvidence]) -> list[str]:
    if ctx.costs[winner.name].api_priced:
        return []
    flips = []
    for arm in candidates:
        cost = ctx.costs[arm.name]
        if arm is winner or not cost.api_priced:
            continue
        factor = api_price_factor_to_match(cost, ctx.totals[winner.name], ctx.economy, ctx.assumptions)
        if factor is not None:
            flips.append(f"If API prices fell {1 - factor:.0%}, {arm.name} would cost the same as {winner.name} "
                         f"({words.usd(ctx.totals[winner.name])} {ctx.horizon()}).")
    return flips[:2]


def _cadence_flips(ctx: _Context, winner: ArmEvidence, candidates: Sequence[ArmEvidence]) -> list[str]:
    if len(candidates) < 2 or ctx.economy.retrain_every_months is None:
        return []
    names = [a.name for a in candidates]
    costs = [ctx.costs[n] for n in names]
    flips = []
    for cadence in (1.0, 2.0, 6.0, 12.0, None):
        if cadence == ctx.economy.retrain_every_months:
            continue
        economy = replace(ctx.economy, retrain_every_months=cadence)
        totals = {c.name: arm_tco(c, economy, ctx.assumptions).total_usd for c in costs}
        cheapest = min(totals, key=lambda n: (totals[n], n))
        if cheapest != winner.name:
            when = "never moved" if cadence is None else f"moved every {words.months(cadence)}"
            flips.append(f"If the base model {when} (the card says every "
                         f"{words.months(ctx.economy.retrain_every_months)}), {cheapest} would be cheaper "
                         f"({words.usd(totals[cheapest])} against {words.usd(totals[winner.name])}).")
            break
    return flips


# -- nothing acceptable -----------------------------------------------------------------------------


def _nothing_acceptable(ctx: _Context, scored: Sequence[ArmEvidence], curves: Sequence[CurveSummary]
                        ) -> Recommendation:
    if not scored:
        return Recommendation("undecided", None, "Undecided: no arm finished, so there is nothing to weigh.",
                              reasons=["Every arm was skipped, failed or stopped early; see each arm's reason."],
                              flips=["Run the bake-off again with a larger --budget (or a smaller --limit)."])
    best = _best(scored, ctx.totals)
    assert best is not None
    short = []
    if ctx.bar is not None and ctx.judgements[best.name].meets_bar is False:
        short.append(f"the {words.share(ctx.bar, ctx.metric)} bar")
    fast = [a for a in scored if ctx.judgements[a.name].meets_bar is not False]
    if ctx.limit is not None and fast and all(ctx.judgements[a.name].meets_latency is False for a in fast):
        short.append(f"the {words.milliseconds(ctx.limit)} p95 latency limit")
    reasons = [_quality_reason(ctx, best)]
    if ctx.limit is not None:
        reasons += [f"{a.name} meets the bar, but its p95 latency is "
                    f"{words.milliseconds(a.latency_percentile(95) or 0.0)}." for a in fast][:3]
    flips = []
    if ctx.bar is not None:
        # Meeting a lower bar, it would not need the labels bought to reach this one.
        labelling = ctx.tco.arms[best.name].one_time_usd.get("labelling", 0.0)
        flips.append(f"If the bar dropped to {words.share(best.value, ctx.metric)}, {best.name} would suffice at "
                     f"{words.usd(ctx.totals[best.name] - labelling)} {ctx.horizon()}.")
    if ctx.limit is not None and fast:
        quick = min(fast, key=lambda a: a.latency_percentile(95) or math.inf)
        flips.append(f"If a p95 latency of {words.milliseconds(quick.latency_percentile(95) or 0.0)} were acceptable, "
                     f"{quick.name} would do.")
    steep = [c for c in curves if c.steepness == "steep"]
    what = " and ".join(short) or "the card's goals"
    if steep:
        curve = max(steep, key=lambda c: c.gain_per_doubling or 0.0)
        reasons.append(curve.text)
        if curve.labels_needed:
            labelling = curve.labels_needed * ctx.economy.labelling_per_example
            reasons.append(f"The curve puts the bar at about {curve.labels_needed:,} more labelled examples for "
                           f"{curve.arm}: about {words.usd(labelling)} of labelling at "
                           f"{words.usd(ctx.economy.labelling_per_example)} each.")
        return Recommendation("collect_more_data", curve.arm,
                              f"Collect more data first: no arm meets {what}, and {curve.arm}'s learning curve is "
                              "still rising.", reasons=reasons, flips=flips)
    advice = ("No learning curve was run, so whether more data would help is unknown; a bake-off with the LoRA "
              "arm measures one." if not curves else "The learning curves do not say more data would close the gap.")
    reasons.append(advice)
    return Recommendation("undecided", best.name,
                          f"Undecided: no arm meets {what}; the best, {best.name}, scores {ctx.value(best)}.",
                          reasons=reasons, flips=flips)


# -- caveats and the readiness item ----------------------------------------------------------------


def _caveats(ctx: _Context, winner: ArmEvidence | None, price_warnings: Sequence[str]) -> list[str]:
    evidence = ctx.evidence
    caveats: list[str] = []
    n = evidence.n_examples
    if 0 < n < SMALL_SAMPLE and winner is not None and winner.estimate is not None:
        half = (winner.estimate.high - winner.estimate.low) / 2
        caveats.append(f"Only {n:,} test examples: the winner's interval is about ±"
                       f"{words.points(half, ctx.metric).lstrip('+')} wide, so close calls may change with more; "
                       "run without --limit before committing money.")
    if winner is not None and ctx.bar is not None and winner.estimate is not None and winner.estimate.low < ctx.bar:
        caveats.append(f"{winner.name}'s interval reaches below the bar (down to "
                       f"{words.share(winner.estimate.low, ctx.metric)}): it meets the bar on its score, not beyond "
                       "doubt.")
    if ctx.bar is None:
        caveats.append("The card sets no quality bar, so the choice is the cheapest arm the tests cannot separate "
                       "from the best; set goals.quality_bar to say what is good enough.")
    for arm in evidence.arms:
        if arm.status == "skipped":
            caveats.append(f"{arm.name} did not run: {arm.reason or 'skipped by the bake-off'}.")
        elif arm.status != "finished":
            caveats.append(f"{arm.name} is left out ({arm.status})" + (f": {arm.reason}." if arm.reason else "."))
    if evidence.run.status != "finished":
        caveats.append(f"The bake-off run is {evidence.run.status}, not finished: some arms may be missing.")
    caveats += list(price_warnings)
    unknown = sorted({a.kind for a in evidence.scored_arms if a.kind not in ctx.assumptions.kind_costs})
    default_hours = ctx.assumptions.kind_costs == KIND_COSTS
    if default_hours or unknown:
        caveats.append("Engineering hours per arm kind are tunewise's defaults (listed with the TCO assumptions); "
                       "your own numbers sharpen the totals.")
    caveats += evidence.notes
    return caveats


def _prompting_gap(ctx: _Context, scored: Sequence[ArmEvidence]) -> PromptingGap | None:
    base = ctx.baseline
    if base is None or base.estimate is None:
        return None
    others = [a for a in scored if a.family != "prompt"]
    best_other = max(others, key=lambda a: a.value, default=None)
    comparison = ctx.judgements[best_other.name].vs_best_prompt if best_other is not None else None
    return PromptingGap(
        metric=ctx.metric,
        best_prompting_arm=base.name,
        prompting_score=base.value,
        prompting_ci=(base.estimate.low, base.estimate.high),
        quality_bar=ctx.bar,
        best_other_arm=best_other.name if best_other is not None else None,
        other_score=best_other.value if best_other is not None else None,
        other_significantly_better=(None if comparison is None else
                                    bool(_significant(comparison) and comparison.difference > 0)),
        difference=None if comparison is None else (comparison.difference, comparison.ci_low, comparison.ci_high),
        p_holm=None if comparison is None else _p(comparison),
    )
