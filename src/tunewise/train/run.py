"""``train_adapter``: from a loaded model and training pairs to a verified adapter folder.

Set-up around the loop (loop.py): settings resolved for the data size, a content key naming
the adapter, reuse of a finished adapter with that key, a lock so that two processes never
train into one folder, LoRA layers attached to the backend's model (and always taken off
again), resume from the newest intact checkpoint, and the adapter written at the end.

The content key hashes what determines the adapter: the base model's weights, the training and
validation pairs, the resolved settings and the seed. Training the same thing twice returns
the finished adapter at once, so re-running a bake-off costs no training. A run cut short by
its time budget leaves a usable adapter *and* its checkpoints; the next call with the same key
resumes from them rather than reusing the partial result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunewise.errors import TunewiseError
from tunewise.train import adapter as adapters
from tunewise.train.checkpoint import (
    load_latest,
    load_optimizer,
    restore_rng,
    write_checkpoint,
)
from tunewise.train.config import LoraSettings, ResolvedSettings
from tunewise.train.data import EncodedPair, TrainingPair, encode_pairs, pairs_digest
from tunewise.train.forward import AnswerLoss
from tunewise.train.loop import Loop, LoopState, TrainProgress
from tunewise.train.lora import attach

KEY_VERSION = 1  # bump when the same inputs would now train a different adapter
CHECKPOINTS = "checkpoints"
_LOCK = ".lock"


@dataclass
class TrainResult:
    """What ``train_adapter`` did. Losses are mean cross-entropy per answer token (nats)."""

    adapter_dir: Path
    manifest: dict[str, Any]
    steps: int
    epochs: float  # steps / steps per epoch
    train_loss: list[tuple[int, float]]  # (step, loss) for every step
    val_loss: list[tuple[int, float]]  # (step, loss) at each evaluation
    best_step: int | None  # the step whose weights the adapter holds
    stopped: str  # converged (every planned epoch) | early_stop | budget | max_steps
    wall_s: float  # this call's wall time
    train_seconds: float  # training time over every session of this adapter (what it cost)
    train_tokens: int  # prompt + answer tokens of the examples trained on (as a plain loop counts)
    tokens_per_s: float  # train_tokens / train_seconds
    reused: bool = False  # a finished adapter with the same key was returned without training
    resumed_from: int | None = None  # the checkpoint step training continued from
    notes: list[str] = field(default_factory=list)  # checkpoints skipped or refused, pairs left out, ...

    @property
    def best_val_loss(self) -> float | None:
        return self.manifest.get("metrics", {}).get("best_val_loss")


def train_adapter(
    backend,
    train: Sequence[TrainingPair],
    validation: Sequence[TrainingPair],
    settings: LoraSettings | None = None,
    *,
    out_dir: Path | None = None,
    resume: bool = True,
    budget_s: float | None = None,
    seed: int = 0,
    progress: Callable[[TrainProgress], None] | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter of ``backend`` (a LocalBackend) on ``train``, early-stopped on
    ``validation``, and return where it is and how it went.

    out_dir: default ``<tunewise home>/adapters/<content key>`` (see the module doc).
    resume: continue from the newest intact checkpoint in out_dir (False: start over).
    budget_s: stop by this many seconds (then the adapter is the best so far, ``stopped="budget"``).
    progress: called with a TrainProgress after every step, evaluation and checkpoint.
    meta: free-form labels recorded in the manifest (e.g. {"task": ...}); not part of the key.
    """
    began = time.monotonic()
    settings = settings or LoraSettings()
    model = _local_model(backend)
    loss_fn = AnswerLoss(model)
    problem = loss_fn.unsupported()
    if problem:
        raise TunewiseError(f"cannot train {backend.model_id}: {problem}", where="train_adapter",
                            fix="use a decoder-only model with standard attention (e.g. a catalog model)")

    probe = settings.resolve(len(train))
    validation = _sample(validation, probe.max_validation_examples, seed)
    train_ids, too_long = encode_pairs(backend, train, probe.max_sequence_tokens)
    val_ids, val_too_long = encode_pairs(backend, validation, probe.max_sequence_tokens)
    if not train_ids:
        raise TunewiseError(
            f"no training pair fits max_sequence_tokens={probe.max_sequence_tokens}" if train
            else "no training pairs", where="train_adapter",
            fix="raise LoraSettings.max_sequence_tokens" if train else "pass at least one TrainingPair")
    resolved = settings.resolve(len(train_ids))
    notes = [f"{n} {split} pairs longer than {resolved.max_sequence_tokens} tokens were left out"
             for n, split in ((too_long, "training"), (val_too_long, "validation")) if n]

    base = _base_record(backend, model)
    data = {"train_sha256": pairs_digest(train), "validation_sha256": pairs_digest(validation),
            "n_train": len(train_ids), "n_validation": len(val_ids), "too_long": too_long + val_too_long}
    key = content_key(base["weights_sha256"], data, resolved, seed)
    folder = Path(out_dir) if out_dir is not None else adapters.adapters_root() / key[:16]

    with _locked(folder):
        finished = _finished(folder, key) if resume else None
        if finished is not None:
            return _result(folder, finished, wall_s=time.monotonic() - began, reused=True)
        if not resume:
            _clear(folder)
        with _seeded(seed), _threads(settings.threads):
            loop, resumed_from = _build_loop(model, loss_fn, train_ids, val_ids, resolved, seed, key, folder,
                                             notes, progress)
            if budget_s is not None:
                loop.deadline = began + budget_s
            try:
                state = loop.run()
                peft_config = loop.attached.peft_config(base.get("path"))
            finally:
                loop.attached.detach()
                model.eval()
        manifest = {
            "key": key, "created": adapters.now_iso(), "tunewise_version": adapters._version(),
            "base": base, "data": data, "settings": resolved.to_dict(), "seed": seed, "meta": dict(meta or {}),
            "metrics": _metrics(state, resolved),
            "history": {"train_loss": state.train_loss, "val_loss": state.val_loss},
            "notes": notes,
        }
        manifest = adapters.write_adapter(folder, loop.best, peft_config, manifest)
        if state.stopped != "budget":  # finished: nothing left to resume
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
        _remember_speed(base["name"], state)
    result = _result(folder, manifest, wall_s=time.monotonic() - began, reused=False)
    result.resumed_from = resumed_from
    return result


