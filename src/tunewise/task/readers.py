"""Read data files row by row, tolerantly: garbage never crashes, every problem has a line.

Two formats, chosen by the file's extension:

- JSON Lines (``.jsonl``, ``.json-lines``, ``.ndjson``): one JSON object per line. Blank
  lines are skipped. A line is a physical line ending in ``\\n``.
- CSV (``.csv``) and TSV (``.tsv``): a header row names the columns; quoted fields may span
  lines, and a record's line is the physical line it *starts* on. Header names are
  stripped of surrounding spaces (``input, output`` is a common way to write a header).
  TSV uses the same quoting rules as CSV with a tab as the delimiter, so what Python's
  ``csv`` module or a spreadsheet writes reads back unchanged.

Both read bytes and decode each line as UTF-8 themselves, so a stray Latin-1 byte becomes
an ``encoding_error`` for that row instead of a crash halfway through the file. A UTF-8
byte-order mark at the start of the file is ignored.

``read_records(path)`` yields ``Record`` (line + fields) or ``RowError`` in file order; it is
public so that `tunewise init` can infer a task's kind and labels from raw rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunewise.errors import DataError
from tunewise.task.findings import (
    DUPLICATE_COLUMN,
    DUPLICATE_KEY,
    EMPTY_FILE,
    ENCODING_ERROR,
    INVALID_CSV,
    INVALID_JSON,
    NOT_AN_OBJECT,
    WRONG_COLUMN_COUNT,
    RowError,
)

Format = Literal["jsonl", "csv", "tsv"]

JSONL_SUFFIXES = (".jsonl", ".json-lines", ".ndjson")
CSV_SUFFIXES = {".csv": "csv", ".tsv": "tsv"}
_BOM = b"\xef\xbb\xbf"
_SNIPPET = 60  # characters of a bad line quoted back in a message


@dataclass(frozen=True, slots=True)
class Record:
    """One raw row: its 1-based line and its fields (JSON values, or strings for CSV)."""

    line: int
    fields: dict[str, Any]


def file_format(path: str | Path) -> Format:
    """The format of a data file, from its extension; a DataError for any other extension."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return CSV_SUFFIXES[suffix]  # type: ignore[return-value]
    fix = "use JSON Lines (.jsonl, one object per line) or CSV (.csv / .tsv with a header row)"
    if suffix == ".json":
        fix = "convert it to JSON Lines (one object per line) and name it .jsonl"
    raise DataError(f"unsupported data file type {suffix or '(no extension)'!r}", where=str(path), fix=fix)


def read_records(path: str | Path, *, name: str | None = None) -> Iterator[Record | RowError]:
    """Yield every row of a JSONL or CSV file as a ``Record``, or a ``RowError`` with its line.

    ``name`` is how errors refer to the file (default: ``str(path)``). Raises DataError only
    for problems with the file as a whole: missing, a folder, unreadable, or an unknown
    extension. An empty file yields one ``empty_file`` error at line 1.
    """
    path = Path(path)
    label = name if name is not None else str(path)
    fmt = file_format(path)
    _check_readable(path)
    rows = _read_jsonl(path, label) if fmt == "jsonl" else _read_csv(path, label, "," if fmt == "csv" else "\t")
    seen_any = False
    for item in rows:
        seen_any = True
        yield item
    if not seen_any:
        yield RowError(label, 1, EMPTY_FILE, "the file holds no rows")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise DataError("data file not found", where=str(path),
                        fix="check the path in the task card (relative paths start at the card's folder)")
    if not path.is_file():
        raise DataError("not a file", where=str(path), fix="name a .jsonl or .csv file, not a folder")
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise DataError(f"cannot read the data file ({e.strerror or e.__class__.__name__})", where=str(path),
                        fix="check the file's permissions") from None


def _physical_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based number, bytes without the BOM) of each line, split on ``\\n`` only."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            yield number, raw


def _encoding_message(error: UnicodeDecodeError, raw: bytes) -> str:
    bad = raw[error.start:error.end].hex(" ")
    return f"byte(s) {bad} at byte {error.start + 1} of the line are not UTF-8; save the file as UTF-8"


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


# -- JSON Lines ---------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey(_first_duplicate(key for key, _ in pairs) or "")
    return obj


_JSON = json.JSONDecoder(object_pairs_hook=_object_without_duplicates)


