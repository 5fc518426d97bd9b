"""LoRA training settings: what a user may set, and the defaults chosen by the size of the data.

Every field left at ``None`` is filled in by ``LoraSettings.resolve(n_train)``; the resolved
values (``ResolvedSettings``) are what training uses, what the manifest records and what the
adapter's content key hashes, so setting a field to its default value names the same adapter.

The defaults were picked on the bundled models (SmolLM2-135M-Instruct, Gemma 3 270M) and
CLINC150 / SNIPS subsets (see benchmarks/RESULTS.md): small data gets a smaller rank, smaller
batches and more epochs; early stopping on the validation loss guards against the overfitting
that many epochs on little data invite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["auto", "float32", "bfloat16"]


class LoraSettings(BaseModel):
    """LoRA fine-tuning settings. ``None`` means "chosen from the number of training examples"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int | None = Field(None, ge=1, le=1024, description="LoRA rank r (8 below 256 examples, else 16).")
    alpha: float | None = Field(None, gt=0, description="LoRA scaling alpha; the update is scaled by alpha/r "
                                "(default: 2 x rank).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input. 0: early stopping on the "
                           "validation loss is the regulariser, and dropout would copy every adapted layer's "
                           "input (seven per block) on each step.")
    target_modules: str | tuple[str, ...] = Field("all-linear", description="Modules that get adapters: "
                                                  "'all-linear' (every linear layer but the LM head) or names.")
    learning_rate: float | None = Field(None, gt=0, lt=1, description="Peak AdamW learning rate (default 1e-3 "
                                        "below 256 examples, else 5e-4), after a linear warm-up, decaying "
                                        "linearly to 0.")
    epochs: int | None = Field(None, ge=1, le=1000, description="Passes over the training pairs (12 below 64 "
                               "examples, 8 below 256, 5 below 1,000, 3 below 5,000, else 2).")
    batch_size: int | None = Field(None, ge=1, le=4096, description="Examples per optimizer step (8 below 256 "
                                   "examples, 16 below 2,000, else 32).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps even if epochs "
                                  "remain (None: no limit but the epochs).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of the steps over which the learning "
                                "rate rises linearly from 0.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the adapter weights.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm to this (None: no "
                                        "clipping).")
    eval_every: int | None = Field(None, ge=1, description="Evaluate the validation loss every this many "
                                   "steps (default: about 8 evaluations per run, every 5 to 50 steps).")
    patience: int = Field(3, ge=1, description="Stop early after this many evaluations without a validation "
                          "loss improvement; the best adapter is kept.")
    min_delta: float = Field(1e-3, ge=0, description="An evaluation improves on the best only by more than "
                             "this (nats per answer token).")
    checkpoint_every: int | None = Field(None, ge=1, description="Write a resumable checkpoint every this many "
                                         "steps (default: after every evaluation).")
    keep_checkpoints: int = Field(2, ge=1, description="Complete checkpoints kept; older ones are deleted. Two, "
                                  "so that a damaged newest one falls back to the one before.")
    max_validation_examples: int = Field(200, ge=1, description="Validation pairs used for the loss (a seeded "
                                         "sample when there are more): each evaluation runs them all.")
    max_sequence_tokens: int = Field(2048, ge=8, description="Pairs longer than this (prompt + answer) are left "
                                     "out of training, and counted: the prompt is never cut, so that training "
                                     "sees exactly what inference sees.")
    max_pack_tokens: int | None = Field(None, ge=64, description="Tokens per packed row (shared prompt prefix "
                                        "+ the examples' own tokens); a step with more runs several rows "
                                        "(default 2048 on CPU, 8192 on GPU).")
    precision: Precision = Field("auto", description="Compute precision: 'auto' is bf16 autocast on GPU and the "
                                 "model's own dtype on CPU (bf16 did not pay on the 2-core AVX-512 machine; "
                                 "see benchmarks/RESULTS.md); 'bfloat16' forces autocast.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while training (None: torch's "
                                "default, one per physical core).")

    def resolve(self, n_train: int) -> ResolvedSettings:
        """Every ``None`` filled in for ``n_train`` training pairs."""
        small = n_train < 256
        rank = self.rank or (8 if small else 16)
        # Bigger batches for more data: packed behind one shared prompt prefix, an example's
        # cost falls as the batch grows, and there are steps enough either way.
        batch_size = self.batch_size or (8 if small else 16 if n_train < 2000 else 32)
        if self.epochs is not None:
            epochs = self.epochs
        else:
            epochs = 12 if n_train < 64 else 8 if small else 5 if n_train < 1000 else 3 if n_train < 5000 else 2
        steps_per_epoch = max(1, math.ceil(n_train / batch_size))
        total = epochs * steps_per_epoch
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        eval_every = self.eval_every or min(50, max(5, math.ceil(total / 8)))
        return ResolvedSettings(
            rank=rank,
            alpha=float(self.alpha if self.alpha is not None else 2 * rank),
            dropout=self.dropout,
            target_modules=self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules),
            learning_rate=self.learning_rate or (1e-3 if small else 5e-4),
            epochs=epochs,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            total_steps=total,
            warmup_steps=math.ceil(self.warmup_ratio * total),
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            eval_every=eval_every,
            patience=self.patience,
            min_delta=self.min_delta,
            checkpoint_every=self.checkpoint_every or eval_every,
            keep_checkpoints=self.keep_checkpoints,
            max_validation_examples=self.max_validation_examples,
            max_sequence_tokens=self.max_sequence_tokens,
            max_pack_tokens=self.max_pack_tokens,
            precision=self.precision,
        )


@dataclass(frozen=True)
class ResolvedSettings:
    """The concrete settings of one training run (see ``LoraSettings`` for what each means).

    ``threads`` is not here on purpose: it changes speed, not the adapter, so it stays out of
    the content key.
    """

    rank: int
    alpha: float
    dropout: float
    target_modules: str | list[str]
    learning_rate: float
    epochs: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float | None
    eval_every: int
    patience: int
    min_delta: float
    checkpoint_every: int
    keep_checkpoints: int
    max_validation_examples: int
    max_sequence_tokens: int
    max_pack_tokens: int | None
    precision: Precision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up to the peak, then linear decay to 0 at ``total_steps``.

        After the warm-up this is transformers' "linear" schedule, step for step. During it,
        step 0 already gets peak/warmup rather than transformers' 0: a step at rate 0 would be
        wasted compute.
        """
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        remaining = max(0, self.total_steps - step)
        return self.learning_rate * remaining / max(1, self.total_steps - self.warmup_steps)
