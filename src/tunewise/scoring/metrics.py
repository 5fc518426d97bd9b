"""Quality metrics, each split into per-example *sufficient statistics* and an aggregate.

Every metric maps example i to a small vector ``stats[i]`` (accuracy: ``[correct]``; macro-F1:
per-label tp / fp / fn one-hots; field F1: ``[tp, fp, fn]``; token F1: ``[f1]``) and turns a
*sum* of such vectors into its value with ``aggregate(summed, n)``. Why this split: the value on
any subset or bootstrap resample is then ``aggregate(counts @ stats)``, one matrix product for
thousands of resamples at once (see ``tunewise.scoring.stats``), and ratio metrics such as
macro-F1 or micro field F1 are resampled correctly (re-aggregated, not averaged per example).

Built-in metrics and the task kinds they apply to are in ``BUILTIN_METRICS``; any other name of
the form ``package.module:function`` is a custom hook ``fn(prediction, references) -> float``,
averaged over examples. ``resolve_metric`` turns a name into a ``Metric``.

Conventions, chosen so that a report's number means one thing:
- ``references`` of an example is the tuple of accepted answers (``Example.answers``); a bare
  string is taken as the one answer. Per-example scores take the best reference.
- A ``None`` prediction (the arm produced nothing) scores as the empty string.
- Labels (classify) compare exactly after trimming surrounding whitespace: mapping free text to
  a label is the arm's job, and a sloppy output should show up as an error in the report.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import re
import string
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.errors import MetricError
from tunewise.task.card import Kind

ReferenceLike = Sequence[str] | str


# -- the Metric interface -----------------------------------------------------------------


class Metric(ABC):
    """A quality metric: per-example sufficient statistics plus an aggregate of their sum.

    Subclasses set ``name`` and ``kinds`` and implement ``stats``, ``aggregate_many`` and
    ``per_example``. All built-in metrics are "higher is better".
    """

    name: str
    kinds: frozenset[Kind]
    #: The only statistic is a 0/1 per example and the value is its mean, so a paired
    #: comparison can use McNemar's test and Cohen's h.
    binary: bool = False
    #: The value is the mean of one per-example column, so Cohen's d on per-example paired
    #: differences is a meaningful effect size. False for ratio metrics (macro-F1, field F1).
    mean_of_examples: bool = False

    @abstractmethod
    def stats(self, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]) -> np.ndarray:
        """The (n x d) matrix of per-example sufficient statistics."""

    @abstractmethod
    def aggregate_many(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Metric values for a (B x d) matrix of summed statistics, each a sum over ``n`` examples."""

    @abstractmethod
    def per_example(self, stats: np.ndarray) -> np.ndarray:
        """One number per example from its statistics (correct 0/1, token F1, field F1, ...)."""

    def aggregate(self, stats_sum: np.ndarray, n: int) -> float:
        """The metric's value from the summed statistics of ``n`` examples."""
        summed = np.asarray(stats_sum, dtype=float).reshape(1, -1)
        return float(self.aggregate_many(summed, n)[0])

    def example_stats(self, prediction: str | None, references: ReferenceLike) -> np.ndarray:
        """Sufficient statistics of one example (a row of ``stats``)."""
        return self.stats([prediction], [references])[0]

    def score(self, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]) -> float:
        """The metric on the whole set."""
        matrix = self.stats(predictions, references_list)
        return self.aggregate(matrix.sum(axis=0), len(matrix))

    def __repr__(self) -> str:
        return f"<Metric {self.name}>"


def per_example_scores(
    metric: Metric, predictions: Sequence[str | None], references: Sequence[ReferenceLike]
) -> np.ndarray:
    """A number per example to store with each prediction (correct 0/1, token F1, field F1...)."""
    return metric.per_example(metric.stats(predictions, references))


# -- input checks shared by every metric --------------------------------------------------


def _pairs(
    metric: str, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]
) -> list[tuple[str, tuple[str, ...]]]:
    """(prediction, references) pairs with the conventions in the module docstring applied."""
    if len(predictions) != len(references_list):
        raise MetricError(
            f"{len(predictions)} predictions but {len(references_list)} reference sets",
            where=f"metric {metric}",
            fix="score each prediction against the references of the same example",
        )
    pairs = []
    for i, (prediction, references) in enumerate(zip(predictions, references_list, strict=True)):
        refs = (references,) if isinstance(references, str) else tuple(references)
        if not refs:
            raise MetricError(
                "an example has no reference answer", where=f"example #{i}",
                fix="give every example at least one expected output",
            )
        pairs.append(("" if prediction is None else str(prediction), refs))
    return pairs


