"""Where a local model runs and in which precision.

GPU: bf16, the native training and inference precision of the models in the catalog. CPU: fp32
by default, chosen by measurement on the 2-core development machine (AMD EPYC, AVX-512 BF16, no
AMX): SmolLM2-135M scoring CLINC150's 151 labels ran 1.46x faster in bf16 (2.20 vs 3.21 s per
example, one thread), but per-option log-probs moved by 0.19 nats on average (up to 1.2), and
with a per-label prior removed the chosen label changed on 3 of 32 examples. A bake-off should
not trade its answers for speed by default; ``dtype="bfloat16"`` opts in.
"""

from __future__ import annotations

import torch

from tunewise.errors import TunewiseError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1") or the best available: CUDA when present."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise TunewiseError(f"unknown device {requested!r}", where="device", fix='use "cpu" or "cuda"') from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TunewiseError(
            "CUDA was asked for but torch sees no GPU",
            where="device",
            fix='use device "cpu", or install a CUDA build of torch on a machine with a GPU',
        )
    return device


def pick_dtype(device: torch.device, requested: str | torch.dtype | None = None) -> torch.dtype:
    """``requested`` or the default for ``device``: bf16 on GPU, fp32 on CPU."""
    if isinstance(requested, torch.dtype):
        return requested
    if requested is not None:
        try:
            return _DTYPES[requested]
        except KeyError:
            raise TunewiseError(
                f"unknown dtype {requested!r}", where="dtype", fix=f"use one of: {', '.join(_DTYPES)}"
            ) from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
