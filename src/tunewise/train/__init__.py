"""LoRA fine-tuning of local models: fast (packed, answer-only loss), resumable, verified.

The public API (the lora and distill arms and the learning curve build on it)::

    from tunewise.train import LoraSettings, TrainingPair, train_adapter, load_adapter, list_adapters

    pairs = [TrainingPair(prompt=chat, answer="book_flight"), ...]      # chat: as the arm prompts
    result = train_adapter(backend, pairs, validation_pairs)            # backend: a LocalBackend
    result.adapter_dir, result.val_loss, result.stopped                 # see TrainResult
    tuned = load_adapter(backend, result.adapter_dir)                   # a LocalBackend, merged copy

Modules: config (settings and data-size defaults), data (pairs -> tokens -> packed rows),
forward (answer-only loss), lora (the LoRA layers, PEFT's format), loop (the training loop),
checkpoint (resumable, verified checkpoints), adapter (manifest, load, merge, export, list),
run (train_adapter: reuse, lock, resume, write).

Names are imported on first use, so that importing a light module of this package (or
planning a bake-off) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AdapterError": "adapter", "AdapterInfo": "adapter", "export_adapter": "adapter", "list_adapters": "adapter",
    "load_adapter": "adapter", "merge_adapter": "adapter", "verify_adapter": "adapter",
    "LoraSettings": "config", "ResolvedSettings": "config",
    "TrainingPair": "data",
    "TrainProgress": "loop",
    "TrainResult": "run", "measured_speed": "run", "train_adapter": "run",
}

__all__ = [
    "AdapterError", "AdapterInfo", "LoraSettings", "ResolvedSettings", "TrainProgress", "TrainResult",
    "TrainingPair", "export_adapter", "list_adapters", "load_adapter", "measured_speed", "merge_adapter",
    "train_adapter", "verify_adapter",
]

if TYPE_CHECKING:
    from tunewise.train.adapter import (
        AdapterError,
        AdapterInfo,
        export_adapter,
        list_adapters,
        load_adapter,
        merge_adapter,
        verify_adapter,
    )
    from tunewise.train.config import LoraSettings, ResolvedSettings
    from tunewise.train.data import TrainingPair
    from tunewise.train.loop import TrainProgress
    from tunewise.train.run import TrainResult, measured_speed, train_adapter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tunewise.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tunewise.train.{module}"), name)
    globals()[name] = value
    return value
