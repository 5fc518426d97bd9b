"""Resumable checkpoints: written so that a kill -9 at any instant leaves either a complete,
verifiable checkpoint or one that is recognisably incomplete.

A checkpoint is a folder ``checkpoints/step-000040/`` holding

    adapter.safetensors    the LoRA weights now
    best.safetensors       the weights at the best validation loss so far (when there is one)
    optimizer.safetensors  AdamW's moments and step counts
    rng.safetensors        torch's RNG state(s) (LoRA dropout draws from them)
    state.json             step, loss histories, early-stopping state, token counts, seconds
    COMPLETE.json          written last: the sha256 of every file above

Every file goes to a temporary name, is flushed to disk, then renamed; the completion marker
comes after all of them. Loading starts from the newest folder and takes the first one whose
marker exists and whose files all match their recorded hashes; a folder without a marker
(killed mid-save) is skipped, and one whose files were truncated or altered is refused with the
file named, falling back to the one before. The learning-rate schedule and the data order are
functions of the step number (see config and data), so the step is all the position there is.

Only safetensors and JSON are read: nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

MARKER = "COMPLETE.json"
FORMAT = 1
_FOLDER = re.compile(r"^step-(\d{6,})$")

# Test-only fault injection: the kill -9 test sets this to a step number, and the save of that
# step kills its own process with SIGKILL halfway through writing its first file.
KILL_DURING_SAVE_ENV = "TUNEWISE_TEST_KILL_DURING_SAVE"


@dataclass
class Checkpoint:
    step: int
    adapter: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None
    optimizer: dict[str, torch.Tensor]
    rng: dict[str, torch.Tensor]
    state: dict[str, Any]


def write_checkpoint(root: Path, checkpoint: Checkpoint, *, keep: int) -> Path:
    """Write ``checkpoint`` under ``root`` (completion marker last), then drop all but the newest ``keep``."""
    folder = root / f"step-{checkpoint.step:06d}"
    if folder.exists():  # an earlier attempt at this step that never completed
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files: dict[str, bytes] = {
        "adapter.safetensors": save_safetensors(checkpoint.adapter),
        "optimizer.safetensors": save_safetensors(checkpoint.optimizer),
        "rng.safetensors": save_safetensors(checkpoint.rng),
        "state.json": json.dumps(checkpoint.state, sort_keys=True).encode("utf-8"),
    }
    if checkpoint.best is not None:
        files["best.safetensors"] = save_safetensors(checkpoint.best)
    kill_at = os.environ.get(KILL_DURING_SAVE_ENV)
    for index, (name, data) in enumerate(files.items()):
        if index == 0 and kill_at is not None and int(kill_at) == checkpoint.step:
            _die_mid_write(folder / name, data)
        write_atomic(folder / name, data)
    marker = {"format": FORMAT, "step": checkpoint.step,
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
    write_atomic(folder / MARKER, json.dumps(marker, sort_keys=True).encode("utf-8"))
    _fsync_dir(root)
    _prune(root, keep)
    return folder


def load_latest(root: Path, notes: list[str]) -> Checkpoint | None:
    """The newest complete, intact checkpoint under ``root`` (None if there is none).
    What was skipped or refused, and why, is appended to ``notes``."""
    for step, folder in sorted(_folders(root), reverse=True):
        problem = verify(folder)
        if problem is not None:
            notes.append(f"checkpoint {folder.name} {problem}")
            continue
        return _read(folder, step)
    return None


def verify(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (None: it can)."""
    marker_path = folder / MARKER
    if not marker_path.is_file():
        return "is incomplete (no completion marker: the save was interrupted); ignored"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        files = marker["files"]
        if marker.get("format") != FORMAT:
            return f"has format {marker.get('format')!r}, this tunewise reads {FORMAT}; refused"
    except (ValueError, KeyError, TypeError):
        return "has an unreadable completion marker; refused"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"is missing {name}; refused, falling back to the previous checkpoint"
        if file_sha256(path) != expected:
            return (f"refused: {name} does not match the sha256 recorded when it was written "
                    "(truncated or altered); falling back to the previous checkpoint")
    return None


def newest_step(root: Path) -> int | None:
    steps = [step for step, folder in _folders(root) if (folder / MARKER).is_file()]
    return max(steps, default=None)


# -- optimizer and RNG state as tensors --------------------------------------------------------


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state, flattened to ``"<param index>.<key>"`` tensors.
    The hyperparameters are not saved: they are rebuilt from the settings on resume."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{index}.{key}"] = tensor.detach().to("cpu", copy=True).contiguous()
    return tensors


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state[int(index)][name] = value
    optimizer.load_state_dict({"state": dict(state), "param_groups": optimizer.state_dict()["param_groups"]})


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- files ------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, all or nothing: written to a temporary name, synced, renamed."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read(folder: Path, step: int) -> Checkpoint:
    def tensors(name: str) -> dict[str, torch.Tensor]:
        return load_safetensors((folder / name).read_bytes())

    best = folder / "best.safetensors"
    return Checkpoint(
        step=step,
        adapter=tensors("adapter.safetensors"),
        best=tensors("best.safetensors") if best.is_file() else None,
        optimizer=tensors("optimizer.safetensors"),
        rng=tensors("rng.safetensors"),
        state=json.loads((folder / "state.json").read_text(encoding="utf-8")),
    )


def _folders(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _FOLDER.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return found


def _prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; drop older ones and unfinished leftovers."""
    complete = sorted((step for step, folder in _folders(root) if (folder / MARKER).is_file()), reverse=True)
    kept = set(complete[:keep])
    newest = complete[0] if complete else -1
    for step, folder in _folders(root):
        if step not in kept and step <= newest:
            shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _die_mid_write(path: Path, data: bytes) -> None:
    """Test-only: half of ``data`` reaches the disk, then the process dies as under kill -9."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