def _read_jsonl(path: Path, label: str) -> Iterator[Record | RowError]:
    for number, raw in _physical_lines(path):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield RowError(label, number, ENCODING_ERROR, _encoding_message(e, raw))
            continue
        if not text.strip():
            continue  # blank lines (a trailing newline, spacing) are not rows
        yield _parse_json_line(text.rstrip("\r\n"), number, label)


def _parse_json_line(text: str, number: int, label: str) -> Record | RowError:
    try:
        value = _JSON.decode(text)
    except _DuplicateKey as e:
        return RowError(label, number, DUPLICATE_KEY, f"key {e.key!r} appears twice in one object")
    except json.JSONDecodeError as e:
        return RowError(label, number, INVALID_JSON, f"{e.msg} at character {e.pos + 1}: {_snippet(text)}")
    except RecursionError:
        return RowError(label, number, INVALID_JSON, "JSON nested too deeply to read")
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        return RowError(label, number, INVALID_JSON, str(e))
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return RowError(label, number, NOT_AN_OBJECT,
                        f"expected a JSON object ({{\"input\": ..., \"output\": ...}}), got {kind}")
    return Record(number, value)


# -- CSV / TSV ----------------------------------------------------------------------------


class _LineFeed:
    """Feeds decoded lines to ``csv.reader`` and remembers which lines had bad bytes.

    Undecodable lines are passed on with replacement characters so the parser keeps its
    place; the record that contains them is then reported as an encoding error.
    """

    def __init__(self, path: Path):
        self._lines = _physical_lines(path)
        self.bad: dict[int, str] = {}  # line number -> message

    def __iter__(self) -> Iterator[str]:
        for number, raw in self._lines:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.bad[number] = _encoding_message(e, raw)
                yield raw.decode("utf-8", errors="replace")


def _read_csv(path: Path, label: str, delimiter: str) -> Iterator[Record | RowError]:
    feed = _LineFeed(path)
    # strict: a quote followed by text (`"a"b`) or an unclosed quote at the end of the file is
    # an error rather than a silently merged field
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    for start, end, row in _csv_rows(reader, label):
        if isinstance(row, RowError):
            yield row
            continue
        encoding = _first_bad_line(feed.bad, start, end)
        if header is None:
            header = [name.strip() for name in row]
            if encoding is not None:
                yield RowError(label, encoding[0], ENCODING_ERROR, f"in the header: {encoding[1]}")
            duplicate = _first_duplicate(header)
            if duplicate is not None:
                yield RowError(label, start, DUPLICATE_COLUMN,
                               f"the header names column {duplicate!r} twice; rename one of them")
            continue
        if encoding is not None:
            where = "" if encoding[0] == start else f"on line {encoding[0]} of this record: "
            yield RowError(label, start, ENCODING_ERROR, where + encoding[1])
            continue
        if len(row) != len(header):
            yield RowError(label, start, WRONG_COLUMN_COUNT,
                           f"{len(row)} cells, the header has {len(header)}; "
                           "quote cells that contain the delimiter, quotes or line breaks")
            continue
        fields: dict[str, Any] = {}
        for name, value in zip(header, row, strict=True):
            fields.setdefault(name, value)  # with a duplicated column, the first one wins
        yield Record(start, fields)


def _csv_rows(reader: Any, label: str) -> Iterator[tuple[int, int, list[str] | RowError]]:
    """(first line, last line, cells or error) of each non-blank record."""
    consumed = 0  # physical lines the parser has taken so far
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            start, consumed = consumed + 1, reader.line_num
            yield start, consumed, RowError(label, start, INVALID_CSV, _csv_message(e, start, consumed))
            continue
        start, consumed = consumed + 1, reader.line_num
        if row:  # csv gives [] for a blank line
            yield start, consumed, row


def _csv_message(error: csv.Error, start: int, end: int) -> str:
    text = str(error)
    if "unexpected end of data" in text:
        return f"a quoted field opened on line {start} is never closed (the file ends at line {end})"
    if "field larger than field limit" in text:
        return f"{text}: a cell is longer than {csv.field_size_limit():,} characters"
    return text


def _first_bad_line(bad: dict[int, str], start: int, end: int) -> tuple[int, str] | None:
    if not bad:
        return None
    for number in range(start, end + 1):
        if number in bad:
            return number, bad[number]
    return None


def _first_duplicate(names: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None
