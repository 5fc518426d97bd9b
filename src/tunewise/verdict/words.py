"""Numbers as people read them in a sentence: dollars, volumes, shares and points.

The verdict's text is read by finance people and engineers alike, so every number is rounded
to what it can support and carries its unit ("$4,210", "2.1 M requests", "93.1%", "+4.2 points").
"""

from __future__ import annotations

import math


def usd(amount: float) -> str:
    """Dollars: cents below $10, whole dollars to a million, then "$1.2 M"."""
    if not math.isfinite(amount):
        return "an unbounded amount"
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value >= 1e6:
        return f"{sign}${value / 1e6:,.1f} M"
    if value >= 10:
        return f"{sign}${value:,.0f}"
    if value >= 0.01 or value == 0:
        return f"{sign}${value:,.2f}"
    return f"{sign}${value:.2g}"


def volume(requests: float) -> str:
    """A request volume: "640", "85 k", "2.1 M", "3.4 B"."""
    if not math.isfinite(requests):
        return "an unbounded number of"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if requests >= scale:
            shown = requests / scale
            return f"{shown:,.1f} {suffix}" if shown < 10 else f"{shown:,.0f} {suffix}"
    return f"{requests:,.0f}"


def share(value: float, metric: str) -> str:
    """A metric value: a percentage for proportions in [0, 1] named like one, else 3 digits."""
    if metric in PERCENT_METRICS:
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"


def points(delta: float, metric: str) -> str:
    """A difference in metric units: "+4.2 points" for percentages, "+0.042" otherwise."""
    if metric in PERCENT_METRICS:
        return f"{100 * delta:+.1f} points"
    return f"{delta:+.3f}"


def points_range(low: float, high: float, metric: str) -> str:
    """An interval of differences: "-1.8 to +6.9 points" (or "-0.018 to +0.069")."""
    if metric in PERCENT_METRICS:
        return f"{100 * low:+.1f} to {100 * high:+.1f} points"
    return f"{low:+.3f} to {high:+.3f}"


def p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def months(value: float) -> str:
    return f"{value:g} month" + ("" if value == 1 else "s")


def milliseconds(value: float) -> str:
    return f"{value:,.0f} ms"


# Metrics whose values are shares of examples (or averages of per-example shares), so "93.1%"
# reads right. Custom metrics keep three digits: their scale is unknown.
PERCENT_METRICS = frozenset({"accuracy", "macro_f1", "json_validity", "field_f1", "exact_match", "token_f1",
                             "rouge_l"})
