"""SHA-256 digests: of example inputs, JSON documents, and artifact files or folders."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tunewise.store.values import canonical_json

_CHUNK = 1 << 20


def sha256_text(text: str) -> str:
    """Hex digest of UTF-8 text: the ``input_hash`` of a prediction."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex digest of a value's canonical JSON, so equal documents hash equal."""
    return sha256_text(canonical_json(value))


def path_digest(path: Path) -> tuple[str, int]:
    """(sha256, size in bytes) of a file, or of a folder's files (e.g. a LoRA adapter).

    A folder's digest covers each file's relative path and content, in sorted order, so it
    changes when a file is added, removed, renamed or edited, and not when mtimes change.
    """
    if path.is_file():
        return _file_digest(path)
    total = hashlib.sha256()
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest, file_size = _file_digest(file)
        total.update(f"{file.relative_to(path).as_posix()}\0{digest}\n".encode())
        size += file_size
    return total.hexdigest(), size


def _file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
