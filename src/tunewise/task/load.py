"""Load a task's data into frozen train / validation / test splits.

All or nothing: if any row of any file is bad, ``load_task`` raises a DataError naming the
first bad row and the total, and nothing is returned to be cached or stored. `tunewise
check` (``check.check_task``) reads the same way but reports every bad row instead.

Splits. With ``data.file``, each example goes to a split by a number in [0, 1) hashed from
(``split.seed``, normalised input) and compared with the fractions. So the split is
deterministic, does not depend on row order, keeps identical (and normalised-equal) inputs
together, and appending rows never moves the old ones. With ``data.train`` and ``data.test``
but no ``data.validation``, the same number carves ``split.validation`` of train off as
validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tunewise.errors import DataError
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import SPLITS, Dataset, Example
from tunewise.task.findings import RowError
from tunewise.task.quality import normalise_text
from tunewise.task.readers import read_records
from tunewise.task.validate import RowValidator

CHECK_FIX = "run `tunewise check` to see every bad row"


@dataclass
class TaskRows:
    """What reading a card's data files yields, before splitting."""

    files: dict[str, Path]  # role (file/train/validation/test) -> resolved path
    examples: dict[str, list[Example]]  # role -> the valid examples, in file order
    errors: list[RowError]  # every bad row, file by file, in line order
    data_hashes: dict[str, str]  # role -> sha256 of the file


def load_task(card: TaskCard) -> Dataset:
    """The task's examples in frozen splits, or a DataError if any row is bad.

    Raises DataError for a missing or unreadable file and TaskCardError for a bad
    output_schema file.
    """
    rows = read_task_rows(card)
    if rows.errors:
        first = rows.errors[0]
        count = len(rows.errors)
        raise DataError(
            f"{count:,} bad row{'s' if count != 1 else ''} in the data; the first: {first.reason}: {first.message}",
            where=f"{first.file}:{first.line}", fix=CHECK_FIX,
        )
    return build_dataset(card, rows)


def read_task_rows(card: TaskCard) -> TaskRows:
    """Read and validate every data file the card names, collecting (not raising) row errors."""
    files = data_files(card)
    validator = RowValidator(card)  # compiles the schema: a bad schema file fails here, once
    examples: dict[str, list[Example]] = {}
    errors: list[RowError] = []
    for role, path in files.items():
        name = str(getattr(card.data, role))  # errors and examples cite the file as the card names it
        good: list[Example] = []
        for row in read_records(path, name=name):
            result = row if isinstance(row, RowError) else validator(row, name)
            (errors if isinstance(result, RowError) else good).append(result)
        examples[role] = good
    hashes = {role: file_sha256(path) for role, path in files.items()}
    return TaskRows(files, examples, errors, hashes)


def data_files(card: TaskCard) -> dict[str, Path]:
    """The card's data files, resolved against its folder; a DataError for a missing one."""
    files = {role: card.resolve(path) for role, path in card.data.files().items()}
    for role, path in files.items():
        if not path.is_file():
            problem = "not a file" if path.exists() else "data file not found"
            raise DataError(f"{problem} (data.{role})", where=str(path),
                            fix=f"check `data.{role}` in the task card; relative paths start at the card's folder")
    return files


def build_dataset(card: TaskCard, rows: TaskRows) -> Dataset:
    """Split the examples and settle the label set."""
    splits = split_examples(card, rows.examples)
    return Dataset(card=card, splits=splits, labels=infer_labels(card, splits), data_hashes=dict(rows.data_hashes))


def split_examples(card: TaskCard, examples: dict[str, list[Example]]) -> dict[str, list[Example]]:
    """train / validation / test lists from the examples of each file role."""
    spec = card.data.split
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    if "file" in examples:
        for ex in examples["file"]:
            position = split_position(spec.seed, ex.input)
            if position < spec.train:
                splits["train"].append(ex)
            elif position < spec.train + spec.validation:
                splits["validation"].append(ex)
            else:
                splits["test"].append(ex)
        return splits
    splits["test"] = list(examples.get("test", []))
    if "validation" in examples:
        splits["train"] = list(examples.get("train", []))
        splits["validation"] = list(examples["validation"])
        return splits
    for ex in examples.get("train", []):
        carved = split_position(spec.seed, ex.input) < spec.validation
        splits["validation" if carved else "train"].append(ex)
    return splits


def split_position(seed: int, text: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the normalised text."""
    digest = hashlib.blake2b(f"{seed}\x00{normalise_text(text)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def infer_labels(card: TaskCard, splits: dict[str, list[Example]]) -> list[str] | None:
    """classify: the card's labels, else the sorted set of train outputs; None for other kinds."""
    if card.kind is not Kind.classify:
        return None
    if card.labels is not None:
        return list(card.labels)
    return sorted({ex.output for ex in splits["train"]})


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
