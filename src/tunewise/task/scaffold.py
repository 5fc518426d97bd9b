"""`tunewise init`: write a first task card from a data file.

It reads the file once, guesses which columns hold the input and the expected output, and
infers the task kind from what the outputs look like. Every guess is listed as a note so the
user knows what to review: a scaffold is a starting point, not a decision.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunewise.errors import DataError, TaskCardError
from tunewise.task.card import Kind, parse_card
from tunewise.task.readers import Record, read_records

INPUT_NAMES = ("input", "text", "prompt", "question", "query", "utterance", "sentence", "message", "ticket")
OUTPUT_NAMES = ("output", "label", "labels", "intent", "category", "class", "answer", "target", "completion", "response")

# Classification is inferred when outputs are short and repeat a lot: a closed label set.
MAX_LABELS = 500
MAX_LABEL_WORDS = 4

INSTRUCTIONS = {
    Kind.classify: "Read the input and answer with exactly one of the labels.",
    Kind.extract: "Read the input and answer with a JSON object holding the requested fields.",
    Kind.generate: "Read the input and write the expected output.",
    Kind.qa: "Answer the question in a few words.",
}


@dataclass
class Scaffold:
    path: Path
    card: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def scaffold_card(
    data_file: Path,
    *,
    out: Path | None = None,
    kind: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> Scaffold:
    """Infer a task card from ``data_file`` and write it to ``out`` (default ./task.yaml)."""
    data_file = Path(data_file)
    out = Path(out) if out else Path("task.yaml")
    if out.exists() and not force:
        raise TaskCardError("a task card already exists here", where=str(out),
                            fix="pass --force to overwrite it, or --out to write elsewhere")
    records = _read_clean(data_file)
    notes: list[str] = []
    input_field, output_field = _pick_fields(records, data_file, notes)
    outputs = [r.fields.get(output_field) for r in records]
    task_kind = Kind(kind) if kind else _infer_kind(records, outputs, notes)

    card: dict[str, Any] = {
        "name": name or data_file.stem.removesuffix("_train").removesuffix("-train"),
        "kind": task_kind.value,
        "instruction": INSTRUCTIONS[task_kind],
        "data": _data_section(data_file, out, input_field, output_field, notes),
    }
    if task_kind is Kind.classify:
        labels = sorted({str(o) for o in outputs if o not in (None, "")})
        card["labels"] = labels
        notes.append(f"labels: {len(labels)} distinct outputs became the closed label set")
    if task_kind is Kind.extract:
        card["output_schema"] = _infer_schema(outputs)
        notes.append("output_schema: inferred from the outputs' keys and types; tighten it (enums, patterns)")
    notes.append("instruction: a generic placeholder; say what the model should do in your own words")

    text = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100)
    parse_card(text, source=out.resolve())  # a scaffold that fails validation would be a bug: fail here
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return Scaffold(path=out, card=card, notes=notes)


def _read_clean(data_file: Path) -> list[Record]:
    if not data_file.is_file():
        raise DataError("data file not found", where=str(data_file), fix="give the path of a .jsonl or .csv file")
    records = [r for r in read_records(data_file) if isinstance(r, Record)]
    if not records:
        raise DataError("no readable rows", where=str(data_file),
                        fix="check the file is JSON Lines (one object per line) or CSV with a header row")
    return records


def _pick_fields(records: list[Record], data_file: Path, notes: list[str]) -> tuple[str, str]:
    columns = Counter(key for r in records for key in r.fields)
    present = [c for c, _ in columns.most_common()]
    lowered = {c.lower(): c for c in present}
    input_field = next((lowered[n] for n in INPUT_NAMES if n in lowered), None)
    output_field = next((lowered[n] for n in OUTPUT_NAMES if n in lowered and lowered[n] != input_field), None)
    if input_field is None or output_field is None:
        raise DataError(
            f"cannot tell which columns are the input and the output (columns: {', '.join(present[:12])})",
            where=str(data_file),
            fix="rename them to `input` and `output`, or write the card by hand with data.input_field/output_field",
        )
    if (input_field, output_field) != ("input", "output"):
        notes.append(f"columns: input from `{input_field}`, expected output from `{output_field}`")
    return input_field, output_field


def _infer_kind(records: list[Record], outputs: list[Any], notes: list[str]) -> Kind:
    n = len(outputs)
    if any(isinstance(r.fields.get("answers"), list) for r in records[:200]):
        notes.append("kind: qa, because rows list several accepted `answers`")
        return Kind.qa
    as_objects = sum(1 for o in outputs if _json_object(o) is not None)
    if as_objects >= 0.9 * n:
        notes.append(f"kind: extract, because {as_objects} of {n} outputs are JSON objects")
        return Kind.extract
    texts = [str(o) for o in outputs if o is not None]
    distinct = len(set(texts))
    short = sum(1 for t in texts if len(t.split()) <= MAX_LABEL_WORDS)
    if distinct <= MAX_LABELS and distinct <= max(2, n // 3) and short >= 0.95 * len(texts):
        notes.append(f"kind: classify, because {n} outputs take only {distinct} short distinct values")
        return Kind.classify
    notes.append(f"kind: generate, because the {n} outputs are mostly distinct free text ({distinct} distinct)")
    return Kind.generate


def _json_object(value: Any) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}


def _infer_schema(outputs: list[Any]) -> dict[str, Any]:
    """A permissive schema: the keys seen, their JSON types, and the keys every output has."""
    objects = [o for o in (_json_object(v) for v in outputs) if o is not None]
    types: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for obj in objects:
        for key, value in obj.items():
            types.setdefault(key, set()).add(_JSON_TYPES.get(type(value), "string"))
            counts[key] += 1
    properties = {}
    for key, seen in types.items():
        if seen == {"integer", "number"}:
            seen = {"number"}
        properties[key] = {"type": sorted(seen)[0] if len(seen) == 1 else sorted(seen)}
    required = [key for key in types if counts[key] == len(objects)]
    return {"type": "object", "properties": properties, "required": required}


def _data_section(data_file: Path, out: Path, input_field: str, output_field: str, notes: list[str]) -> dict:
    rel = lambda p: Path(os.path.relpath(p.resolve(), out.resolve().parent)).as_posix()  # noqa: E731
    section: dict[str, Any] = {}
    siblings = _split_siblings(data_file)
    if siblings:
        section.update({role: rel(path) for role, path in siblings.items()})
        notes.append(f"data: using the split files found beside it ({', '.join(siblings)})")
    else:
        section["file"] = rel(data_file)
        notes.append("data: one file, split 80/10/10 by a seeded hash of each input")
    if input_field != "input":
        section["input_field"] = input_field
    if output_field != "output":
        section["output_field"] = output_field
    return section


def _split_siblings(data_file: Path) -> dict[str, Path]:
    """train/validation/test files next to each other (train.jsonl, test.jsonl, ...)."""
    stem, suffix = data_file.stem, data_file.suffix
    if "train" not in stem:
        return {}
    found = {"train": data_file}
    for role, names in (("validation", ("validation", "valid", "val", "dev")), ("test", ("test",))):
        for alias in names:
            candidate = data_file.with_name(stem.replace("train", alias) + suffix)
            if candidate.is_file():
                found[role] = candidate
                break
    return found if "test" in found else {}
