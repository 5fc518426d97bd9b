"""Which arms a bake-off runs: from arm kinds and model specs to arm instances, cheapest first.

Cheap arms run first so that a tight time budget still yields the baselines: the embedding
classifier (seconds), then zero-shot, then few-shot per model, then the arms that train.

Each arm kind is one entry of `ARM_KINDS` (the order is the run order): whether it applies to
the task kind, whether it runs once per model, and how to build it. Arm modules are imported
lazily so that planning never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tunewise.arms.base import Arm
from tunewise.errors import TunewiseError
from tunewise.task.card import Kind, TaskCard

DEFAULT_MODELS = ("smollm2-135m-instruct",)


@dataclass(frozen=True)
class PlanOptions:
    """Settings that shape the planned arms (from the CLI)."""

    shots: int = 5  # examples per few-shot prompt
    extra: dict[str, object] = field(default_factory=dict)  # arm-specific settings, by name


@dataclass(frozen=True)
class ArmKind:
    """One kind of arm, as the planner sees it."""

    #: Builds the arm: (model spec or None, the card, plan options) -> Arm.
    build: Callable[[str | None, TaskCard, PlanOptions], Arm]
    per_model: bool = True  # one arm per model spec (False: one arm, no LLM of its own)
    task_kinds: frozenset[Kind] | None = None  # None: every task kind
    help: str = ""


def _zero_shot(model, card, options):
    from tunewise.arms.zero_shot import ZeroShot

    return ZeroShot(model=model)


def _few_shot(selection: str):
    def build(model, card, options):
        from tunewise.arms.few_shot import FewShot

        return FewShot(model=model, k=options.shots, selection=selection)

    return build


def _embed_classifier(model, card, options):
    from tunewise.arms.embed_classifier import EmbedClassifier

    return EmbedClassifier()


# The run order: cheap baselines first, training arms last.
ARM_KINDS: dict[str, ArmKind] = {
    "embed_classifier": ArmKind(_embed_classifier, per_model=False, task_kinds=frozenset({Kind.classify}),
                                help="logistic regression on sentence embeddings: do you need an LLM at all?"),
    "zero_shot": ArmKind(_zero_shot, help="the instruction and the answer format, no examples"),
    "few_shot_random": ArmKind(_few_shot("random"), help="k training examples drawn at random"),
    "few_shot_nearest": ArmKind(_few_shot("nearest"), help="the k training examples nearest the input"),
}


def arm_kinds_for(card: TaskCard) -> list[str]:
    """The arm kinds that apply to the card's task kind, in run order."""
    return [name for name, kind in ARM_KINDS.items() if kind.task_kinds is None or card.kind in kind.task_kinds]


def plan_arms(card: TaskCard, arms: Sequence[str] | None = None, models: Sequence[str] | None = None,
              *, shots: int = 5, options: PlanOptions | None = None) -> list[Arm]:
    """Arm instances for ``arms`` (kinds; default: all that apply) on ``models``, in run order."""
    options = options or PlanOptions(shots=shots)
    chosen = list(arms) if arms else arm_kinds_for(card)
    unknown = [a for a in chosen if a not in ARM_KINDS]
    if unknown:
        raise TunewiseError(f"unknown arm {unknown[0]!r}", where="--arms",
                            fix=f"choose from {', '.join(ARM_KINDS)}")
    models = list(models) if models else list(DEFAULT_MODELS)
    planned: list[Arm] = []
    for name, kind in ARM_KINDS.items():
        if name not in chosen:
            continue
        if kind.per_model:
            planned.extend(kind.build(model, card, options) for model in models)
        else:
            planned.append(kind.build(None, card, options))
    return planned
