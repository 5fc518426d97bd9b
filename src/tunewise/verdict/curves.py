"""Learning curves stored with a run, read back for the verdict: the fit, its words, and how
many more labelled examples the quality bar would take.

A curve is a run artifact of kind ``learning_curve`` whose content is
``{"arm": name, "metric": name, "points": [{"n", "value", "low", "high", ...}, ...]}``, and
optionally the runner's own ``"fit"`` (``CurveFit.to_dict()``) and ``"text"``. Without a stored
fit, the points are fitted here (``tunewise.train.curve``), each drawn within its interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.train.curve import CurvePoint, describe_curve, fit_learning_curve


@dataclass
class CurveSummary:
    arm: str
    points: list[dict[str, Any]]  # n, value, low, high
    fit: dict[str, Any] | None
    text: str
    steepness: str  # steep | flat | uncertain | unknown
    gain_per_doubling: float | None
    labels_needed: int  # more labelled examples the fit says the bar takes (0: none, or unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "points": self.points, "fit": self.fit, "text": self.text,
                "steepness": self.steepness, "gain_per_doubling": self.gain_per_doubling,
                "labels_needed": self.labels_needed}


def _points(raw: Sequence[dict[str, Any]]) -> list[CurvePoint]:
    points = []
    for p in raw:
        try:
            n, value = int(p["n"]), float(p["value"])
        except (KeyError, TypeError, ValueError):
            continue
        low, high = float(p.get("low", value)), float(p.get("high", value))
        points.append(CurvePoint(n, value, min(low, value), max(high, value)))
    unique = {p.n: p for p in points}  # a size measured twice: the later measurement
    return sorted(unique.values(), key=lambda p: p.n)


def summarise_curve(content: dict[str, Any], metric: str, quality_bar: float | None) -> CurveSummary | None:
    """One stored curve as the verdict shows it; None if it holds no usable point."""
    points = _points(content.get("points") or [])
    if not points:
        return None
    arm = str(content.get("arm") or "learning curve")
    stored = content.get("fit") if isinstance(content.get("fit"), dict) else None
    text = content.get("text") if isinstance(content.get("text"), str) else None
    # The runner's own fit (on joint bootstrap replicates, sharper) when it was made for the same
    # bar; otherwise the points are refitted here against the card's bar.
    if stored is not None and "steepness" in stored and stored.get("quality_bar") == quality_bar and text:
        fit_dict = stored
    else:
        fit = fit_learning_curve(points, quality_bar=quality_bar)
        fit_dict = fit.to_dict()
        text = describe_curve(points, fit, metric=metric, subject=arm)
    gain = (fit_dict.get("doubling_gain") or {}).get("value") if isinstance(fit_dict.get("doubling_gain"), dict) \
        else None
    needed = 0
    reach = fit_dict.get("n_for_bar")
    if quality_bar is not None and isinstance(reach, dict) and isinstance(reach.get("value"), (int, float)):
        target = float(reach["value"])
        if math.isfinite(target):
            needed = max(0, math.ceil(target) - points[-1].n)
    return CurveSummary(
        arm=arm,
        points=[{"n": p.n, "value": p.value, "low": p.low, "high": p.high} for p in points],
        fit=fit_dict,
        text=text,
        steepness=str(fit_dict.get("steepness", "unknown")),
        gain_per_doubling=float(gain) if isinstance(gain, (int, float)) else None,
        labels_needed=needed,
    )


def summarise_curves(contents: Sequence[dict[str, Any]], metric: str, quality_bar: float | None
                     ) -> list[CurveSummary]:
    found = [summarise_curve(content, metric, quality_bar) for content in contents]
    return [curve for curve in found if curve is not None]
