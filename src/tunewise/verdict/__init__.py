"""The verdict: what to do about a task, why, what it costs over time, and what would change
the answer; and what changed between two runs.

    from tunewise.verdict import build_verdict, compare_runs

    verdict = build_verdict(store, run_id)          # Verdict; .to_dict() feeds the report
    comparison = compare_runs(store, run_a, run_b)  # RunComparison; .to_dict()

Modules: ``evidence`` (a stored run read back), ``pricing`` (what a request costs), ``tco``
(total cost of ownership, break-even, sensitivity), ``curves`` (stored learning curves),
``decide`` (the recommendation), ``assemble`` (the Verdict document), ``compare`` (two runs),
``words`` (numbers in sentences); ``report/`` renders the verdict.

Names are imported on first use, so ``import tunewise.verdict.report`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunewise.verdict.assemble import Verdict, build_verdict
    from tunewise.verdict.compare import RunComparison, compare_runs
    from tunewise.verdict.evidence import VerdictError
    from tunewise.verdict.tco import KindCosts, TcoAssumptions

_EXPORTS = {
    "Verdict": "tunewise.verdict.assemble",
    "build_verdict": "tunewise.verdict.assemble",
    "RunComparison": "tunewise.verdict.compare",
    "compare_runs": "tunewise.verdict.compare",
    "VerdictError": "tunewise.verdict.evidence",
    "KindCosts": "tunewise.verdict.tco",
    "TcoAssumptions": "tunewise.verdict.tco",
}

__all__ = ["KindCosts", "RunComparison", "TcoAssumptions", "Verdict", "VerdictError", "build_verdict",
           "compare_runs"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tunewise.verdict' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
