"""Numbers as people read them: money, durations, qualities and deltas, one way everywhere.

The HTML, the Markdown and the chart axes all format through these functions, so "$0.42 per
1,000 requests" in a sentence and on an axis tick are the same string.
"""

from __future__ import annotations

import math
from datetime import datetime

DASH = "—"  # shown where a value does not exist (a skipped arm's latency), never "None" or "nan"


def is_number(value: object) -> bool:
    """True for a finite int or float (bool excluded): the only values worth printing as numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def usd(value: float | None) -> str:
    """Dollars with as many digits as a decision needs: $12,400 / $38.20 / $0.42 / $0.0031."""
    if not is_number(value):
        return DASH
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size >= 100:  # cents stop mattering to the decision
        text = f"{size:,.0f}"
    elif size >= 1:
        text = f"{size:,.2f}"
    else:
        # Two significant digits: $0.42, $0.031, $0.0042. Fixed decimals would print $0.00.
        decimals = min(8, max(2, 1 - math.floor(math.log10(size))))
        text = f"{size:.{decimals}f}"
    return f"{sign}${text}"


def usd_short(value: float | None) -> str:
    """Compact dollars for axis ticks: $1.2k, $3.4M, $500, $2.5, $0.05."""
    if not is_number(value):
        return DASH
    size = abs(value)
    sign = "-" if value < 0 else ""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= threshold:
            return f"{sign}${_trim(size / threshold)}{suffix}"
    if size >= 10:
        return f"{sign}${size:,.0f}"
    if size >= 1:
        return f"{sign}${_trim(size)}"
    return usd(value)


def usd_tick(value: float | None) -> str:
    """An axis tick: like usd_short, with no trailing zeros ($0.001, $0.01, $2.5k)."""
    text = usd_short(value)
    if "." in text and text[-1] == "0":
        text = text.rstrip("0").rstrip(".")
    return text


def count(value: float | None) -> str:
    """Counts and volumes: 60,000 / 2.1 M / 850."""
    if not is_number(value):
        return DASH
    if abs(value) >= 1e6:
        return f"{_trim(value / 1e6)} M"
    return f"{value:,.0f}"


def count_short(value: float | None) -> str:
    """Volumes on an axis: 60k, 2.1M."""
    if not is_number(value):
        return DASH
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{_trim(value / threshold)}{suffix}"
    return f"{value:,.0f}"


def milliseconds(value: float | None) -> str:
    """Latency: 0.8 ms / 42 ms / 1.3 s / 12 s."""
    if not is_number(value):
        return DASH
    if value >= 10_000:
        return f"{value / 1000:,.0f} s"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    if value >= 10:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def seconds(value: float | None) -> str:
    """Durations of preparation or a whole run: 0.4 s / 38 s / 4 min 10 s / 2 h 5 min."""
    if not is_number(value):
        return DASH
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def months(value: float | None) -> str:
    if not is_number(value):
        return DASH
    return f"{_trim(value)} month" + ("" if value == 1 else "s")


class QualityScale:
    """How one report prints its metric: as percentages when every value lies in [0, 1] (all the
    built-in metrics), else as plain numbers (a custom metric with its own range). One scale per
    report, so a table never mixes "91.3%" and "0.913"."""

    def __init__(self, values: list[float]):
        self.percent = all(0.0 <= v <= 1.0 for v in values if is_number(v))

    def value(self, value: float | None) -> str:
        if not is_number(value):
            return DASH
        return f"{value * 100:.1f}%" if self.percent else f"{value:.3g}"

    def interval(self, low: float | None, high: float | None) -> str:
        if not (is_number(low) and is_number(high)):
            return ""
        if self.percent:
            return f"{low * 100:.1f}–{high * 100:.1f}"
        return f"{low:.3g}–{high:.3g}"

    def delta(self, value: float | None) -> str:
        """A difference of two qualities: percentage points for percentages."""
        if not is_number(value):
            return DASH
        if self.percent:
            return f"{value * 100:+.1f} pp"
        return f"{value:+.3g}"

    def delta_interval(self, low: float | None, high: float | None) -> str:
        if not (is_number(low) and is_number(high)):
            return ""
        if self.percent:
            return f"{low * 100:+.1f} to {high * 100:+.1f}"
        return f"{low:+.3g} to {high:+.3g}"

    def axis(self, value: float) -> str:
        return f"{value * 100:.0f}%" if self.percent else f"{value:.3g}"


def p_value(value: float | None) -> str:
    if not is_number(value):
        return DASH
    if value < 0.001:
        return "< 0.001"
    return f"{value:.3f}"


def timestamp(value: str | datetime | None) -> str:
    """An ISO time as '2026-11-03 14:05 UTC'; text that is not ISO is shown as given."""
    if value is None:
        return DASH
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    zone = value.tzname() or ""
    return f"{value:%Y-%m-%d %H:%M} {'UTC' if zone in ('UTC', 'UTC+00:00') else zone}".strip()


def _trim(value: float) -> str:
    """1.0 -> '1', 2.14 -> '2.1', 12.6 -> '13': two significant digits below 10, integers above."""
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}".rstrip("0").rstrip(".")