def content_key(weights_sha256: str, data: dict[str, Any], settings: ResolvedSettings, seed: int) -> str:
    identity = {"version": KEY_VERSION, "base": weights_sha256, "data": data, "settings": settings.to_dict(),
                "seed": seed}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


# -- set-up -----------------------------------------------------------------------------------


def _build_loop(model, loss_fn, train_ids: list[EncodedPair], val_ids: list[EncodedPair], s: ResolvedSettings,
                seed: int, key: str, folder: Path, notes: list[str], progress) -> tuple[Loop, int | None]:
    attached = attach(model, rank=s.rank, alpha=s.alpha, dropout=s.dropout, targets=s.target_modules)
    try:
        device = next(model.parameters()).device
        optimizer = torch.optim.AdamW(list(attached.parameters()), lr=s.learning_rate, weight_decay=s.weight_decay)
        checkpoints = folder / CHECKPOINTS
        state, best, resumed_from = LoopState(key=key), None, None
        before = len(notes)
        checkpoint = load_latest(checkpoints, notes)
        if checkpoint is not None and checkpoint.state.get("key") != key:
            notes.append(f"the checkpoints in {checkpoints} belong to another training run (other data, settings "
                         "or seed); starting over")
            shutil.rmtree(checkpoints, ignore_errors=True)
            checkpoint = None
        if checkpoint is not None:
            attached.load_state_dict(checkpoint.adapter)
            load_optimizer(optimizer, checkpoint.optimizer)
            restore_rng(checkpoint.rng)
            state, best, resumed_from = LoopState.from_json(checkpoint.state), checkpoint.best, checkpoint.step
            state.stopped = None  # a budget stop is lifted by this new call
            notes.append(f"resumed from the checkpoint at step {checkpoint.step}")
        if progress is not None:
            for note in notes[before:]:
                progress(TrainProgress("note", state.step, s.total_steps, message=note))
        bf16 = s.precision == "bfloat16" or (s.precision == "auto" and device.type == "cuda")
        loop = Loop(
            attached=attached, loss_fn=loss_fn, optimizer=optimizer, train=train_ids, validation=val_ids,
            settings=s, seed=seed, device=device, bf16=bf16, state=state, best=best,
            max_pack_tokens=s.max_pack_tokens or (8192 if device.type == "cuda" else 2048),
            save=lambda c: write_checkpoint(checkpoints, c, keep=s.keep_checkpoints), progress=progress,
        )
        return loop, resumed_from
    except BaseException:
        attached.detach()
        raise