def _checked_score(value: Any, metric: str, index: int) -> float:
    """A per-example score as a finite float, or a MetricError that says what came back."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if not isinstance(value, (int, float, np.integer, np.floating)):
        raise MetricError(
            f"returned {type(value).__name__} ({value!r:.40}) for example #{index}, not a number",
            where=f"metric {metric}",
            fix="return a float per example, e.g. 1.0 for right and 0.0 for wrong",
        )
    number = float(value)
    if not math.isfinite(number):
        raise MetricError(
            f"returned {number} for example #{index}", where=f"metric {metric}",
            fix="return a finite float per example",
        )
    return number


# -- metrics that are a mean of one per-example score -------------------------------------


class PerExampleMetric(Metric):
    """The mean of ``fn(prediction, references)`` over examples (statistic: ``[score]``)."""

    mean_of_examples = True

    def __init__(
        self,
        name: str,
        fn: Callable[[str, list[str]], float],
        kinds: Iterable[Kind] = tuple(Kind),
        *,
        binary: bool = False,
    ):
        self.name = name
        self.kinds = frozenset(kinds)
        self.binary = binary
        self._fn = fn

    def stats(self, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]) -> np.ndarray:
        pairs = _pairs(self.name, predictions, references_list)
        scores = [_checked_score(self._call(p, refs, i), self.name, i) for i, (p, refs) in enumerate(pairs)]
        return np.asarray(scores, dtype=float).reshape(-1, 1)

    def _call(self, prediction: str, references: tuple[str, ...], index: int) -> Any:
        return self._fn(prediction, list(references))

    def aggregate_many(self, sums: np.ndarray, n: int) -> np.ndarray:
        if n == 0:
            return np.full(len(sums), np.nan)
        return sums[:, 0] / n

    def per_example(self, stats: np.ndarray) -> np.ndarray:
        return stats[:, 0].copy()


def _label_correct(prediction: str, references: list[str]) -> float:
    return float(prediction.strip() in {r.strip() for r in references})


# SQuAD's official normalisation (v1.1 evaluate script), kept verbatim so numbers compare
# with published ones: ASCII punctuation only, English articles only.
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, references: list[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference."""
    normalised = normalize_answer(prediction)
    return float(any(normalised == normalize_answer(r) for r in references))


