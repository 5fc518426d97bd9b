"""Scoring: metrics as per-example sufficient statistics, and the statistics on top of them
(bootstrap confidence intervals, paired comparisons, Holm correction)."""

from tunewise.scoring.metrics import (
    BUILTIN_METRICS,
    FieldF1,
    MacroF1,
    Metric,
    PerExampleMetric,
    field_report,
    per_example_scores,
    resolve_metric,
)
from tunewise.scoring.stats import (
    Comparison,
    Estimate,
    bootstrap_ci,
    bootstrap_ci_from_stats,
    holm,
    holm_adjust,
    paired_comparison,
    paired_comparison_from_stats,
)

__all__ = [
    "BUILTIN_METRICS",
    "Comparison",
    "Estimate",
    "FieldF1",
    "MacroF1",
    "Metric",
    "PerExampleMetric",
    "bootstrap_ci",
    "bootstrap_ci_from_stats",
    "field_report",
    "holm",
    "holm_adjust",
    "paired_comparison",
    "paired_comparison_from_stats",
    "per_example_scores",
    "resolve_metric",
]
