"""The bake-off: every arm on the same frozen test split, measured side by side."""

from tunewise.bakeoff.plan import ARM_KINDS, DEFAULT_MODELS, ArmKind, PlanOptions, plan_arms
from tunewise.bakeoff.results import ArmResult, BakeoffResult
from tunewise.bakeoff.run import BakeoffOptions, Observer, run_bakeoff, select_examples

__all__ = ["ARM_KINDS", "DEFAULT_MODELS", "ArmKind", "ArmResult", "BakeoffOptions", "BakeoffResult", "Observer", "PlanOptions",
           "plan_arms",
           "run_bakeoff", "select_examples"]