def _token_f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    # SQuAD v2.0 rule for empty answers: two empties agree (v1.1 scored them 0).
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)
    same = sum((Counter(prediction_tokens) & Counter(reference_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1_score(prediction: str, references: list[str]) -> float:
    """SQuAD token F1 against the best reference."""
    tokens = normalize_answer(prediction).split()
    return max(_token_f1(tokens, normalize_answer(r).split()) for r in references)


class _UnicodeRougeTokenizer:
    """rouge-score's default tokenizer, except that non-ASCII letters survive.

    The default replaces everything outside ``[a-z0-9]`` with spaces, so "café" becomes
    "caf" and text in Greek or Cyrillic scores 0. On ASCII text this gives the same tokens.
    """

    _SEPARATORS = re.compile(r"[\W_]+")

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        words = self._SEPARATORS.sub(" ", text.lower()).split()
        # Like rouge-score: only words longer than 3 characters are stemmed.
        return [self._stemmer.stem(w) if len(w) > 3 else w for w in words]


class _RougeL:
    """ROUGE-L F-measure (rouge-score, Porter stemming), best over references."""

    def __init__(self) -> None:
        self._scorer = None

    def __call__(self, prediction: str, references: list[str]) -> float:
        if self._scorer is None:  # importing rouge-score pulls in nltk: only when used
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnicodeRougeTokenizer())
        return max(self._scorer.score(r, prediction)["rougeL"].fmeasure for r in references)


# -- extraction: JSON validity and per-field F1 -------------------------------------------


def _parse_object(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text``, or None when it is not valid JSON or not an object."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class _JsonValidity:
    """1.0 when the prediction is a JSON object (satisfying the schema, when one is given)."""

    def __init__(self, schema: Mapping[str, Any] | None = None):
        self._validator = None
        if schema is not None:
            import jsonschema

            self._validator = jsonschema.validators.validator_for(schema)(schema)

    def __call__(self, prediction: str, references: list[str]) -> float:
        value = _parse_object(prediction)
        if value is None:
            return 0.0
        return float(self._validator is None or self._validator.is_valid(value))


def normalize_value(value: Any) -> str:
    """A JSON value as comparable text: case and spacing folded, so 5, 5.0 and "5" agree."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return " ".join(value.casefold().split())
    if value is None:
        return "null"
    if isinstance(value, dict):
        return json.dumps({str(k): normalize_value(v) for k, v in sorted(value.items())}, ensure_ascii=False)
    return json.dumps([normalize_value(v) for v in value], ensure_ascii=False)


def flatten_fields(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Counter[str]]:
    """Fields of a JSON object as dotted keys, each a multiset of normalised values.

    Nested objects flatten to ``outer.inner``; a list is a multiset of its items (order does
    not matter, repeats do); ``null`` means absent, so a model that writes every field and
    nulls the missing ones is not penalised.
    """
    fields: dict[str, Counter[str]] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            fields.update(flatten_fields(value, prefix=f"{name}."))
        elif isinstance(value, list):
            items = Counter(normalize_value(v) for v in value if v is not None)
            if items:
                fields[name] = items
        elif value is not None:
            fields[name] = Counter([normalize_value(value)])
    return fields


def _field_counts(predicted: dict[str, Counter[str]], expected: dict[str, Counter[str]]) -> dict[str, np.ndarray]:
    """Per field: [tp, fp, fn], counting each value of a list field once per occurrence."""
    counts = {}
    for name in predicted.keys() | expected.keys():
        pred, ref = predicted.get(name, Counter()), expected.get(name, Counter())
        tp = sum((pred & ref).values())
        counts[name] = np.array([tp, sum(pred.values()) - tp, sum(ref.values()) - tp], dtype=float)
    return counts


def _f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, empty: float) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn), written so that tp = 0 needs no precision; ``empty`` when 0/0."""
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-300), empty)


def _reference_fields(reference: str, index: int) -> dict[str, Counter[str]]:
    value = _parse_object(reference)
    if value is None:
        raise MetricError(
            f"reference {reference!r:.60} is not a JSON object", where=f"example #{index}",
            fix="extract references must be JSON object strings, e.g. {\"name\": \"Ada\"}",
        )
    return flatten_fields(value)


def _best_field_counts(prediction: str, references: tuple[str, ...], index: int) -> dict[str, np.ndarray]:
    """Field counts against the reference the prediction matches best (by example F1)."""
    parsed = _parse_object(prediction)
    predicted = flatten_fields(parsed) if parsed is not None else {}
    best, best_f1 = None, -1.0
    for reference in references:
        counts = _field_counts(predicted, _reference_fields(reference, index))
        total = sum(counts.values(), np.zeros(3))
        f1 = float(_f1_from_counts(*total, empty=1.0))
        if f1 > best_f1:
            best, best_f1 = counts, f1
    return best


class FieldF1(Metric):
    """Micro-averaged F1 over the fields of JSON objects (statistics: ``[tp, fp, fn]``).

    An invalid prediction predicts no fields: all its reference fields are misses. An example
    with no fields expected and none predicted counts as perfect.
    """

    name = "field_f1"
    kinds = frozenset({Kind.extract})

    def stats(self, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]) -> np.ndarray:
        rows = [
            sum(_best_field_counts(p, refs, i).values(), np.zeros(3))
            for i, (p, refs) in enumerate(_pairs(self.name, predictions, references_list))
        ]
        return np.asarray(rows, dtype=float).reshape(-1, 3)

    def aggregate_many(self, sums: np.ndarray, n: int) -> np.ndarray:
        return _f1_from_counts(sums[:, 0], sums[:, 1], sums[:, 2], empty=1.0)

    def per_example(self, stats: np.ndarray) -> np.ndarray:
        return _f1_from_counts(stats[:, 0], stats[:, 1], stats[:, 2], empty=1.0)


def field_report(
    predictions: Sequence[str | None], references: Sequence[ReferenceLike]
) -> dict[str, dict[str, float | int]]:
    """Per extracted field: precision, recall, F1, support (expected values), predicted values.

    Counts are the same as ``field_f1``'s (same best reference per example), so the fields'
    tp / fp / fn add up to the overall micro field F1. 0/0 ratios are reported as 0.0; the
    support and predicted counts tell which case it is.
    """
    totals: dict[str, np.ndarray] = {}
    for i, (prediction, refs) in enumerate(_pairs("field_f1", predictions, references)):
        for name, counts in _best_field_counts(prediction, refs, i).items():
            totals[name] = totals.get(name, np.zeros(3)) + counts
    report = {}
    for name in sorted(totals):
        tp, fp, fn = totals[name]
        report[name] = {
            "precision": float(tp / (tp + fp)) if tp + fp else 0.0,
            "recall": float(tp / (tp + fn)) if tp + fn else 0.0,
            "f1": float(_f1_from_counts(tp, fp, fn, empty=0.0)),
            "support": int(tp + fn),
            "predicted": int(tp + fp),
        }
    return report


