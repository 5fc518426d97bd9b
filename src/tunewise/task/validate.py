"""Turn raw records into examples by the task card's rules, or say why a row cannot be one.

Per row, in this order (the first problem found is the one reported):

1. the input and output fields exist (``data.input_field`` / ``data.output_field``);
2. the input is a non-empty string within ``data.max_input_chars``;
3. the output fits the kind:
   - classify / generate / qa: a non-empty string; for classify with ``labels`` in the card,
     one of them;
   - extract: a JSON object, given either as a JSON string or (in JSONL) as an object. It is
     normalised to compact JSON with the keys in the order given, so equal objects compare
     equal as strings. With an ``output_schema`` it must satisfy the schema;
   - the (normalised) output within ``data.max_output_chars``;
4. qa only: an optional ``answers`` field, a list of every accepted answer, becomes
   ``Example.references`` (the output is added first when the list leaves it out, because
   the expected output is by definition accepted).

Every other field is kept, untouched, in ``Example.meta``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Example
from tunewise.task.findings import (
    EMPTY_INPUT,
    EMPTY_OUTPUT,
    INVALID_ANSWERS,
    INVALID_OUTPUT_JSON,
    MISSING_FIELD,
    NOT_A_STRING,
    SCHEMA_VIOLATION,
    TOO_LONG,
    UNKNOWN_LABEL,
    RowError,
)
from tunewise.task.readers import Record

ANSWERS_FIELD = "answers"  # qa: every accepted answer
_SNIPPET = 60


class _Invalid(Exception):
    """A row problem found deep in a helper: carries the reason code and message out."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class RowValidator:
    """Checks records against one task card. Build once per card: it compiles the output
    schema and indexes the label set, so checking 10,000 rows stays fast."""

    def __init__(self, card: TaskCard):
        self.card = card
        self.kind = card.kind
        self.input_field = card.data.input_field
        self.output_field = card.data.output_field
        self.max_input = card.data.max_input_chars
        self.max_output = card.data.max_output_chars
        self.labels = frozenset(card.labels) if card.labels is not None else None
        self._schema_validator = _compile_schema(card.schema_dict()) if card.kind is Kind.extract else None
        self._skip_meta = {self.input_field, self.output_field}
        if self.kind is Kind.qa:
            self._skip_meta.add(ANSWERS_FIELD)
        self._label_hints: dict[str, str] = {}  # a bad label -> its suggestion, computed once

    def __call__(self, record: Record, file: str) -> Example | RowError:
        try:
            return self._example(record, file)
        except _Invalid as problem:
            return RowError(file, record.line, problem.reason, problem.message)

    def _example(self, record: Record, file: str) -> Example:
        fields = record.fields
        for name in (self.input_field, self.output_field):
            if name not in fields:
                raise _Invalid(MISSING_FIELD, _missing_message(name, fields, self._skip_meta))
        text = self._input(fields[self.input_field])
        output = self._output(fields[self.output_field])
        references = self._references(fields.get(ANSWERS_FIELD), output) if self.kind is Kind.qa else ()
        meta = {key: value for key, value in fields.items() if key not in self._skip_meta}
        return Example(input=text, output=output, source=file, line=record.line, references=references, meta=meta)

    def _input(self, value: Any) -> str:
        name = self.input_field
        if not isinstance(value, str):
            raise _Invalid(NOT_A_STRING, f"input field {name!r} is {_type_name(value)}, not a string")
        if not value.strip():
            raise _Invalid(EMPTY_INPUT, f"input field {name!r} is empty")
        if len(value) > self.max_input:
            raise _Invalid(TOO_LONG, f"input field {name!r} has {len(value):,} characters, over "
                                     f"data.max_input_chars = {self.max_input:,}")
        return value

    def _output(self, value: Any) -> str:
        output = self._extract_output(value) if self.kind is Kind.extract else self._text_output(value)
        if len(output) > self.max_output:
            raise _Invalid(TOO_LONG, f"output field {self.output_field!r} has {len(output):,} characters, over "
                                     f"data.max_output_chars = {self.max_output:,}")
        return output

    def _text_output(self, value: Any) -> str:
        name = self.output_field
        if not isinstance(value, str):
            raise _Invalid(NOT_A_STRING, f"output field {name!r} is {_type_name(value)}, not a string")
        if not value.strip():
            raise _Invalid(EMPTY_OUTPUT, f"output field {name!r} is empty")
        if self.labels is not None and value not in self.labels:
            raise _Invalid(UNKNOWN_LABEL, f"label {_short(value)} is not in the card's labels{self._hint(value)}")
        return value

    def _hint(self, label: str) -> str:
        if label not in self._label_hints:
            labels = sorted(self.labels or ())
            close = difflib.get_close_matches(label, labels, n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
            elif len(labels) <= 10:
                hint = f" ({', '.join(labels)})"
            else:
                hint = f" ({len(labels)} labels)"
            self._label_hints[label] = hint
        return self._label_hints[label]

    def _extract_output(self, value: Any) -> str:
        name = self.output_field
        if isinstance(value, str):
            if not value.strip():
                raise _Invalid(EMPTY_OUTPUT, f"output field {name!r} is empty")
            obj = _parse_output_json(value)
        else:
            obj = value
        if not isinstance(obj, dict):
            raise _Invalid(INVALID_OUTPUT_JSON,
                           f"output field {name!r} is {_type_name(obj)}; extract needs a JSON object")
        if self._schema_validator is not None:
            _check_schema(self._schema_validator, obj)
        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:
            raise _Invalid(INVALID_OUTPUT_JSON, "output holds NaN or Infinity, which JSON does not allow") from None

    def _references(self, answers: Any, output: str) -> tuple[str, ...]:
        if answers is None:
            return ()
        if isinstance(answers, str):  # a CSV cell holding a JSON list
            try:
                answers = json.loads(answers) if answers.strip() else []
            except json.JSONDecodeError:
                raise _Invalid(INVALID_ANSWERS, f"{ANSWERS_FIELD!r} is text that is not a JSON list") from None
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise _Invalid(INVALID_ANSWERS, f"{ANSWERS_FIELD!r} must be a list of non-empty strings")
        if not answers:
            return ()
        return tuple(answers) if output in answers else (output, *answers)


def validate_records(card: TaskCard, rows: Iterable[Record | RowError], file: str) -> Iterator[Example | RowError]:
    """Examples (or row errors) for the rows of one file; errors from reading pass through."""
    validator = RowValidator(card)
    for row in rows:
        yield row if isinstance(row, RowError) else validator(row, file)


# -- helpers ------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return obj


_OUTPUT_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)


