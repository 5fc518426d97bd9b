"""What `tunewise check` finds: bad rows, data-quality findings, and the readiness checklist.

Three kinds of result, with different consequences:

- ``RowError``: a row that cannot become an example (bad JSON, a missing field, a label outside
  the set, ...). One per bad row, with its file and 1-based line. Any row error makes the
  task unloadable: ``load_task`` raises and nothing is cached or stored.
- ``QualityFinding``: something worth knowing that does not stop the run (duplicates,
  leakage, mojibake, ...), with a count and a few examples.
- ``ReadinessItem``: one line of the "is fine-tuning worth trying?" checklist.

``CheckReport`` bundles them; ``to_dict()`` is the JSON the CLI writes and keeps every row error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tunewise.task.card import TaskCard

# -- reason codes of row errors ----------------------------------------------------------
# Reading the file
ENCODING_ERROR = "encoding_error"  # bytes that are not UTF-8
INVALID_JSON = "invalid_json"  # a JSONL line that does not parse
NOT_AN_OBJECT = "not_an_object"  # a JSONL line that parses to a list, string, number...
DUPLICATE_KEY = "duplicate_key"  # a JSON object that names a key twice (JSON keeps only the last)
INVALID_CSV = "invalid_csv"  # CSV that does not parse (bad quoting, unclosed quote)
DUPLICATE_COLUMN = "duplicate_column"  # a CSV header that names a column twice
WRONG_COLUMN_COUNT = "wrong_column_count"  # a CSV row with more or fewer cells than the header
EMPTY_FILE = "empty_file"  # a data file the card names holds no rows at all
# Checking a row against the card
MISSING_FIELD = "missing_field"  # no input or output field
NOT_A_STRING = "not_a_string"  # input or output is a number, list, null...
EMPTY_INPUT = "empty_input"  # input is empty or only whitespace
EMPTY_OUTPUT = "empty_output"  # expected output is empty or only whitespace
TOO_LONG = "too_long"  # over data.max_input_chars / data.max_output_chars
INVALID_OUTPUT_JSON = "invalid_output_json"  # extract: output is not a JSON object
SCHEMA_VIOLATION = "schema_violation"  # extract: output fails output_schema
UNKNOWN_LABEL = "unknown_label"  # classify: output outside the card's labels
INVALID_ANSWERS = "invalid_answers"  # qa: `answers` is not a list of non-empty strings

REASONS: dict[str, str] = {
    ENCODING_ERROR: "bytes that are not valid UTF-8",
    INVALID_JSON: "not valid JSON",
    NOT_AN_OBJECT: "a JSON value that is not an object",
    DUPLICATE_KEY: "a JSON object with a key given twice",
    INVALID_CSV: "CSV that does not parse",
    DUPLICATE_COLUMN: "a CSV header with a column given twice",
    WRONG_COLUMN_COUNT: "a CSV row whose cell count differs from the header",
    EMPTY_FILE: "a data file with no rows",
    MISSING_FIELD: "the input or output field is missing",
    NOT_A_STRING: "the input or output is not a string",
    EMPTY_INPUT: "the input is empty",
    EMPTY_OUTPUT: "the expected output is empty",
    TOO_LONG: "longer than the card's length limit",
    INVALID_OUTPUT_JSON: "the output is not a JSON object",
    SCHEMA_VIOLATION: "the output fails the output_schema",
    UNKNOWN_LABEL: "a label outside the card's label set",
    INVALID_ANSWERS: "`answers` is not a list of strings",
}

Severity = Literal["warning", "info"]
Status = Literal["met", "not_met", "unknown"]


@dataclass(frozen=True, slots=True)
class RowError:
    """One row that cannot become an example."""

    file: str  # the data file, as the card names it
    line: int  # 1-based; for CSV the physical line the record starts on
    reason: str  # one of the reason codes above
    message: str  # what is wrong, in words, with the offending value where short

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}: {self.message}"


@dataclass
class QualityFinding:
    """A data-quality observation that does not stop the run."""

    code: str  # e.g. duplicate_input, train_test_leakage, encoding_damage
    severity: Severity
    count: int  # how many rows (or groups, as the summary says) are affected
    summary: str  # one line, with the numbers
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few, each with file, line and text


@dataclass
class ReadinessItem:
    """One item of the readiness checklist."""

    key: str  # stable identifier: training_examples, task_definition, metric, prompting_gap
    title: str
    status: Status
    evidence: str  # why this status, with the numbers
    fix: str | None = None  # what to do when the item is not met


@dataclass
class CheckReport:
    """Everything `tunewise check` found about one task card."""

    card: TaskCard
    files: dict[str, str]  # role (file/train/validation/test) -> resolved path
    sizes: dict[str, int]  # split -> number of valid examples
    labels: list[str] | None
    row_errors: list[RowError]
    findings: list[QualityFinding]
    readiness: list[ReadinessItem]
    data_hashes: dict[str, str]  # role -> sha256 of the file
    elapsed_s: float
    notes: list[str] = field(default_factory=list)  # what was skipped and why

    @property
    def ok(self) -> bool:
        """True when every row is valid, so the task can be loaded."""
        return not self.row_errors

    def error_counts(self) -> dict[str, int]:
        """Row errors per reason code, most frequent first."""
        return dict(Counter(error.reason for error in self.row_errors).most_common())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view, every row error included."""
        card = self.card
        return {
            "ok": self.ok,
            "card": {
                "name": card.name,
                "kind": card.kind.value,
                "metric": card.metric_name,
                "source": str(card.source) if card.source else None,
            },
            "files": dict(self.files),
            "sizes": dict(self.sizes),
            "labels": list(self.labels) if self.labels is not None else None,
            "row_error_counts": self.error_counts(),
            "row_errors": [asdict(error) for error in self.row_errors],
            "findings": [asdict(finding) for finding in self.findings],
            "readiness": [asdict(item) for item in self.readiness],
            "data_hashes": dict(self.data_hashes),
            "elapsed_s": round(self.elapsed_s, 3),
            "notes": list(self.notes),
        }
