"""Finding a folder's documents, confined to the folder.

A knowledge folder may come from anywhere (a shared drive, a repository, an upload), so
nothing outside it is ever read:

- a symlink whose target lies outside the folder is skipped and reported (``symlink_outside``),
  as is a symlinked folder (``symlinked_folder``: walking it could loop or escape; link the
  files instead); a symlink to a file inside the folder is read like the file;
- a relative name with a ``..`` part, or an absolute one, is refused (``outside_folder``):
  `confined` checks every name, including names from outside the walk (a task card's list);
- a file over ``max_bytes`` is skipped (``too_large``) before it is opened;
- the file is opened without following links (``O_NOFOLLOW`` on the resolved path) and its
  size checked again on the open handle, so a file swapped for a link or grown between the
  check and the read is still refused.

Hidden files and folders (a leading dot: ``.git``, ``.DS_Store``) are passed over silently;
files of a kind no reader handles are reported as ``unsupported``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tunewise.errors import DataError
from tunewise.knowledge.readers import reader_kind

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # larger than any document worth embedding whole; PDFs of books fit


@dataclass(frozen=True, slots=True)
class FoundFile:
    name: str  # POSIX path relative to the folder: the document's identity in the index
    path: Path  # the resolved file to open (inside the folder)
    kind: str  # its reader
    size: int


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    reason: str  # a short code: symlink_outside, symlinked_folder, outside_folder, too_large, unsupported, ...
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


def scan(folder: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[FoundFile], list[Skipped]]:
    """The documents in ``folder`` (recursively, sorted by name) and what was skipped, with why."""
    root = folder.expanduser()
    if not root.is_dir():
        raise DataError("no such folder", where=str(folder), fix="give the folder that holds the documents")
    root = root.resolve()
    found: list[FoundFile] = []
    skipped: list[Skipped] = []
    for directory, subfolders, files in os.walk(root, followlinks=False):
        here = Path(directory)
        for sub in list(subfolders):
            if sub.startswith("."):
                subfolders.remove(sub)
            elif (here / sub).is_symlink():
                subfolders.remove(sub)
                skipped.append(Skipped(_relative(root, here / sub), "symlinked_folder",
                                       "symlinked folders are not followed"))
        for file in files:
            if file.startswith("."):
                continue
            outcome = check_file(root, _relative(root, here / file), max_bytes=max_bytes)
            (found if isinstance(outcome, FoundFile) else skipped).append(outcome)
    found.sort(key=lambda f: f.name)
    skipped.sort(key=lambda s: s.name)
    return found, skipped


def confined(root: Path, name: str) -> Path | None:
    """``root / name`` resolved, if it stays inside ``root`` (itself resolved); None otherwise."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    target = (root / relative).resolve()
    return target if target.is_relative_to(root) else None


def check_file(root: Path, name: str, *, max_bytes: int) -> FoundFile | Skipped:
    """Whether the file ``name`` (relative to the resolved ``root``) may be read, and how."""
    target = confined(root, name)
    if target is None:
        reason = "symlink_outside" if (root / name).is_symlink() and ".." not in PurePosixPath(name).parts \
            else "outside_folder"
        return Skipped(name, reason, "not read: it leads outside the folder")
    kind = reader_kind(PurePosixPath(name))
    if kind is None:
        return Skipped(name, "unsupported", f"no reader for {PurePosixPath(name).suffix or 'files without a suffix'}")
    try:
        info = target.stat()
    except OSError as error:
        return Skipped(name, "unreadable", error.strerror or str(error))
    if not stat.S_ISREG(info.st_mode):
        return Skipped(name, "not_a_file")
    if info.st_size > max_bytes:
        return Skipped(name, "too_large", f"{info.st_size:,} bytes, limit {max_bytes:,}")
    return FoundFile(name, target, kind, info.st_size)


def read_confined(file: FoundFile, *, max_bytes: int) -> bytes:
    """The file's bytes, refusing a link or an oversized file found at open time (see above)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(file.path, flags)
    except OSError as error:
        raise DataError(f"cannot open ({error.strerror or error})", where=file.name,
                        fix="check the file still exists and is readable") from None
    with os.fdopen(descriptor, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise DataError(f"grew to {size:,} bytes while being read (limit {max_bytes:,})", where=file.name,
                            fix="raise the size limit or split the file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"larger than {max_bytes:,} bytes", where=file.name,
                        fix="raise the size limit or split the file")
    return data


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
