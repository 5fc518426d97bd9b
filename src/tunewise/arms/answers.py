"""How a prompting arm turns prompts into task answers: one way per task kind.

classify   Never parses free text. The label set is scored with ``backend.score_options``
           (the log-probability of each label as the whole answer), so the answer is always a
           valid label. The softmax over the labels gives a confidence and a margin, recorded in
           ``Prediction.extra`` for the cascade arm to route on. A local backend finds the best
           label exactly but, by default, scores the others only until they cannot win (an upper
           bound each): the confidence is then a lower bound of the exact one (an arm routing on
           it errs towards "unsure"), and ``extra["bounded_labels"]`` counts the labels so
           scored. ``exact_scores=True`` on the plan asks for every label in full.
extract    Generates with ``json_mode`` and validates against the card's JSON Schema, with no
           repair: no closing of brackets, no fixing of quotes, no dropping of trailing prose.
           ``valid`` is "parsed as a JSON object and schema-valid"; the valid fraction of the
           predictions is the repair-free validity rate (``json_validity_rate``).
           One wrapper is taken off, and reported: a markdown code fence around the whole reply
           (```json ... ```). Chat models write one out of habit, and an OpenAI-compatible
           server honouring json_mode never does, so counting it as a failure would measure the
           habit rather than the extraction. ``extra["fenced"]`` says it happened, and
           ``json_validity_rate(..., count_fenced=False)`` gives the strict rate without it.
           An answer that parses is re-written as compact JSON, the form the loader gives the
           references (and so the few-shot examples) - the metric parses both, so the spelling
           only matters for reading and comparing outputs by eye. An answer that does not parse
           keeps the raw text as output, so the metric sees exactly what the model wrote. NaN
           and Infinity, which Python's json accepts and JSON does not, do not parse.
generate   The text, stripped.
qa         The text up to the first line break, stripped: answers are short, and a model that
           goes on to explain itself must not dilute token F1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tunewise.arms.base import Prediction
from tunewise.models.base import (
    Backend,
    Chat,
    GenerateOptions,
    Generation,
    OptionScores,
)
from tunewise.task.card import Kind
from tunewise.task.dataset import Dataset

DEFAULT_MAX_NEW_TOKENS = 256  # when there are no training outputs to size answers by
MIN_NEW_TOKENS = 16
MAX_NEW_TOKENS = 1024

STOPS: dict[Kind, tuple[str, ...]] = {
    # A JSON object never needs a blank line; prose after the object usually follows one.
    Kind.extract: ("\n\n",),
    Kind.qa: ("\n",),
    Kind.generate: (),
}

_FENCE = re.compile(r"\A```[A-Za-z0-9_+-]*[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)


# -- what to ask the backend ----------------------------------------------------------------


@dataclass(frozen=True)
class AnswerPlan:
    """How answers are obtained for one task: the kind, the label set or schema, the generation
    settings. Everything here changes answers, so all of it goes into the candidate's config."""

    kind: Kind
    labels: tuple[str, ...] = ()
    schema: Mapping[str, Any] | None = field(default=None, hash=False)
    # classify: score every label in full, for exact confidences (a teacher whose confident
    # labels are kept, a cascade's threshold tuning); else only the best exactly (faster).
    exact_scores: bool = False
    generation: GenerateOptions | None = None  # None for classify: nothing is generated

    @classmethod
    def for_dataset(cls, dataset: Dataset, count_tokens) -> AnswerPlan:
        """The plan for a task, with answers sized by the longest reference in its training data."""
        card = dataset.card
        if card.kind is Kind.classify:
            return cls(kind=Kind.classify, labels=tuple(dataset.labels or ()))
        references = [answer for example in dataset.train for answer in example.answers]
        generation = GenerateOptions(
            max_new_tokens=answer_token_limit(references, count_tokens),
            stop=STOPS[card.kind],
            json_mode=card.kind is Kind.extract,
        )
        schema = card.schema_dict() if card.kind is Kind.extract else None
        return cls(kind=card.kind, schema=schema, generation=generation)

    def config(self) -> dict[str, Any]:
        if self.generation is None:
            return {"kind": self.kind.value, "answer": "option_scores", "exact_label_scores": self.exact_scores}
        return {
            "kind": self.kind.value,
            "answer": "generate",
            "max_new_tokens": self.generation.max_new_tokens,
            "stop": list(self.generation.stop),
            "json_mode": self.generation.json_mode,
        }

    @cached_property
    def validator(self):
        """The JSON Schema validator (None without a schema). No format checker, as in the
        json_validity metric, so ``Prediction.valid`` and that metric always agree."""
        if self.schema is None:
            return None
        import jsonschema

        return jsonschema.validators.validator_for(self.schema)(self.schema)


def answer_token_limit(references: Iterable[str], count_tokens) -> int:
    """max_new_tokens from the longest reference answer: twice it (a model's spacing and key
    order differ from the data's, and a cut-off JSON object is invalid), plus a little."""
    longest = max((count_tokens(text) for text in references), default=None)
    if longest is None:
        return DEFAULT_MAX_NEW_TOKENS
    return max(MIN_NEW_TOKENS, min(MAX_NEW_TOKENS, 2 * longest + 16))


