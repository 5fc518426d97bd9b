"""Which arms a bake-off runs: from arm kinds and model specs to arm instances, cheapest first.

Cheap arms run first so that a tight time budget still yields the baselines: the embedding
classifier (seconds), then zero-shot, then few-shot per model, then the arms that train.

Each arm kind is one entry of `ARM_KINDS` (the order is the run order): whether it applies to
the task kind, whether it runs once per model, and how to build it. Arm modules are imported
lazily so that planning never loads torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tunewise.arms.base import Arm
from tunewise.errors import TunewiseError
from tunewise.task.card import Kind, TaskCard

DEFAULT_MODELS = ("smollm2-135m-instruct",)


@dataclass(frozen=True)
class PlanOptions:
    """Settings that shape the planned arms (from the CLI)."""

    shots: int = 5  # examples per few-shot prompt
    extra: dict[str, dict[str, object]] = field(default_factory=dict)  # arm-kind settings (--set), by kind
    models: tuple[str, ...] = ()  # the --models list (set by plan_arms): the cascade pairs its first and last


@dataclass(frozen=True)
class ArmKind:
    """One kind of arm, as the planner sees it."""

    #: Builds the arm: (model spec or None, the card, plan options) -> Arm.
    build: Callable[[str | None, TaskCard, PlanOptions], Arm]
    per_model: bool = True  # one arm per model spec (False: one arm, no LLM of its own)
    task_kinds: frozenset[Kind] | None = None  # None: every task kind
    help: str = ""


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_settings(assignments: Sequence[str]) -> dict[str, dict[str, object]]:
    """``KIND.FIELD=VALUE`` assignments (``--set``) -> ``{kind: {field: value}}``.

    FIELD may go deeper (``lora.settings.epochs=2`` sets ``settings={"epochs": 2}``); VALUE is
    read as YAML, so numbers, booleans, lists (``[50, 100]``) and null come out typed.
    """
    import yaml

    settings: dict[str, dict[str, object]] = {}
    for assignment in assignments:
        path, equals, text = assignment.partition("=")
        kind, *keys = [part.strip() for part in path.split(".")]
        if not equals or not keys or not all(keys):
            raise TunewiseError(f"cannot read the setting {assignment!r}", where="--set",
                                fix="write KIND.FIELD=VALUE, e.g. --set lora.max_train_examples=1000")
        if kind not in ARM_KINDS:
            raise TunewiseError(f"unknown arm kind {kind!r} in {assignment!r}", where="--set",
                                fix=f"choose from {', '.join(ARM_KINDS)}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
            if isinstance(value, str) and _NUMBER.fullmatch(value):
                value = float(value)  # YAML 1.1 reads 2e-4 as a string; a learning rate is written so
        except yaml.YAMLError as error:
            raise TunewiseError(f"the value of {path} is not valid YAML: {error}", where=f"--set {path}",
                                fix="quote strings with commas or colons, write lists as [a, b]") from None
        target = settings.setdefault(kind, {})
        for key in keys[:-1]:
            inner = target.setdefault(key, {})
            if not isinstance(inner, dict):
                raise TunewiseError(f"{path} sets inside {key!r}, which is already set to a value",
                                    where=f"--set {path}", fix="set the field once")
            target = inner
        target[keys[-1]] = value
    return settings


def _zero_shot(model, card, options):
    from tunewise.arms.zero_shot import ZeroShot

    return ZeroShot(model=model, **options.extra.get("zero_shot", {}))


def _few_shot(selection: str):
    def build(model, card, options):
        from tunewise.arms.few_shot import FewShot

        kind = f"few_shot_{selection}"
        return FewShot(model=model, k=options.shots, selection=selection, **options.extra.get(kind, {}))

    return build


def _embed_classifier(model, card, options):
    from tunewise.arms.embed_classifier import EmbedClassifier

    return EmbedClassifier(**options.extra.get("embed_classifier", {}))


def _rag(model, card, options):
    from tunewise.arms.rag import Rag, rag_folder

    return Rag(model=model, folder=rag_folder(card), **dict(options.extra.get("rag") or {}))  # extra["rag"]: k, ...


def _cascade(model, card, options):
    from tunewise.arms.cascade import build_cascade

    return build_cascade(card, options, options.models or DEFAULT_MODELS)


def _lora(model, card, options):
    from tunewise.arms.lora import Lora

    return Lora(model=model, **dict(options.extra.get("lora") or {}))  # extra["lora"]: settings, max_train_examples


def _rag_lora(model, card, options):
    from tunewise.arms.rag import rag_folder
    from tunewise.arms.rag_lora import RagLora

    return RagLora(model=model, folder=rag_folder(card), **dict(options.extra.get("rag_lora") or {}))


def _distill(model, card, options):
    from tunewise.arms.distill import Distill

    # extra["distill"]: teacher, pool, ...; the teacher's arm is built with the other arms' settings.
    teacher_options = {"shots": options.shots, **{k: v for k, v in options.extra.items() if k != "distill"}}
    return Distill(model=model, teacher_options=teacher_options, **dict(options.extra.get("distill") or {}))


def _lora_curve(model, card, options):
    from tunewise.arms.learning_curve import LearningCurve

    return LearningCurve(model=model, **dict(options.extra.get("lora_curve") or {}))  # extra["lora_curve"]: sizes, ...


# The run order: cheap baselines first, training arms last.
ARM_KINDS: dict[str, ArmKind] = {
    "embed_classifier": ArmKind(_embed_classifier, per_model=False, task_kinds=frozenset({Kind.classify}),
                                help="logistic regression on sentence embeddings: do you need an LLM at all?"),
    "zero_shot": ArmKind(_zero_shot, help="the instruction and the answer format, no examples"),
    "few_shot_random": ArmKind(_few_shot("random"), help="k training examples drawn at random"),
    "few_shot_nearest": ArmKind(_few_shot("nearest"), help="the k training examples nearest the input"),
    # Retrieval runs by default where answers live in documents (qa, generate); `--arms rag`
    # adds it to a classify or extract task whose card names a knowledge folder.
    "rag": ArmKind(_rag, task_kinds=frozenset({Kind.qa, Kind.generate}),
                   help="retrieve chunks of the card's `knowledge` documents, answer from them with citations"),
    "lora": ArmKind(_lora, help="a LoRA adapter trained on the train split (local models), answered like zero-shot"),
    "rag_lora": ArmKind(_rag_lora, task_kinds=frozenset({Kind.qa, Kind.generate}),
                        help="LoRA trained on the RAG prompts (retrieved chunks included), answering with them"),
    # After lora: the default teacher is this bake-off's best fine-tune of a larger model (its
    # adapter is reused); the curve last of the training arms, as it runs as many sizes as fit.
    "distill": ArmKind(_distill, help="a teacher (default: the best larger fine-tune) labels inputs; the model "
                       "is LoRA-tuned on the labels it is confident of"),
    "lora_curve": ArmKind(_lora_curve, help="LoRA on 50, 100, 250, 500, 1000 and all examples: what more data buys"),
    # Last: it runs two other arms. Default pairing and settings: arms/cascade.py build_cascade.
    "cascade": ArmKind(_cascade, per_model=False,
                       help="a cheap first stage answers; a larger model answers only what it is unsure of"),
}


def arm_kinds_for(card: TaskCard) -> list[str]:
    """The arm kinds that apply to the card's task kind, in run order."""
    return [name for name, kind in ARM_KINDS.items() if kind.task_kinds is None or card.kind in kind.task_kinds]


