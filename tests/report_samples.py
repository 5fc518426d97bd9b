"""A hand-written verdict (``Verdict.to_dict()``, schema 1) for the report tests.

Realistic rather than minimal: seven arms (two skipped, one without a cost), a recommendation
with reasons, flips and a tie, TCO with break-even and sensitivity, a learning curve, a data
check with findings, and inputs that carry HTML, Markdown and dollar signs, so escaping is
exercised everywhere a user's text lands. Each call returns a fresh dict that a test may edit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Text a user's data can hold: markup that must stay text, Markdown table syntax, and two dollar
# signs (which matplotlib would typeset as maths if it parsed them).
HOSTILE_INPUT = ('<script>alert("pwned")</script> Refund & cancel | both? Charged $49 then $49 again '
                 '<b>not bold</b> `code` *stars*')
LONG_INPUT = ("My receipt printer stopped working after the last update and " * 12).strip()


def _latencies(seed: int, median_ms: float, spread: float, n: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(v), 2) for v in rng.lognormal(np.log(median_ms), spread, n)]


def _arm(name: str, kind: str, model: str | None, **fields: Any) -> dict[str, Any]:
    arm = {"name": name, "kind": kind, "model": model, "status": "finished", "reason": None, "quality": None,
           "n": 0, "latency_p50_ms": None, "latency_p95_ms": None, "cost_per_1k_usd": None, "prepare_s": None,
           "prepare_cost_usd": None, "pareto": False, "meets_bar": None, "vs_best_prompt": None,
           "latencies_ms": [], "errors": []}
    arm.update(fields)
    latencies = arm["latencies_ms"]
    if latencies and arm["latency_p50_ms"] is None:
        arm["latency_p50_ms"] = float(np.percentile(latencies, 50))
        arm["latency_p95_ms"] = float(np.percentile(latencies, 95))
    return arm


def _vs(delta: float, low: float, high: float, p: float, p_holm: float) -> dict[str, Any]:
    return {"baseline": "few_shot_nearest@smollm2-135m-instruct", "delta": delta, "low": low, "high": high,
            "p_value": p, "p_holm": p_holm, "significant": p_holm < 0.05}


LORA, API, EMBED = "lora@smollm2-135m-instruct", "zero_shot@openai:gpt-4o-mini", "embed_classifier"
# Per arm: one-time dollars, monthly dollars other than inference, dollars per 1,000 requests.
_COSTS = {
    LORA: ({"labelling": 250.0, "training": 0.42, "engineering": 760.0},
           {"retraining": 65.0, "monitoring": 40.0, "relabelling": 25.0}, 0.012),
    API: ({"labelling": 0.0, "training": 0.0, "engineering": 190.0},
          {"retraining": 0.0, "monitoring": 40.0, "relabelling": 0.0}, 0.09),
    EMBED: ({"labelling": 250.0, "training": 0.01, "engineering": 380.0},
            {"retraining": 12.0, "monitoring": 40.0, "relabelling": 25.0}, 0.0006),
}
HORIZON, VOLUME, CADENCE = 12, 60_000, 3


def _total(name: str, volume: float, *, cadence: float = CADENCE, price_drop: float = 0.0) -> float:
    one_time, fixed, per_1k = _COSTS[name]
    if name == API:
        per_1k *= 1 - price_drop
    monthly = fixed["retraining"] * CADENCE / cadence + fixed["monitoring"] + fixed["relabelling"]
    return round(sum(one_time.values()) + HORIZON * (monthly + per_1k * volume / 1000), 2)


def _break_even(a: str, b: str) -> float | None:
    """The monthly volume where a's and b's horizon totals meet (both are linear in volume)."""
    slope = (_COSTS[a][2] - _COSTS[b][2]) * HORIZON / 1000
    gap = _total(b, 0) - _total(a, 0)
    return round(gap / slope, -3) if slope and gap / slope > 0 else None


def _tco() -> dict[str, Any]:
    arms = {}
    for name, (one_time, fixed, per_1k) in _COSTS.items():
        monthly = {"inference": round(per_1k * VOLUME / 1000, 2), **fixed}
        cumulative = [round(sum(one_time.values()) + sum(monthly.values()) * m, 2) for m in range(HORIZON + 1)]
        arms[name] = {"one_time_usd": one_time, "monthly_usd": monthly, "cumulative_usd": cumulative,
                      "total_usd": cumulative[-1]}
    lora_api, embed_api = _break_even(LORA, API), _break_even(EMBED, API)
    return {
        "horizon_months": HORIZON, "requests_per_month": VOLUME, "retrain_every_months": float(CADENCE),
        "assumptions": {"engineer_per_hour_usd": 95.0, "labelling_per_example_usd": 0.25,
                        "machine_per_hour_usd": 0.09, "price_table_date": "2026-10-01"},
        "arms": arms,
        "break_even": [
            {"a": LORA, "b": API, "requests_per_month": lora_api,
             "text": f"Above {lora_api / 1e6:.1f} M requests a month, the LoRA fine-tune is cheaper than gpt-4o-mini."},
            {"a": EMBED, "b": API, "requests_per_month": embed_api,
             "text": f"Above {embed_api / 1e6:.1f} M requests a month, the embedding classifier is cheaper than "
                     "gpt-4o-mini, but it misses the 90% bar."},
            {"a": EMBED, "b": LORA, "requests_per_month": None,
             "text": "The embedding classifier is cheaper than the LoRA fine-tune at every volume."},
        ],
        "sensitivity": {
            "volume": [{"requests_per_month": v, "totals": {name: _total(name, v) for name in _COSTS}}
                       for v in (6_000, 20_000, 60_000, 200_000, 600_000, 2_000_000, 6_000_000)],
            "cadence": [{"retrain_every_months": float(c), "totals": {name: _total(name, VOLUME, cadence=c)
                                                                      for name in _COSTS}} for c in (1, 3, 6)],
            "api_price_drop": [{"price_drop": d, "totals": {name: _total(name, VOLUME, price_drop=d)
                                                            for name in _COSTS}} for d in (0.0, 0.5, 0.8)],
        },
    }


def sample_verdict() -> dict[str, Any]:
    """A fresh verdict for run 42 of the support-ticket task: gpt-4o-mini is picked on cost at this
    volume, a LoRA fine-tune is as good and wins above 2 M requests a month."""
    lora = LORA
    arms = [
        _arm("embed_classifier", "embed_classifier", "all-MiniLM-L6-v2", n=200,
             quality={"value": 0.845, "low": 0.79, "high": 0.895}, cost_per_1k_usd=0.0006, prepare_s=3.8,
             prepare_cost_usd=0.0001, pareto=True, meets_bar=False, vs_best_prompt=_vs(0.225, 0.15, 0.30, 1e-6, 4e-6),
             latencies_ms=_latencies(1, 4.2, 0.35, 200),
             errors=[{"input": HOSTILE_INPUT, "expected": "refund_request", "output": "billing"},
                     {"input": "Card reader shows error E42 after firmware 3.1", "expected": "bug_report",
                      "output": "shipping_delay"}]),
        _arm("zero_shot@smollm2-135m-instruct", "zero_shot", "smollm2-135m-instruct", n=200,
             quality={"value": 0.41, "low": 0.345, "high": 0.48}, cost_per_1k_usd=0.021,
             vs_best_prompt=_vs(-0.21, -0.29, -0.13, 2e-5, 6e-5), meets_bar=False,
             latencies_ms=_latencies(2, 380, 0.25, 200),
             errors=[{"input": HOSTILE_INPUT, "expected": "refund_request", "output": "cancellation"},
                     {"input": LONG_INPUT, "expected": "bug_report", "output": "feature_request"},
                     {"input": "Please add dark mode to the dashboard", "expected": "feature_request",
                      "output": "bug_report"}]),
        _arm("few_shot_nearest@smollm2-135m-instruct", "few_shot_nearest", "smollm2-135m-instruct", n=200,
             quality={"value": 0.62, "low": 0.55, "high": 0.685}, cost_per_1k_usd=0.043, prepare_s=2.1,
             meets_bar=False, latencies_ms=_latencies(3, 720, 0.2, 200),
             errors=[{"input": LONG_INPUT, "expected": "bug_report", "output": "billing"}]),
        _arm("zero_shot@openai:gpt-4o-mini", "zero_shot", "openai:gpt-4o-mini", n=200,
             quality={"value": 0.905, "low": 0.865, "high": 0.94}, cost_per_1k_usd=0.09,
             meets_bar=True, vs_best_prompt=_vs(0.285, 0.22, 0.35, 1e-7, 4e-7),
             latencies_ms=_latencies(4, 650, 0.45, 200),
             errors=[{"input": HOSTILE_INPUT, "expected": "refund_request", "output": "billing"}]),
        _arm(lora, "lora", "smollm2-135m-instruct", n=200,
             quality={"value": 0.93, "low": 0.895, "high": 0.96}, cost_per_1k_usd=0.012, prepare_s=1830.0,
             prepare_cost_usd=0.42, pareto=True, meets_bar=True, vs_best_prompt=_vs(0.31, 0.245, 0.375, 1e-8, 5e-8),
             latencies_ms=_latencies(5, 210, 0.2, 200),
             errors=[{"input": "I was charged twice; also the app logs me out", "expected": "billing",
                      "output": "account_access"}]),
        _arm("few_shot_random@gemma3-270m", "few_shot_random", "gemma3-270m", status="skipped",
             reason="does not fit the 20 min budget (forecast 34 min)"),
        _arm("distill@smollm2-135m-instruct", "distill", "smollm2-135m-instruct", status="skipped",
             reason="needs a teacher model: add --models openai:gpt-4o-mini"),
    ]
    return {
        "schema_version": 1, "run_id": 42, "task": "support-ticket-routing", "kind": "classify",
        "metric": "accuracy", "n_examples": 200, "created_at": "2026-11-03T14:05:00+00:00",
        "recommendation": {
            "choice": "prompt", "arm": API,
            "headline": "Prompt gpt-4o-mini zero-shot: it meets the 90% bar, and at 60,000 requests a month it "
                        "costs the least over 12 months.",
            "reasons": [
                ("gpt-4o-mini scores 90.5% (86.5–94.0), 28.5 points above the best local prompt "
                 "(p < 0.001, Holm-corrected)."),
                ("Over 12 months it totals $735, against $2,579 for the LoRA fine-tune, whose labelling and "
                 "re-training outweigh its cheaper requests at this volume."),
                "Its p95 latency, 1.4 s, is within the 2 s limit.",
            ],
            "flips": ["Above 2.0 M requests a month, the LoRA fine-tune is cheaper over 12 months.",
                      "If the bar drops to 84%, the embedding classifier suffices and needs no LLM."],
            "ties": ["LoRA and gpt-4o-mini cannot be told apart on quality (+2.5 pp, -1.8 to +6.9, p = 0.31)."],
            "caveats": ["Measured on 200 test examples; intervals are bootstrap 95%. API prices as of 2026-10-01."],
        },
        "arms": arms,
        "tco": _tco(),
        "learning_curve": [{
            "arm": lora,
            "points": [{"n": n, "value": v, "low": v - w, "high": min(1.0, v + w)}
                       for n, v, w in ((50, 0.58, 0.07), (100, 0.74, 0.06), (200, 0.84, 0.05), (400, 0.9, 0.04),
                                       (800, 0.93, 0.035))],
            "fit": {"model": "power_law", "plateau": 0.95},
            "text": "Still rising slowly: doubling to 1,600 examples would add about 1.5 points.",
        }],
        "readiness": [
            {"key": "training_examples", "label": "At least 1,000 good examples", "status": "met",
             "detail": "1,612 good examples after removing 14 duplicates and 3 conflicts."},
            {"key": "task_definition", "label": "A strictly defined task", "status": "met",
             "detail": "classify into 8 labels"},
            {"key": "metric", "label": "A clear quality metric", "status": "met", "detail": "accuracy"},
            {"key": "prompting_gap", "label": "Prompting demonstrably falls short", "status": "not_met",
             "detail": "no: gpt-4o-mini zero-shot scores 90.5%, over the 90% bar; the best local prompt scores "
                       "62.0%."},
        ],
        "check": {
            "ok": True, "sizes": {"train": 1290, "validation": 161, "test": 161}, "row_error_counts": {},
            "findings": [
                {"code": "duplicate_input", "severity": "warning", "count": 14,
                 "summary": "14 inputs appear more than once", "examples": [
                     {"file": "data/tickets.jsonl", "line": 88, "text": "Where is my <order> #5521?"}]},
                {"code": "label_imbalance", "severity": "info", "count": 1,
                 "summary": "security_concern has 4.1% of training rows (the largest label has 18.6%)",
                 "examples": []},
            ],
            "notes": [],
        },
        "rebuild": {
            "command": "tunewise bakeoff examples/support-tickets/task.yaml --arms embed_classifier,zero_shot "
                       "--limit 40",
            "card": {"name": "support-ticket-routing", "kind": "classify", "metric": "accuracy",
                     "data": {"file": "data/tickets.jsonl"}, "goals": {"quality_bar": 0.9, "latency_p95_ms": 2000},
                     "traffic": {"requests_per_month": 60000, "horizon_months": 12}},
            "data_hashes": {"file": "9f2c61d0b1c1e8e5d0a3c1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2"},
            "seeds": {"split": 7, "sample": 0},
            "config": {"limit": 200, "shots": 5, "budget_s": 1200},
            "versions": {"tunewise": "0.1.0", "python": "3.11.7", "torch": "2.13.0", "transformers": "5.23.0"},
        },
    }


def minimal_verdict(*, arms: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The sample with every optional section empty: no TCO, no learning curve, no check."""
    verdict = sample_verdict()
    verdict.update(tco=None, learning_curve=[], check=None, readiness=[])
    if arms is not None:
        verdict["arms"] = arms
    return verdict
