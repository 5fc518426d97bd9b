"""The answer-only loss of a packed row: the decoder to hidden states, the LM head on answer positions.

A causal LM's forward computes logits for every position: vocabulary x hidden multiply-adds per
token (SmolLM2: 49,152 x 576, a fifth of the model's work per token) and a vocabulary-wide fp32
row per token (a ~700-token prompt: 140 MB of logits, and as much again for their gradient).
Training needs them only where an answer token is predicted, so the decoder runs alone and the
LM head (and Gemma's logit soft-capping, where configured) runs on those few positions.

The mask follows the packing (see data.py): a token sees the shared prefix and the earlier tokens
of its own example; sliding-window layers also drop keys further back than the window, measured
in the example's own positions. SDPA takes it as booleans, eager attention as an additive float.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunewise.train.data import PackedRow

_SUPPORTED_LAYER_TYPES = {"full_attention", "sliding_attention"}


class AnswerLoss:
    """Summed cross-entropy over a packed row's answer tokens for one causal LM."""

    def __init__(self, model: torch.nn.Module):
        config = model.config.get_text_config(decoder=True)
        self.model = model
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.window = getattr(config, "sliding_window", None)
        self.layer_types = getattr(config, "layer_types", None)
        if self.layer_types is None and self.window and getattr(config, "use_sliding_window", True):
            self.layer_types = ["sliding_attention"] * config.num_hidden_layers  # Mistral-style: every layer
        self.attention = getattr(config, "_attn_implementation", None) or "sdpa"

    def unsupported(self) -> str | None:
        """Why this model cannot be trained packed (None: it can)."""
        if self.head is None:
            return "the model has no output embeddings (LM head)"
        if self.layer_types is not None and not set(self.layer_types) <= _SUPPORTED_LAYER_TYPES:
            kinds = ", ".join(sorted(set(self.layer_types) - _SUPPORTED_LAYER_TYPES))
            return f"its layers ({kinds}) are not plain or sliding-window attention"
        if self.attention not in ("sdpa", "eager"):
            return f"its attention kernel ({self.attention}) ignores custom masks; load it with sdpa"
        return None

    def __call__(self, row: PackedRow, device: torch.device) -> torch.Tensor:
        """The summed (not averaged) loss of the row's answer tokens, a scalar on ``device``."""
        input_ids = row.input_ids.to(device, non_blocking=True)[None]
        positions = row.positions.to(device, non_blocking=True)[None]
        hidden = self.decoder(
            input_ids=input_ids,
            position_ids=positions,
            attention_mask=self._masks(row, device),
            use_cache=False,
        ).last_hidden_state[0]
        picked = hidden.index_select(0, row.predict_at.to(device))
        logits = self.head(picked)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits.float(), row.targets.to(device), reduction="sum")

    def _masks(self, row: PackedRow, device: torch.device):
        segment = row.segment.to(device)
        positions = row.positions.to(device)
        length = segment.numel()
        index = torch.arange(length, device=device)
        causal = index[None, :] <= index[:, None]
        visible = (segment[None, :] == -1) | (segment[None, :] == segment[:, None])
        allowed = causal & visible
        if self.layer_types is None or "sliding_attention" not in self.layer_types:
            return self._as_mask(allowed)
        distance = positions[:, None] - positions[None, :]
        sliding = allowed & (distance < self.window)
        if all(kind == "sliding_attention" for kind in self.layer_types):
            return self._as_mask(sliding)
        return {"full_attention": self._as_mask(allowed), "sliding_attention": self._as_mask(sliding)}

    def _as_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = allowed[None, None]  # [batch 1, heads 1, queries, keys]
        if self.attention == "sdpa":
            return mask
        dtype = self.head.weight.dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