def answer_batch(backend: Backend, prompts: Sequence[Chat], plan: AnswerPlan) -> list[Prediction]:
    """One backend call for the whole batch; predictions in the order of ``prompts``."""
    if plan.kind is Kind.classify:
        # Only a backend that can bound scores takes the flag; the others always score in full.
        options = {"exact": True} if plan.exact_scores and _takes_exact_flag(backend) else {}
        return [choose_label(scores, plan.labels) for scores in backend.score_options(prompts, plan.labels, **options)]
    generations = backend.generate(prompts, plan.generation)
    if plan.kind is Kind.extract:
        return [json_prediction(g, plan.validator) for g in generations]
    if plan.kind is Kind.qa:
        return [text_prediction(g, short_answer(g.text)) for g in generations]
    return [text_prediction(g, g.text.strip()) for g in generations]


# -- classify -----------------------------------------------------------------------------


def choose_label(scores: OptionScores, labels: Sequence[str]) -> Prediction:
    """The top-scored label, with the softmax over the labels' log-probabilities.

    extra: ``confidence`` (the chosen label's share), ``margin`` (its share minus the runner-up's:
    near 0 when the model hesitates between two labels), ``runner_up``, and ``logprob`` (of the
    chosen label as the whole answer; None when no label was possible). All finite, so they
    store as plain JSON. When some labels carry only an upper bound (see the module doc),
    ``bounded_labels`` counts them and ``confidence`` is a lower bound.
    """
    shares = softmax(scores.logprobs)
    best = scores.best
    ranked = sorted(range(len(labels)), key=lambda i: (-shares[i], i))
    runner = ranked[1] if len(ranked) > 1 else None
    logprob = scores.logprobs[best]
    extra = {
        "confidence": shares[best],
        "margin": shares[best] - (shares[runner] if runner is not None else 0.0),
        "runner_up": labels[runner] if runner is not None else None,
        "logprob": logprob if math.isfinite(logprob) else None,
    }
    exact = getattr(scores, "exact", None)  # only backends that bound scores say which are exact
    if exact is not None:
        extra["bounded_labels"] = sum(not e for e in exact)
    return Prediction(output=labels[best], usage=scores.usage, extra=extra)


def _takes_exact_flag(backend: Backend) -> bool:
    import inspect

    return "exact" in inspect.signature(backend.score_options).parameters


def softmax(logprobs: Sequence[float]) -> list[float]:
    """Normalised shares; uniform when every option is impossible (all -inf)."""
    top = max(logprobs)
    if not math.isfinite(top):
        return [1.0 / len(logprobs)] * len(logprobs)
    weights = [math.exp(value - top) for value in logprobs]
    total = sum(weights)
    return [weight / total for weight in weights]


# -- extract ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonAnswer:
    """A reply read as a JSON object: what the prediction records."""

    output: str  # compact JSON when it parsed as an object, else the reply as written
    valid: bool  # an object, and schema-valid when there is a schema
    fenced: bool  # a markdown code fence around the whole reply was taken off
    error: str | None  # why it is not valid


def read_json_answer(text: str, validator=None) -> JsonAnswer:
    """Parse a reply as one JSON object and validate it, repairing nothing (see the module doc)."""
    body = text.strip()
    fence = _FENCE.match(body)
    if fence:
        body = fence["body"].strip()
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        return JsonAnswer(text, False, bool(fence), f"not JSON: {error.msg} at character {error.pos}")
    except ValueError as error:
        return JsonAnswer(text, False, bool(fence), f"not JSON: {error}")
    if not isinstance(value, dict):
        return JsonAnswer(text, False, bool(fence), f"a JSON {type(value).__name__}, not an object")
    output = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if validator is not None:
        problem = _schema_problem(validator, value)
        if problem:
            return JsonAnswer(output, False, bool(fence), problem)
    return JsonAnswer(output, True, bool(fence), None)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _schema_problem(validator, value: dict) -> str | None:
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"schema: {where}: {error.message}"


def json_prediction(generation: Generation, validator=None) -> Prediction:
    answer = read_json_answer(generation.text, validator)
    extra: dict[str, Any] = {"fenced": answer.fenced, "finish_reason": generation.finish_reason}
    if answer.error:
        extra["error"] = answer.error
    raw = generation.text if generation.text != answer.output else None
    return Prediction(output=answer.output, usage=generation.usage, valid=answer.valid, raw=raw, extra=extra)


def json_validity_rate(predictions: Iterable[Prediction], *, count_fenced: bool = True) -> float:
    """The repair-free JSON validity rate of an extract arm's predictions.

    ``count_fenced=False`` also counts a reply wrapped in a markdown code fence as invalid: the
    strictest reading, for a consumer that parses the raw reply as it comes.
    """
    outcomes = [p.valid and (count_fenced or not p.extra.get("fenced", False)) for p in predictions]
    return sum(outcomes) / len(outcomes) if outcomes else math.nan


# -- generate / qa --------------------------------------------------------------------------


# Base models continue a document: after a question they often write "Answer: ..." (Gemma 3
# 270M did on most SQuAD questions), a label, not part of the answer.
_ANSWER_LEAD = re.compile(r"^(?:answer|a)\s*:\s*", re.IGNORECASE)


def short_answer(text: str) -> str:
    """A qa answer: the reply up to its first line break, without an "Answer:" lead."""
    return _ANSWER_LEAD.sub("", text.strip(), count=1).strip().split("\n", 1)[0].strip()


def text_prediction(generation: Generation, output: str) -> Prediction:
    raw = generation.text if generation.text != output else None
    return Prediction(
        output=output, usage=generation.usage, raw=raw, extra={"finish_reason": generation.finish_reason}
    )
