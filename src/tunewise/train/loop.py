"""The training loop, top to bottom: batch -> packed rows -> answer-only loss -> AdamW step,
with validation, early stopping, checkpoints and a time budget.

Everything that decides what the next step computes is a function of the step number (the
learning rate, which examples form the batch) or is saved in a checkpoint (weights, optimizer
moments, RNG, the loss histories), so a resumed run continues exactly as if it had never
stopped. run.py sets the loop up (settings, data, LoRA layers, resume) and writes the adapter.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from tunewise.train.checkpoint import Checkpoint, optimizer_tensors, rng_tensors
from tunewise.train.config import ResolvedSettings
from tunewise.train.data import EncodedPair, PackedRow, batch_indices, pack
from tunewise.train.forward import AnswerLoss
from tunewise.train.lora import Attached

Stopped = str  # converged | early_stop | budget | max_steps


@dataclass
class LoopState:
    """Where a training run is: saved with every checkpoint (JSON), restored on resume."""

    key: str = ""  # the adapter's content key: a checkpoint of another run is never resumed
    step: int = 0
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss per answer token)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_val: float | None = None
    evals_since_best: int = 0
    train_tokens: int = 0  # prompt + answer tokens of the examples trained on, as a plain loop counts them
    computed_tokens: int = 0  # tokens actually run (the shared prefix once per row)
    answer_tokens: int = 0
    seconds: float = 0.0  # training wall time over every session of this run
    stopped: Stopped | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        data = dict(data)
        data["train_loss"] = [tuple(x) for x in data.get("train_loss", [])]
        data["val_loss"] = [tuple(x) for x in data.get("val_loss", [])]
        return cls(**data)


@dataclass(frozen=True)
class TrainProgress:
    """What the loop reports to a ``progress`` callback."""

    event: str  # step | eval | checkpoint | note
    step: int
    total_steps: int
    loss: float | None = None
    val_loss: float | None = None
    tokens_per_s: float | None = None
    message: str = ""


@dataclass
class Loop:
    """One training run's moving parts (built by run.py)."""

    attached: Attached
    loss_fn: AnswerLoss
    optimizer: torch.optim.Optimizer
    train: Sequence[EncodedPair]
    validation: Sequence[EncodedPair]
    settings: ResolvedSettings
    seed: int
    device: torch.device
    max_pack_tokens: int
    bf16: bool  # autocast the forward and backward in bfloat16
    state: LoopState
    best: dict[str, torch.Tensor] | None = None  # adapter tensors at the best validation loss
    deadline: float | None = None  # time.monotonic() by which to stop
    save: Callable[[Checkpoint], None] | None = None
    progress: Callable[[TrainProgress], None] | None = None
    _validation_rows: list[PackedRow] | None = None

    def run(self) -> LoopState:
        s, state = self.settings, self.state
        params = list(self.attached.parameters())
        self.attached.model.train()
        step_seconds: list[float] = []
        while state.step < s.total_steps and state.stopped is None:
            if self._out_of_time(step_seconds):
                state.stopped = "budget"
                break
            began = time.perf_counter()
            for group in self.optimizer.param_groups:
                group["lr"] = s.learning_rate_at(state.step)
            batch = [self.train[i] for i in batch_indices(len(self.train), s.batch_size, self.seed, state.step)]
            answer_tokens = sum(len(e.answer) for e in batch)
            # The loss is the mean over the step's answer tokens, as transformers' causal-LM loss
            # is over a batch's labelled tokens; rows are summed, then divided once.
            loss_sum = 0.0
            for row in pack(batch, self.max_pack_tokens):
                with self._autocast():
                    loss = self.loss_fn(row, self.device) / answer_tokens
                loss.backward()
                loss_sum += loss.item()
                state.computed_tokens += row.length
            if s.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

            state.step += 1
            state.train_loss.append((state.step, loss_sum))
            state.train_tokens += sum(e.n_tokens for e in batch)
            state.answer_tokens += answer_tokens
            elapsed = time.perf_counter() - began
            state.seconds += elapsed
            step_seconds.append(elapsed)
            self._report("step", loss=loss_sum, tokens_per_s=sum(e.n_tokens for e in batch) / elapsed)

            if state.step % s.eval_every == 0 or state.step == s.total_steps:
                self._evaluate()
            if state.step % s.checkpoint_every == 0 and state.step < s.total_steps and state.stopped is None:
                self._checkpoint()
        if state.stopped is None:
            full_schedule = s.epochs * s.steps_per_epoch
            state.stopped = "max_steps" if s.total_steps < full_schedule else "converged"
        if state.stopped == "budget":
            if not state.val_loss or state.val_loss[-1][0] != state.step:
                self._evaluate()  # so that "best" compares the last weights too
            self._checkpoint()  # a later call with more time resumes from here
        if self.best is None:  # no validation: the last weights are the result
            self.best = self.attached.state_dict()
            state.best_step = state.step
        self.attached.model.eval()
        return state

    def _evaluate(self) -> None:
        if not self.validation:
            return
        began = time.perf_counter()
        loss = validation_loss(self.loss_fn, self._rows(), self.device, self._autocast, self.attached.model)
        state, s = self.state, self.settings
        state.val_loss.append((state.step, loss))
        if state.best_val is None or loss < state.best_val - s.min_delta:
            state.best_val, state.best_step, state.evals_since_best = loss, state.step, 0
            self.best = self.attached.state_dict()
        else:
            state.evals_since_best += 1
            if state.evals_since_best >= s.patience:
                state.stopped = "early_stop"
        state.seconds += time.perf_counter() - began
        self._report("eval", val_loss=loss)

    def _checkpoint(self) -> None:
        if self.save is None:
            return
        began = time.perf_counter()
        self.save(Checkpoint(
            step=self.state.step,
            adapter=self.attached.state_dict(),
            best=self.best,
            optimizer=optimizer_tensors(self.optimizer),
            rng=rng_tensors(),
            state=self.state.to_json(),
        ))
        self.state.seconds += time.perf_counter() - began
        self._report("checkpoint")

    def _rows(self) -> list[PackedRow]:
        if self._validation_rows is None:
            self._validation_rows = pack(self.validation, self.max_pack_tokens)
        return self._validation_rows

    def _out_of_time(self, step_seconds: list[float]) -> bool:
        if self.deadline is None:
            return False
        recent = step_seconds[-5:]
        expected = sum(recent) / len(recent) if recent else 0.0
        return time.monotonic() + expected > self.deadline

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _report(self, event: str, **values) -> None:
        if self.progress is not None:
            self.progress(TrainProgress(event, self.state.step, self.settings.total_steps, **values))


@torch.no_grad()
def validation_loss(loss_fn: AnswerLoss, rows: Sequence[PackedRow], device: torch.device, autocast,
                    model: torch.nn.Module) -> float:
    """Mean loss per answer token over ``rows`` (dropout off while measuring)."""
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for row in rows:
            with autocast():
                total += loss_fn(row, device).item()
            count += int(row.targets.numel())
        return total / max(1, count)
    finally:
        model.train(was_training)