# -- classification: macro-F1 --------------------------------------------------------------


class MacroF1(Metric):
    """Unweighted mean of per-label F1 (statistics: tp, fp, fn one-hots, 3 x labels columns).

    The label set is the one given (the task's labels), else the labels in the references.
    A prediction outside the label set is a miss (fn) for the true label and a false positive
    for no label, so junk output lowers the score without inventing labels. A label with no
    true and no predicted example in a (re)sample has no F1 and is left out of that average;
    a label that occurs but is never predicted has F1 0.
    """

    name = "macro_f1"
    kinds = frozenset({Kind.classify})

    def __init__(self, labels: Sequence[str] | None = None):
        self.labels = tuple(label.strip() for label in labels) if labels else None

    def label_set(self, references_list: Sequence[ReferenceLike]) -> tuple[str, ...]:
        """The labels the statistics' columns stand for, in column order."""
        if self.labels is not None:
            return self.labels
        firsts = ((r,) if isinstance(r, str) else tuple(r) for r in references_list)
        return tuple(sorted({refs[0].strip() for refs in firsts if refs}))

    def example_stats(self, prediction: str | None, references: ReferenceLike) -> np.ndarray:
        if self.labels is None:  # one example's references are no label set
            raise MetricError(
                "macro_f1 needs the label set to give one example's statistics", where="metric macro_f1",
                fix="resolve it with labels=[...], or call stats() on all examples",
            )
        return super().example_stats(prediction, references)

    def stats(self, predictions: Sequence[str | None], references_list: Sequence[ReferenceLike]) -> np.ndarray:
        pairs = _pairs(self.name, predictions, references_list)
        labels = self.label_set(references_list)
        column = {label: j for j, label in enumerate(labels)}
        width = len(labels)
        matrix = np.zeros((len(pairs), 3 * width))
        for i, (prediction, refs) in enumerate(pairs):
            predicted = prediction.strip()
            accepted = [r.strip() for r in refs]
            true = predicted if predicted in accepted else accepted[0]
            if true not in column:
                raise MetricError(
                    f"reference label {true!r} is not in the label set", where=f"example #{i}",
                    fix="add it to the task card's `labels`, or correct the reference",
                )
            if predicted == true:
                matrix[i, column[true]] = 1  # tp
            else:
                matrix[i, 2 * width + column[true]] = 1  # fn
                if predicted in column:
                    matrix[i, width + column[predicted]] = 1  # fp
        return matrix

    def aggregate_many(self, sums: np.ndarray, n: int) -> np.ndarray:
        width = sums.shape[1] // 3
        tp, fp, fn = sums[:, :width], sums[:, width:2 * width], sums[:, 2 * width:]
        present = (tp + fp + fn) > 0
        f1 = _f1_from_counts(tp, fp, fn, empty=0.0)
        count = present.sum(axis=1)
        return np.where(count > 0, (f1 * present).sum(axis=1) / np.maximum(count, 1), np.nan)

    def per_example(self, stats: np.ndarray) -> np.ndarray:
        width = stats.shape[1] // 3
        return stats[:, :width].sum(axis=1)  # 1 where the example is a true positive


# -- names, kinds, and resolution ----------------------------------------------------------

_TEXT_KINDS = frozenset({Kind.generate, Kind.qa})

BUILTIN_METRICS: dict[str, frozenset[Kind]] = {
    "accuracy": frozenset({Kind.classify}),
    "macro_f1": frozenset({Kind.classify}),
    "json_validity": frozenset({Kind.extract}),
    "field_f1": frozenset({Kind.extract}),
    "exact_match": _TEXT_KINDS,
    "token_f1": _TEXT_KINDS,
    "rouge_l": _TEXT_KINDS,
}


def _builtin(name: str, labels: Sequence[str] | None, schema: Mapping[str, Any] | None) -> Metric:
    kinds = BUILTIN_METRICS[name]
    if name == "accuracy":
        return PerExampleMetric(name, _label_correct, kinds, binary=True)
    if name == "macro_f1":
        return MacroF1(labels)
    if name == "json_validity":
        return PerExampleMetric(name, _JsonValidity(schema), kinds, binary=True)
    if name == "field_f1":
        return FieldF1()
    if name == "exact_match":
        return PerExampleMetric(name, exact_match_score, kinds, binary=True)
    if name == "token_f1":
        return PerExampleMetric(name, token_f1_score, kinds)
    return PerExampleMetric(name, _RougeL(), kinds)


