"""The shape of the verdict the report reads (``Verdict.to_dict()``, schema version 1).

The report is a consumer: it checks what it was given against this schema before rendering
anything, so a producer bug surfaces as one error naming the key ("verdict.arms[2]: 'quality'
is a required property") instead of a half-empty page or a KeyError deep in a template.
Optional *sections* are optional *values*, not missing keys: ``check`` may be null,
``learning_curve`` may be empty, an arm's ``quality`` may be null, but the keys are there.
Extra keys are allowed, so the producer can grow without breaking the report.
"""

from __future__ import annotations

import math
from typing import Any

import jsonschema

from tunewise.errors import TunewiseError

SCHEMA_VERSION = 1
_PRODUCER_BUG = "a bug in the verdict producer (its contract is tunewise.verdict.report.contract); please report it"

CHOICES = ["prompt", "rag", "fine_tune", "rag_fine_tune", "distill", "cascade", "no_llm", "collect_more_data",
           "undecided"]


class ReportError(TunewiseError):
    """The report cannot be written: a verdict that breaks the contract, or an output folder
    that cannot be written to."""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": required}


_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_INTERVAL = _object({"value": _NUMBER, "low": _NUMBER, "high": _NUMBER})

_ARM = _object({
    "name": _STRING,
    "kind": _STRING,
    "model": _nullable(_STRING),
    "status": _STRING,
    "reason": _nullable(_STRING),
    "quality": _nullable(_INTERVAL),
    "n": {"type": "integer"},
    "latency_p50_ms": _nullable(_NUMBER),
    "latency_p95_ms": _nullable(_NUMBER),
    "cost_per_1k_usd": _nullable(_NUMBER),
    "prepare_s": _nullable(_NUMBER),
    "prepare_cost_usd": _nullable(_NUMBER),
    "pareto": {"type": "boolean"},
    "meets_bar": _nullable({"type": "boolean"}),
    "vs_best_prompt": _nullable(_object({
        "baseline": _STRING, "delta": _NUMBER, "low": _NUMBER, "high": _NUMBER,
        "p_value": _NUMBER, "p_holm": _NUMBER, "significant": {"type": "boolean"},
    })),
    "latencies_ms": {"type": "array", "items": _NUMBER},
    "errors": {"type": "array", "items": _object({"input": _STRING, "expected": _STRING, "output": _STRING})},
})

_TOTALS = {"type": "object", "additionalProperties": _NUMBER}
_SENSITIVITY_ROW = {"type": "object", "required": ["totals"], "properties": {"totals": _TOTALS}}

_TCO_ARM = _object({
    "one_time_usd": {"type": "object", "additionalProperties": _NUMBER},
    "monthly_usd": {"type": "object", "additionalProperties": _NUMBER},
    "cumulative_usd": {"type": "array", "items": _NUMBER, "minItems": 1},
    "total_usd": _NUMBER,
})

_TCO = _object({
    "horizon_months": {"type": "integer", "minimum": 1},
    "requests_per_month": {"type": "integer", "minimum": 0},
    "retrain_every_months": _nullable(_NUMBER),
    "assumptions": {"type": "object"},
    "arms": {"type": "object", "additionalProperties": _TCO_ARM},
    "break_even": {"type": "array", "items": _object({
        "a": _STRING, "b": _STRING, "requests_per_month": _nullable(_NUMBER), "text": _STRING,
    })},
    "sensitivity": {"type": "object", "additionalProperties": {"type": "array", "items": _SENSITIVITY_ROW}},
})

_LEARNING_CURVE = _object({
    "arm": _STRING,
    "points": {"type": "array", "items": _object({"n": {"type": "integer"}, "value": _NUMBER,
                                                   "low": _NUMBER, "high": _NUMBER})},
    "fit": _nullable({"type": "object"}),
    "text": _STRING,
})

VERDICT_SCHEMA: dict[str, Any] = _object({
    "schema_version": {"const": SCHEMA_VERSION},
    "run_id": {"type": "integer"},
    "task": _STRING,
    "kind": _STRING,
    "metric": _STRING,
    "n_examples": {"type": "integer"},
    "created_at": _STRING,
    "recommendation": _object({
        "choice": {"enum": CHOICES},
        "arm": _nullable(_STRING),
        "headline": _STRING,
        "reasons": _STRINGS,
        "flips": _STRINGS,
        "ties": _STRINGS,
        "caveats": _STRINGS,
    }),
    "arms": {"type": "array", "items": _ARM},
    "tco": _nullable(_TCO),
    "learning_curve": {"type": "array", "items": _LEARNING_CURVE},
    "readiness": {"type": "array", "items": _object({"key": _STRING, "label": _STRING, "status": _STRING,
                                                      "detail": _nullable(_STRING)})},
    "check": _nullable({"type": "object"}),
    "rebuild": _object({
        "command": _STRING,
        "card": {"type": "object"},
        "data_hashes": {"type": "object"},
        "seeds": {"type": "object"},
        "config": {"type": "object"},
        "versions": {"type": "object"},
    }),
})


def validate_verdict(verdict: Any) -> None:
    """Raise ReportError naming the first key that breaks the contract (the deepest path first)."""
    if not isinstance(verdict, dict):
        raise ReportError(f"the verdict must be a dict (Verdict.to_dict()), not {type(verdict).__name__}")
    _require_finite(verdict, "verdict")
    validator = jsonschema.Draft202012Validator(VERDICT_SCHEMA)
    errors = sorted(validator.iter_errors(verdict), key=lambda e: (-len(e.absolute_path), list(map(str, e.path))))
    if not errors:
        return
    error = _most_specific(errors[0])
    where = "verdict" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    raise ReportError(f"{_message(error)}{more}", where=where,
                      fix=_PRODUCER_BUG)


def _require_finite(value: Any, where: str) -> None:
    """NaN and infinity are not JSON: report.json could not hold them, and a chart would drop
    the point silently. The producer says "unknown" with null."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(f"{value} is not a number JSON can hold; use null for an unknown value", where=where,
                          fix=_PRODUCER_BUG)
    if isinstance(value, dict):
        for key, inner in value.items():
            _require_finite(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _require_finite(inner, f"{where}[{index}]")


def _most_specific(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a value that may be null, jsonschema reports 'not valid under any of the given schemas';
    the reason inside the non-null branch (a missing key) is what helps."""
    while error.context:
        branches = [e for e in error.context if e.schema != {"type": "null"}] or error.context
        error = max(branches, key=lambda e: len(e.absolute_path))
    return error


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "const" and list(error.absolute_path) == ["schema_version"]:
        return f"schema version {error.instance!r}; this report reads version {SCHEMA_VERSION}"
    return error.message