def _local_model(backend) -> torch.nn.Module:
    model = getattr(backend, "model", None)
    if model is None or not hasattr(backend, "format"):
        raise TunewiseError(f"{getattr(backend, 'model_id', backend)!r} is not a local model", where="train_adapter",
                            fix="LoRA trains local models: use a catalog name, a model folder or a hub id")
    return model


def _base_record(backend, model: torch.nn.Module) -> dict[str, Any]:
    return {
        "name": backend.name,
        "model_id": backend.model_id,
        "kind": backend.kind,
        "path": getattr(model, "name_or_path", None) or None,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "weights_sha256": adapters.weights_sha256(model),
    }


def _sample(pairs: Sequence[TrainingPair], limit: int, seed: int) -> list[TrainingPair]:
    """At most ``limit`` pairs: a seeded sample, in the original order."""
    if len(pairs) <= limit:
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def _finished(folder: Path, key: str) -> dict[str, Any] | None:
    """The manifest of a finished adapter with this key in ``folder`` (None: train)."""
    if adapters.read_manifest(folder) is None:
        return None
    try:
        manifest = adapters.verify_adapter(folder)
    except adapters.AdapterError:
        return None  # damaged: train it again
    if manifest.get("key") != key or manifest.get("metrics", {}).get("stopped") == "budget":
        return None
    return manifest


def _clear(folder: Path) -> None:
    shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    for name in (adapters.MANIFEST, adapters.WEIGHTS, adapters.PEFT_CONFIG):
        (folder / name).unlink(missing_ok=True)


def _metrics(state: LoopState, s: ResolvedSettings) -> dict[str, Any]:
    last = [loss for _, loss in state.train_loss[-max(1, s.steps_per_epoch // 4):]]
    return {
        "steps": state.step,
        "epochs": round(state.step / s.steps_per_epoch, 3),
        "stopped": state.stopped,
        "best_step": state.best_step,
        "best_val_loss": state.best_val,
        "final_train_loss": sum(last) / len(last) if last else None,
        "train_seconds": round(state.seconds, 3),
        "train_tokens": state.train_tokens,
        "computed_tokens": state.computed_tokens,
        "answer_tokens": state.answer_tokens,
        "tokens_per_s": state.train_tokens / state.seconds if state.seconds else None,
    }


def _result(folder: Path, manifest: dict[str, Any], *, wall_s: float, reused: bool) -> TrainResult:
    metrics, history = manifest["metrics"], manifest.get("history", {})
    return TrainResult(
        adapter_dir=folder,
        manifest=manifest,
        steps=metrics["steps"],
        epochs=metrics["epochs"],
        train_loss=[tuple(x) for x in history.get("train_loss", [])],
        val_loss=[tuple(x) for x in history.get("val_loss", [])],
        best_step=metrics["best_step"],
        stopped=metrics["stopped"],
        wall_s=wall_s,
        train_seconds=metrics["train_seconds"],
        train_tokens=metrics["train_tokens"],
        tokens_per_s=metrics["tokens_per_s"] or 0.0,
        reused=reused,
        notes=list(manifest.get("notes", [])),
    )


# -- measured speed, for forecasts ------------------------------------------------------------

SPEED_FILE = "speed.json"


def _remember_speed(model_name: str, state: LoopState) -> None:
    """Keep the computed tokens/s of the last run per model and device: the lora arm forecasts
    training time from it (see arms/lora.py)."""
    if state.seconds <= 0 or state.computed_tokens <= 0:
        return
    path = adapters.adapters_root() / SPEED_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        known = {}
    known[f"{model_name}|{_device_kind()}"] = state.computed_tokens / state.seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2, sort_keys=True), encoding="utf-8")


def measured_speed(model_name: str) -> float | None:
    """Computed tokens per second of the last training run of ``model_name`` here, if any."""
    path = adapters.adapters_root() / SPEED_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = known.get(f"{model_name}|{_device_kind()}")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _device_kind() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# -- context helpers --------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` for this process (released by the OS if it dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one trainer per folder is then the user's care
        yield
        return
    with open(folder / _LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TunewiseError("another process is training this adapter right now", where=str(folder),
                                fix="wait for it to finish; the next call reuses its adapter") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's RNG for the LoRA initialisation and dropout, and give the caller's RNG back after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
