"""Attention for a packed row of many prompts after one shared prefix, without the waste.

The label search (``option_scoring._BestFirst``) packs the queries of many prompts (their own
tokens, then trie nodes) into one row after a shared prefix of ~650 tokens (instruction and
label list). Through stock SDPA every query is scored against every key of the row, masked:
the prefix, which it does see, but also every other prompt's suffix and nodes, which it may
not. On CLINC150 zero-shot with 16 prompts a row, that made attention a quarter of the
search's time, more than half of it on keys masked out; with long few-shot prompts, most.

Here a layer's attention is split where the softmax allows it:

1. all queries of the row against the prefix, unmasked (a window mask on sliding-window
   layers): the prefix is read once, in one kernel call;
2. each prompt's queries against that prompt's own keys only, as a padded batch of prompts;

and the two partial results are merged by their log-sum-exps, which is exactly softmax
attention over the whole row. The linear layers still see one unpadded row. PyTorch's CPU
flash-attention kernel returns the log-sum-exp, so this path is CPU only (``usable``); other
devices keep the stock path.

The function is registered with transformers' ``AttentionInterface`` under ``IMPLEMENTATION``;
``prefix_attention`` switches a model to it for one forward call, which passes the row's
layout as the ``prompt_blocks`` keyword.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

IMPLEMENTATION = "tunewise_prefix_sdpa"

_flash_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def usable(model: torch.nn.Module) -> bool:
    """Whether ``model`` runs stock SDPA on the CPU, where this attention can stand in for it."""
    return getattr(model.config, "_attn_implementation", None) == "sdpa" and model.device.type == "cpu"


@contextmanager
def prefix_attention(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s attention layers run ``prefix_sdpa_attention`` (a call that
    passes no ``prompt_blocks`` still gets stock SDPA). Only for the block: to everything else
    (training checks it) the model keeps reporting "sdpa"."""
    AttentionInterface.register(IMPLEMENTATION, prefix_sdpa_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    before = model.config._attn_implementation
    model.config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        model.config._attn_implementation = before


@dataclass
class PromptBlocks:
    """The layout of one packed row after a shared prefix, in the shapes the kernels take.

    ``prefix``: per layer, the prefix's KV with each kv head repeated for its query heads
    ([1, heads, P, d], made once per search by ``repeat_prefix``, not per layer and round).
    The row's queries belong to prompts (``query_owner`` [Q]) and so do its keys after the
    prefix (``key_owner`` [K]: earlier rounds' tokens, then these queries); ``allowed`` [Q, K]
    says which of its prompt's keys a query may see, ``window`` [Q, P] which prefix keys on
    sliding-window layers (``sliding_layers``; None: the whole prefix everywhere), and
    ``sliding_allowed`` which own keys there.
    """

    query_index: torch.Tensor  # [prompts, q_max]: row position of each prompt's queries (padded: 0)
    query_valid: torch.Tensor  # [prompts, q_max] bool
    key_index: torch.Tensor  # [prompts, k_max]
    mask: torch.Tensor  # additive [prompts, 1, q_max, k_max]
    sliding_mask: torch.Tensor | None  # the same with the window applied, for sliding layers
    window: torch.Tensor | None  # additive [1, 1, Q, P], for sliding layers
    window_empty: torch.Tensor | None  # [Q] bool: queries that see no prefix key on sliding layers
    prefix: Sequence[tuple[torch.Tensor, torch.Tensor]]
    sliding_layers: frozenset[int]

    @classmethod
    def build(
        cls,
        prefix: Sequence[tuple[torch.Tensor, torch.Tensor]],
        query_owner: torch.Tensor,
        key_owner: torch.Tensor,
        allowed: torch.Tensor,
        *,
        dtype: torch.dtype,
        sliding_layers: frozenset[int] = frozenset(),
        window: torch.Tensor | None = None,
        sliding_allowed: torch.Tensor | None = None,
    ) -> PromptBlocks:
        owners = torch.unique(query_owner)
        q_index, q_valid = _padded_positions(query_owner, owners)
        k_index, k_valid = _padded_positions(key_owner, owners)

        def block_mask(full: torch.Tensor) -> torch.Tensor:
            picked = full[q_index[:, :, None], k_index[:, None, :]] & q_valid[:, :, None] & k_valid[:, None, :]
            # A padding query sees the first key: a fully masked row gives NaN in some kernels.
            picked[:, :, 0] |= ~q_valid
            return _additive(picked[:, None], dtype)

        sliding_mask = block_mask(sliding_allowed) if sliding_allowed is not None else None
        window_mask = window_empty = None
        if window is not None and sliding_layers:
            window_mask = _additive(window[None, None], dtype)
            window_empty = ~window.any(-1)
        return cls(q_index, q_valid, k_index, block_mask(allowed), sliding_mask, window_mask, window_empty, prefix, sliding_layers)


def repeat_prefix(prefix: Sequence[tuple[torch.Tensor, torch.Tensor]], model: torch.nn.Module):
    """``prefix`` KV with each kv head repeated for the query heads that read it (GQA)."""
    config = model.config.get_text_config(decoder=True)
    n_rep = config.num_attention_heads // getattr(config, "num_key_value_heads", config.num_attention_heads)
    return [(repeat_kv(k, n_rep), repeat_kv(v, n_rep)) for k, v in prefix]


def _padded_positions(owner: torch.Tensor, owners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per owner (in ``owners`` order), the positions it holds in ``owner``, right-padded."""
    match = owner[None, :] == owners[:, None]  # [owners, length]
    counts = match.sum(1)
    width = max(1, int(counts.max()))
    # Stable sort puts each owner's positions first, in order.
    order = torch.sort((~match).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=owner.device)[None, :] < counts[:, None]
    return order.masked_fill(~valid, 0), valid


def prefix_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    prompt_blocks: PromptBlocks | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Softmax attention of a packed row over [shared prefix, each query's own prompt's keys].

    ``query`` [1, heads, Q, d]; ``key``/``value`` [1, kv heads, K, d], the row's keys after the
    prefix. Returns [1, Q, heads, d] as transformers' attention functions do. Without
    ``prompt_blocks``: stock SDPA.
    """
    if prompt_blocks is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    blocks = prompt_blocks
    heads = query.shape[1]
    n_rep = heads // key.shape[1]
    layer = module.layer_idx
    sliding = layer in blocks.sliding_layers
    # 1. All queries against the prefix: one kernel call, the prefix read once.
    prefix_k, prefix_v = blocks.prefix[layer]  # kv heads already repeated for their query heads
    window = blocks.window if sliding else None
    out_prefix, lse_prefix = _flash_cpu(query, prefix_k, prefix_v, attn_mask=window, scale=scaling)
    if window is not None:  # a query that sees none of the prefix: the kernel reports lse 0
        lse_prefix = lse_prefix.masked_fill(blocks.window_empty, float("-inf"))
    # 2. Each prompt's queries against its own keys, prompts as a padded batch.
    q = query[0][:, blocks.query_index].transpose(0, 1)  # [prompts, heads, q_max, d]
    k = key[0][:, blocks.key_index].transpose(0, 1)  # [prompts, kv heads, k_max, d]
    v = value[0][:, blocks.key_index].transpose(0, 1)
    out_b, lse_b = _flash_cpu(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep),
                              attn_mask=blocks.sliding_mask if sliding and blocks.sliding_mask is not None else blocks.mask,
                              scale=scaling)
    valid = blocks.query_valid
    rows = blocks.query_index[valid]
    out_own = torch.empty_like(out_prefix[0])  # [heads, Q, d]
    lse_own = torch.empty_like(lse_prefix[0])
    out_own[:, rows] = out_b.transpose(0, 1)[:, valid]
    lse_own[:, rows] = lse_b.transpose(0, 1)[:, valid]
    # 3. Softmax over the union: each part weighted by its share of the total mass.
    lse_prefix = lse_prefix[0]
    total = torch.logaddexp(lse_prefix, lse_own)
    out = out_prefix[0] * torch.exp(lse_prefix - total)[..., None] + out_own * torch.exp(lse_own - total)[..., None]
    return out.to(query.dtype).transpose(0, 1)[None].contiguous(), None


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The CPU flash kernel takes an additive mask of the query's dtype, not a boolean one."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