def plan_arms(card: TaskCard, arms: Sequence[str] | None = None, models: Sequence[str] | None = None,
              *, shots: int = 5, options: PlanOptions | None = None) -> list[Arm]:
    """Arm instances for ``arms`` on ``models``, in run order.

    ``arms``: kinds (default: all that apply to the task), each run on every model of ``models``,
    or ``KIND@MODEL`` to run a kind on that one model only (``rag@gemma3-270m``), so that a
    costly arm need not run on every model the cheap ones compare.
    """
    options = options or PlanOptions(shots=shots)
    models = list(models) if models else list(DEFAULT_MODELS)
    options = replace(options, models=tuple(models))
    wanted: dict[str, list[str]] = {}  # kind -> its models, in the order given
    for entry in arms or arm_kinds_for(card):
        name, _, model = entry.partition("@")  # a model spec may hold an @ itself: openai:m@URL
        if name not in ARM_KINDS:
            raise TunewiseError(f"unknown arm {name!r}", where="--arms", fix=f"choose from {', '.join(ARM_KINDS)}")
        if model and not ARM_KINDS[name].per_model:
            raise TunewiseError(f"the arm {name} runs on no language model, yet {entry!r} names one", where="--arms",
                                fix=f"write just {name}")
        chosen = wanted.setdefault(name, [])
        chosen.extend(m for m in ([model] if model else models) if m not in chosen)
    planned: list[Arm] = []
    for name, kind in ARM_KINDS.items():
        if name not in wanted:
            continue
        try:
            if kind.per_model:
                planned.extend(kind.build(model, card, options) for model in wanted[name])
            else:
                planned.append(kind.build(None, card, options))
        except TypeError as error:  # a --set field the arm does not have
            if name not in options.extra:
                raise
            raise TunewiseError(f"{name}: {error}", where=f"--set {name}.*",
                                fix=f"see the fields of the {name} arm in `tunewise bakeoff --help-arms`") from None
    return planned
