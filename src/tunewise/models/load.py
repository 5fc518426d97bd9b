"""From a model spec, as a user writes it, to a loaded `Backend`.

Specs:
- ``openai:MODEL`` — an OpenAI-compatible endpoint: ``OPENAI_BASE_URL`` (default OpenAI) with
  the key in ``OPENAI_API_KEY``;
- ``openai:MODEL@URL`` — the same at an explicit base URL (vLLM, Ollama, llama.cpp server,
  a LiteLLM proxy: ``openai:llama3@http://localhost:11434/v1``);
- anything else — a local model: a catalog short name, a model folder or a hub id.
"""

from __future__ import annotations

import os

from tunewise.models.base import Backend
from tunewise.task.card import TaskCard

REMOTE_PREFIX = "openai:"


def is_remote(spec: str) -> bool:
    return spec.startswith(REMOTE_PREFIX)


def load_backend(spec: str, card: TaskCard | None = None) -> Backend:
    """Load the model ``spec`` names; prices come from the card's `costs` when given."""
    if is_remote(spec):
        from tunewise.models.openai_compat import DEFAULT_BASE_URL, OpenAICompatBackend

        model, _, base_url = spec.removeprefix(REMOTE_PREFIX).partition("@")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        overrides = card.costs.prices if card else None
        return OpenAICompatBackend(model, base_url=base_url, price_overrides=overrides)

    from tunewise.models.local import DEFAULT_PRICE_PER_HOUR, LocalBackend

    price = card.costs.machine_per_hour if card else DEFAULT_PRICE_PER_HOUR
    return LocalBackend.load(spec, price_per_hour=price)
