"""Reading JSONL and CSV rows: line numbers, tolerance of garbage, round trips."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.errors import DataError
from tunewise.task import findings as F
from tunewise.task.readers import Record, RowError, file_format, read_records

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read(path: Path) -> list[Record | RowError]:
    return list(read_records(path))


def errors(items: list[Record | RowError]) -> list[tuple[int, str]]:
    return [(item.line, item.reason) for item in items if isinstance(item, RowError)]


def records(items: list[Record | RowError]) -> list[tuple[int, dict]]:
    return [(item.line, item.fields) for item in items if isinstance(item, Record)]


# -- formats and whole-file problems ---------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("a.jsonl", "jsonl"), ("a.JSONL", "jsonl"), ("a.ndjson", "jsonl"), ("a.json-lines", "jsonl"),
    ("a.csv", "csv"), ("a.CSV", "csv"), ("a.tsv", "tsv"),
])
def test_format_follows_the_extension(name, expected):
    assert file_format(name) == expected


def test_a_json_file_is_refused_with_the_fix_to_convert_it():
    with pytest.raises(DataError) as caught:
        file_format("data/train.json")
    assert caught.value.where == "data/train.json"
    assert "JSON Lines" in caught.value.fix and ".jsonl" in caught.value.fix


@pytest.mark.parametrize("name", ["train.txt", "train", "train.parquet"])
def test_other_extensions_are_refused(name):
    with pytest.raises(DataError, match="unsupported data file type") as caught:
        file_format(name)
    assert ".jsonl" in caught.value.fix and ".csv" in caught.value.fix


def test_a_missing_file_names_the_path_and_the_fix(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="not found") as caught:
        read(path)
    assert caught.value.where == str(path)
    assert "path" in caught.value.fix


def test_a_folder_is_not_a_data_file(tmp_path):
    folder = tmp_path / "rows.jsonl"
    folder.mkdir()
    with pytest.raises(DataError, match="not a file"):
        read(folder)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_jsonl_file_is_one_error_at_line_1(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    assert errors(read(path)) == [(1, F.EMPTY_FILE)]


def test_errors_name_the_file_as_given(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("nonsense\n")
    [error] = list(read_records(path, name="data/rows.jsonl"))
    assert isinstance(error, RowError) and error.file == "data/rows.jsonl"
    assert str(error).startswith("data/rows.jsonl:1:")


# -- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_records_keep_their_physical_line_numbers(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"input": "a", "output": "x"}\r\n\n   \n{"input": "b", "output": "y"}\n')
    assert records(read(path)) == [(1, {"input": "a", "output": "x"}), (4, {"input": "b", "output": "y"})]


@pytest.mark.parametrize("line, reason", [
    (b'{"input": "a", "output": ', F.INVALID_JSON),
    (b"{'input': 'a'}", F.INVALID_JSON),
    (b'{"input": "a"} trailing', F.INVALID_JSON),
    (b"[" * 100_000, F.INVALID_JSON),  # deeper than Python's recursion limit
    (b'{"n": ' + b"9" * 5000 + b"}", F.INVALID_JSON),  # more digits than int() converts
    (b'["input", "output"]', F.NOT_AN_OBJECT),
    (b'"just a string"', F.NOT_AN_OBJECT),
    (b"null", F.NOT_AN_OBJECT),
    (b'{"input": "a", "input": "b", "output": "c"}', F.DUPLICATE_KEY),
    (b'{"input": "caf\xe9", "output": "x"}', F.ENCODING_ERROR),
    (b"\xff\xfe{\x00}\x00", F.ENCODING_ERROR),
])
def test_each_jsonl_problem_has_its_reason_and_exact_line(tmp_path, line, reason):
    path = tmp_path / "rows.jsonl"
    good = b'{"input": "ok", "output": "x"}'
    path.write_bytes(b"\n".join([good, b"", good, line, good]) + b"\n")
    items = read(path)
    assert errors(items) == [(4, reason)]
    assert [line for line, _ in records(items)] == [1, 3, 5]


def test_an_invalid_json_message_points_at_the_character(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"input": "a" "output": "b"}\n')
    [error] = read(path)
    assert error.reason == F.INVALID_JSON and "character 15" in error.message


def test_an_encoding_error_names_the_byte(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes('{"input": "café"}\n'.encode("latin-1"))
    [error] = read(path)
    assert error.reason == F.ENCODING_ERROR and "e9" in error.message and "UTF-8" in error.message


def test_duplicate_key_names_the_key(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"input": "a", "output": "b", "output": "c"}\n')
    [error] = read(path)
    assert "'output'" in error.message


# -- CSV / TSV -------------------------------------------------------------------------------


def test_csv_records_start_on_their_first_physical_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b'\xef\xbb\xbfinput, output\r\n"two\r\nline input",a\r\n\r\nplain,b\r\n"x","y, with comma"\r\n')
    assert records(read(path)) == [
        (2, {"input": "two\r\nline input", "output": "a"}),
        (5, {"input": "plain", "output": "b"}),
        (6, {"input": "x", "output": "y, with comma"}),
    ]


def test_tsv_uses_tabs(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("input\toutput\nhello, world\tgreeting\n")
    assert records(read(path)) == [(2, {"input": "hello, world", "output": "greeting"})]


def test_an_unclosed_quote_is_reported_where_the_record_starts(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('input,output\nok,a\n"never closed,b\nmore,c\n')
    items = read(path)
    assert records(items) == [(2, {"input": "ok", "output": "a"})]
    [error] = [item for item in items if isinstance(item, RowError)]
    assert (error.line, error.reason) == (3, F.INVALID_CSV)
    assert "never closed" in error.message


def test_bad_quoting_is_an_error_and_reading_goes_on(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('input,output\n"quoted"trailing,a\nnext,b\n')
    items = read(path)
    assert errors(items) == [(2, F.INVALID_CSV)]
    assert records(items) == [(3, {"input": "next", "output": "b"})]


def test_a_row_with_the_wrong_cell_count_is_an_error(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("input,output\nhello, world,greeting\nalone\nfine,x\n")
    items = read(path)
    assert errors(items) == [(2, F.WRONG_COLUMN_COUNT), (3, F.WRONG_COLUMN_COUNT)]
    assert records(items) == [(4, {"input": "fine", "output": "x"})]


def test_a_duplicated_column_is_reported_on_the_header_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("\ninput,output,input\na,b,c\n")
    items = read(path)
    assert errors(items) == [(2, F.DUPLICATE_COLUMN)]
    assert records(items) == [(3, {"input": "a", "output": "b"})]  # the first column of that name wins


def test_bad_bytes_in_a_multiline_csv_record_are_reported_at_its_start(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b'input,output\n"first line\nsecond caf\xe9",a\nok,b\n')
    items = read(path)
    assert errors(items) == [(2, F.ENCODING_ERROR)]
    assert "line 3" in next(i for i in items if isinstance(i, RowError)).message
    assert records(items) == [(4, {"input": "ok", "output": "b"})]


def test_a_csv_with_only_a_header_is_empty(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("input,output\n")
    assert errors(read(path)) == [(1, F.EMPTY_FILE)]


# -- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.text(), json_values, max_size=5)


@FAST
@given(rows=st.lists(objects, min_size=1, max_size=20), ascii_only=st.booleans())
def test_jsonl_round_trips_exactly(tmp_path, rows, ascii_only):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in rows), encoding="utf-8")
    assert records(read(path)) == [(number, row) for number, row in enumerate(rows, 1)]


utf8_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
column_names = utf8_text.filter(lambda name: name.strip() == name and name and not name.startswith("\ufeff"))


@FAST
@given(data=st.data(), delimiter=st.sampled_from([",", "\t"]))
def test_csv_round_trips_exactly(tmp_path, data, delimiter):
    header = data.draw(st.lists(column_names, min_size=1, max_size=4, unique=True), label="header")
    rows = data.draw(st.lists(st.lists(utf8_text, min_size=len(header), max_size=len(header)), max_size=15),
                     label="rows")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    path = tmp_path / ("rows.csv" if delimiter == "," else "rows.tsv")
    path.write_bytes(text.encode("utf-8"))
    got = read(path)
    if not rows:
        assert errors(got) == [(1, F.EMPTY_FILE)]
        return
    assert errors(got) == []
    assert [fields for _, fields in records(got)] == [dict(zip(header, row, strict=True)) for row in rows]
    # each record starts on the physical line after the previous record's last line
    starts = [line for line, _ in records(got)]
    expected, line = [], 1 + _physical_lines(header, delimiter)
    for row in rows:
        expected.append(line)
        line += _physical_lines(row, delimiter)
    assert starts == expected


def _physical_lines(row: list[str], delimiter: str) -> int:
    one = io.StringIO()
    csv.writer(one, delimiter=delimiter).writerow(row)
    return one.getvalue().encode("utf-8").count(b"\n")


@FAST
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
def test_arbitrary_bytes_never_crash_and_every_error_has_a_line(tmp_path, content, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(content)
    n_lines = content.count(b"\n") + 1
    items = read(path)
    assert items, "an empty or garbage file still yields at least one error"
    for item in items:
        assert 1 <= item.line <= n_lines
        if isinstance(item, RowError):
            assert item.reason in F.REASONS and item.message


@FAST
@given(lines=st.lists(st.sampled_from([
    b'{"input": "a", "output": "b"}', b"{bad", b"", b"[1]", b'{"x": 1, "x": 2}', b"\xc3\x28", b"  ",
]), min_size=1, max_size=30))
def test_jsonl_errors_and_records_cover_every_non_blank_line_in_order(tmp_path, lines):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines))
    items = read(path)
    expected = [number for number, line in enumerate(lines, 1) if line.strip()]
    assert [item.line for item in items] == (expected or [1])
