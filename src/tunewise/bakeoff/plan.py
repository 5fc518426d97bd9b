"""Which arms a bake-off runs: from arm kinds and model specs to arm instances, cheapest first.

Cheap arms run first so that a tight time budget still yields the baselines: the embedding
classifier (seconds), then zero-shot, then few-shot per model.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunewise.arms.base import Arm
from tunewise.errors import TunewiseError
from tunewise.task.card import Kind, TaskCard

DEFAULT_MODELS = ("smollm2-135m-instruct",)

# arm kind -> does it need an LLM (one arm per model) ; in the order they run.
ARM_KINDS: dict[str, bool] = {
    "embed_classifier": False,
    "zero_shot": True,
    "few_shot_random": True,
    "few_shot_nearest": True,
}


def arm_kinds_for(card: TaskCard) -> list[str]:
    """The arm kinds that apply to the card's task kind."""
    kinds = list(ARM_KINDS)
    if card.kind is not Kind.classify:
        kinds.remove("embed_classifier")
    return kinds


def plan_arms(card: TaskCard, arms: Sequence[str] | None = None, models: Sequence[str] | None = None,
              *, shots: int = 5) -> list[Arm]:
    """Arm instances for ``arms`` (kinds; default: all that apply) on ``models``."""
    chosen = list(arms) if arms else arm_kinds_for(card)
    unknown = [a for a in chosen if a not in ARM_KINDS]
    if unknown:
        raise TunewiseError(f"unknown arm {unknown[0]!r}", where="--arms",
                            fix=f"choose from {', '.join(ARM_KINDS)}")
    models = list(models) if models else list(DEFAULT_MODELS)
    ordered = [kind for kind in ARM_KINDS if kind in chosen]
    planned: list[Arm] = []
    for kind in ordered:
        if ARM_KINDS[kind]:
            planned.extend(_llm_arm(kind, model, shots) for model in models)
        else:
            planned.append(_embedding_arm(kind))
    return planned


def _llm_arm(kind: str, model: str, shots: int) -> Arm:
    from tunewise.arms.few_shot import FewShot
    from tunewise.arms.zero_shot import ZeroShot

    if kind == "zero_shot":
        return ZeroShot(model=model)
    return FewShot(model=model, k=shots, selection=kind.removeprefix("few_shot_"))


def _embedding_arm(kind: str) -> Arm:
    from tunewise.arms.embed_classifier import EmbedClassifier

    return EmbedClassifier()