def resolve_metric(
    name: str,
    kind: Kind | str,
    *,
    labels: Sequence[str] | None = None,
    schema: Mapping[str, Any] | None = None,
) -> Metric:
    """The metric called ``name`` for a task of ``kind``.

    ``labels`` (classify) fixes macro-F1's label set; ``schema`` (extract) makes json_validity
    also require the JSON Schema. ``package.module:function`` names a custom hook.
    """
    kind = Kind(kind)
    if ":" in name:
        return _custom_metric(name)
    if name not in BUILTIN_METRICS:
        raise _unknown_metric(name, kind)
    if kind not in BUILTIN_METRICS[name]:
        applies = ", ".join(sorted(k.value for k in BUILTIN_METRICS[name]))
        raise MetricError(
            f"metric {name} applies to kind {applies}, not {kind.value}", where="metric",
            fix=f"use one of {_names_for(kind)} for a {kind.value} task",
        )
    return _builtin(name, labels, schema)


def _names_for(kind: Kind) -> str:
    return ", ".join(name for name, kinds in BUILTIN_METRICS.items() if kind in kinds)


def _unknown_metric(name: str, kind: Kind) -> MetricError:
    valid = [n for n, kinds in BUILTIN_METRICS.items() if kind in kinds]
    close = difflib.get_close_matches(name, valid, n=1) or difflib.get_close_matches(name, list(BUILTIN_METRICS), n=1)
    if close:
        hint = f"did you mean `{close[0]}`? "
    elif "." in name:
        module, _, function = name.rpartition(".")
        hint = f"a custom metric is written `{module}:{function}`; "
    else:
        hint = ""
    return MetricError(
        f"unknown metric {name!r}", where="metric",
        fix=f"{hint}valid for {kind.value}: {_names_for(kind)}, or `package.module:function` for your own",
    )


# -- custom hooks: package.module:function ----------------------------------------------------

_HOOK_SIGNATURE = "def {function}(prediction: str, references: list[str]) -> float"


def _custom_metric(spec: str) -> Metric:
    """A ``PerExampleMetric`` around the function that ``package.module:function`` names."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name.isidentifier():
        raise MetricError(
            f"custom metric {spec!r} is not of the form package.module:function", where="metric",
            fix="name the module and the function, e.g. `my_project.metrics:polite_score`",
        )
    signature = _HOOK_SIGNATURE.format(function=function_name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(f"{e.name}.")):
            raise MetricError(
                f"cannot import module {module_name!r} ({e})", where=f"metric {spec}",
                fix=f"install the package that provides {module_name}, or add its folder to PYTHONPATH",
            ) from e
        raise MetricError(  # the hook's module exists but imports something missing
            f"importing {module_name!r} failed: {e}", where=f"metric {spec}",
            fix=f"install {e.name}, which {module_name} imports",
        ) from e
    except Exception as e:  # the module exists but fails while importing
        raise MetricError(
            f"importing {module_name!r} failed: {e.__class__.__name__}: {e}", where=f"metric {spec}",
            fix=f"fix the error in {module_name} (run `python -c 'import {module_name}'` to see it)",
        ) from e
    function = getattr(module, function_name, None)
    if function is None:
        raise MetricError(
            f"module {module_name!r} has no function {function_name!r}", where=f"metric {spec}",
            fix=f"define `{signature}` in {module_name}",
        )
    if not callable(function):
        raise MetricError(
            f"{spec} is a {type(function).__name__}, not a function", where=f"metric {spec}",
            fix=f"make it a function: `{signature}`",
        )
    return _HookMetric(spec, function)


class _HookMetric(PerExampleMetric):
    """A custom hook: its exceptions become MetricErrors naming the hook and the example."""

    def __init__(self, spec: str, fn: Callable[[str, list[str]], float]):
        super().__init__(spec, fn, tuple(Kind))

    def _call(self, prediction: str, references: tuple[str, ...], index: int) -> Any:
        try:
            return self._fn(prediction, list(references))
        except Exception as e:
            raise MetricError(
                f"raised {e.__class__.__name__}: {e} on example #{index}", where=f"metric {self.name}",
                fix=f"make {self.name} handle this example; it must accept (prediction: str, references: list[str])",
            ) from e