def _parse_output_json(text: str) -> Any:
    try:
        return _OUTPUT_JSON.decode(text)
    except json.JSONDecodeError as e:
        raise _Invalid(INVALID_OUTPUT_JSON, f"output is not valid JSON ({e.msg} at character {e.pos + 1}): "
                                            f"{_short(text)}") from None
    except (ValueError, RecursionError) as e:
        raise _Invalid(INVALID_OUTPUT_JSON, f"output is not valid JSON ({e})") from None


def _compile_schema(schema: dict[str, Any] | None) -> Any:
    if schema is None:
        return None
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _check_schema(validator: Any, obj: dict[str, Any]) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise _Invalid(SCHEMA_VIOLATION, f"output fails output_schema at {path}: {message}")


def _missing_message(name: str, fields: dict[str, Any], taken: set[str]) -> str:
    present = ", ".join(repr(key) for key in list(fields)[:8]) or "none"
    # suggest a near-miss spelling, but never the other configured field
    close = difflib.get_close_matches(name, [str(key) for key in fields if key not in taken], n=1)
    hint = f"; did you mean {close[0]!r}? (set data.input_field / data.output_field)" if close else ""
    return f"no field {name!r} (fields present: {present}){hint}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            str: "a string"}.get(type(value), type(value).__name__)


def _short(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")
