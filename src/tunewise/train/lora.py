"""LoRA layers, added to a loaded model in place and taken out again, in PEFT's format.

y = W x + (alpha / r) * B (A x), with W frozen and A [r, in], B [out, r] trained (Hu et al. 2021).
Why not PEFT's own layers: PEFT computes ``result + lora_B(lora_A(x)) * scaling``, which writes
the full-width LoRA output, multiplies it by the scale and adds it, three passes over an
[tokens, out] tensor per adapted layer (seven per block) in each direction. Here one ``addmm``
adds the scaled low-rank product into the base output inside the matrix multiply. Everything
else is PEFT's: the "all-linear" selection (every linear layer but the LM head), A's
Kaiming-uniform and B's zero initialisation (the same draws for the same seed), the tensor names
and ``adapter_config.json``, so an exported adapter loads with ``PeftModel.from_pretrained`` and
gives the same outputs (tested).

``attach`` changes the model it is given (the caller's loaded backend, so no second copy of the
weights is needed for training) and ``Attached.detach`` restores it exactly: the original
modules and requires_grad flags. The base weights are never written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tunewise.errors import TunewiseError

PEFT_PREFIX = "base_model.model."  # how PEFT names a LoRA model's tensors: base_model.model.<module>.lora_A.weight


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (see the module doc)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        weight = base.weight
        dtype = weight.dtype if weight.dtype == torch.float64 else torch.float32  # fp32 master weights
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, rank, dtype=dtype, device=weight.device))
        # PEFT's draws, in PEFT's order: nn.Linear initialises A and B when it builds them, then
        # A is drawn again and B zeroed. The same seed therefore starts both from the same A.
        for parameter in (self.lora_A, self.lora_B, self.lora_A):
            nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        h = self.dropout(x)
        if not torch.is_autocast_enabled(x.device.type):
            h = h.to(self.lora_A.dtype)  # a bf16 base without autocast: the low-rank path in fp32
        low = F.linear(h, self.lora_A)
        flat = out.reshape(-1, out.shape[-1])
        # out + scaling * low @ B^T in one BLAS call: no full-width temporary, no separate scale and add.
        return torch.addmm(flat, low.reshape(-1, self.rank).to(flat.dtype), self.lora_B.t().to(flat.dtype),
                           alpha=self.scaling).view(out.shape)

    def delta(self) -> torch.Tensor:
        """The update to W: scaling * B @ A, [out, in], in fp32."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scaling


@dataclass
class Attached:
    """LoRA layers attached to a model: what to train, save, and how to take them off again."""

    model: nn.Module
    layers: dict[str, LoraLinear]  # module name -> its LoRA layer
    rank: int
    alpha: float
    dropout: float
    _originals: dict[str, nn.Linear] = field(default_factory=dict)
    _requires_grad: dict[str, bool] = field(default_factory=dict)

    def parameters(self) -> Iterator[nn.Parameter]:
        for name in sorted(self.layers):
            yield self.layers[name].lora_A
            yield self.layers[name].lora_B

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors under PEFT's names (copies on the CPU, contiguous)."""
        tensors = {}
        for name, layer in sorted(self.layers.items()):
            tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().to("cpu", copy=True).contiguous()
            tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().to("cpu", copy=True).contiguous()
        return tensors

    @torch.no_grad()
    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        expected = {f"{PEFT_PREFIX}{name}.lora_{part}.weight" for name in self.layers for part in "AB"}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise TunewiseError(
                f"adapter tensors do not match the model's layers (missing {missing[:3]}, unexpected {extra[:3]})",
                where="adapter", fix="load the adapter onto the base model it was trained on",
            )
        for name, layer in self.layers.items():
            for part, parameter in (("A", layer.lora_A), ("B", layer.lora_B)):
                value = tensors[f"{PEFT_PREFIX}{name}.lora_{part}.weight"]
                if value.shape != parameter.shape:
                    raise TunewiseError(f"adapter tensor {name}.lora_{part} has shape {tuple(value.shape)}, "
                                        f"the model needs {tuple(parameter.shape)}", where="adapter",
                                        fix="load the adapter onto the base model it was trained on")
                parameter.copy_(value)

    def detach(self) -> nn.Module:
        """Put the original linear layers back and restore requires_grad; returns the model."""
        for name, original in self._originals.items():
            _set_module(self.model, name, original)
        for name, parameter in self.model.named_parameters():
            if name in self._requires_grad:
                parameter.requires_grad_(self._requires_grad[name])
        self._originals.clear()
        self.layers.clear()
        return self.model

    def peft_config(self, base_model_name_or_path: str | None = None) -> dict:
        """``adapter_config.json`` as PEFT writes it for these layers."""
        return {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model_name_or_path,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": peft_target_modules(self.model, set(self.layers) | set(self._originals)),
            "bias": "none",
            "use_rslora": False,
            "use_dora": False,
            "fan_in_fan_out": False,
            "init_lora_weights": True,
            "modules_to_save": None,
            "inference_mode": True,
        }


def target_names(model: nn.Module, targets: str | list[str] | tuple[str, ...]) -> list[str]:
    """Names of the linear layers that get adapters: 'all-linear' (PEFT's rule: every nn.Linear
    but the output embedding), or those whose name is, or ends with '.' + , one of ``targets``."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is head:
            continue
        if targets == "all-linear" or any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise TunewiseError(f"no linear layer matches target_modules={targets!r}", where="LoraSettings.target_modules",
                            fix="use 'all-linear' or module names such as q_proj, v_proj")
    return names


def attach(model: nn.Module, *, rank: int, alpha: float, dropout: float,
           targets: str | list[str] | tuple[str, ...] = "all-linear") -> Attached:
    """Replace the target linear layers of ``model`` with LoRA layers (in place) and freeze the rest.

    A's initialisation draws from torch's global RNG: seed it first for a reproducible start.
    """
    if any(isinstance(m, LoraLinear) for m in model.modules()):
        raise TunewiseError("the model already has LoRA layers attached", where="train_adapter",
                            fix="detach the previous adapter first (or load the base model again)")
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    attached = Attached(model, {}, rank, alpha, dropout, _requires_grad=requires_grad)
    for name in target_names(model, targets):
        original = model.get_submodule(name)
        layer = LoraLinear(original, rank, alpha, dropout)
        _set_module(model, name, layer)
        attached.layers[name] = layer
        attached._originals[name] = original
    return attached


@torch.no_grad()
def merge_into(model: nn.Module, tensors: dict[str, torch.Tensor], *, rank: int, alpha: float) -> None:
    """Add an adapter's update to ``model``'s own weights (W += alpha/r * B A), in place."""
    scaling = alpha / rank
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[len(PEFT_PREFIX) : -len(".lora_A.weight")]
        b = tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"]
        weight = model.get_submodule(name).weight
        update = (b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)) * scaling
        weight.copy_((weight.float() + update).to(weight.dtype))


def peft_target_modules(model: nn.Module, names: set[str]) -> list[str]:
    """The shortest ``target_modules`` list that makes PEFT pick exactly ``names``: the layers'
    last name parts (q_proj, ...) when those select no other layer, else the full names."""
    short = sorted({name.rsplit(".", 1)[-1] for name in names})
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    selected = {n for n, m in model.named_modules()
                if isinstance(m, (nn.Linear, LoraLinear)) and m is not head
                and any(n == s or n.endswith("." + s) for s in short)}
    return short if selected == names else sorted(names)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
