"""What a hosted model's tokens cost: a dated list-price table, overridable per task.

Prices move (usually down) every few months, so the table carries the date its numbers were
checked (``PRICES_AS_OF``) and every `Price` says where it came from. A task card's
``costs.prices`` wins over the table; a model in neither costs 0 and is flagged ``known=False``
so the report can say the cost column is missing rather than silently showing a made-up price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PRICES_AS_OF = "2025-08-15"
"""The date the table's list prices (standard tier, no batch or cached-input discount) were checked."""

# Dollars per million tokens: (input, output). Only models whose list price was certain on
# PRICES_AS_OF; a guess would put a wrong number into a total-cost-of-ownership verdict.
# Dated snapshots are listed only where their price is known to equal the alias's: some older
# snapshots (e.g. gpt-4o-2024-05-13) were priced differently from the alias they belong to.
_TABLE: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    # Anthropic (through an OpenAI-compatible proxy such as LiteLLM)
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-3-7-sonnet-latest": (3.00, 15.00),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-3-haiku-20240307": (0.25, 1.25),
    # Google (through an OpenAI-compatible endpoint); 2.5 Pro at the <=200k-token prompt tier
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash": (0.10, 0.40),
}

_PROVIDER_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+/")  # "openai/gpt-4o" as LiteLLM and OpenRouter name it


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens for one model, and where the numbers came from."""

    input_per_million: float
    output_per_million: float
    source: str  # "task card override" | "price table" | "unknown"
    as_of: str | None = None  # the table's date when source is the table
    known: bool = True  # False: no price found; the cost is reported as 0 and must be flagged

    @property
    def warning(self) -> str | None:
        """A sentence for the report when this price cannot be trusted, else None."""
        if self.known:
            return None
        return "no price known for this model: its cost is counted as $0; add it under costs.prices in the task card"


def _lookup_names(model: str) -> list[str]:
    names = [model]
    stripped = _PROVIDER_PREFIX.sub("", model)
    if stripped != model:
        names.append(stripped)
    return names


def _from_override(spec: object) -> tuple[float, float]:
    # The task card gives pydantic PriceSpec objects; callers outside a card may give plain dicts.
    if isinstance(spec, Mapping):
        return float(spec["input_per_million"]), float(spec["output_per_million"])
    return float(spec.input_per_million), float(spec.output_per_million)  # type: ignore[attr-defined]


def price_for(model: str, overrides: Mapping[str, object] | None = None) -> Price:
    """The price of ``model``: the task card's override, else the dated table, else unknown (0, flagged).

    ``overrides`` is the task card's ``costs.prices``: model name -> ``{input_per_million,
    output_per_million}`` (a mapping or an object with those attributes). A name with a
    provider prefix (``openai/gpt-4o``) also matches the bare name. There is no fuzzy matching:
    a near-miss name would silently borrow another model's price.
    """
    names = _lookup_names(model)
    for name in names:
        if overrides and name in overrides:
            input_price, output_price = _from_override(overrides[name])
            return Price(input_price, output_price, source="task card override")
    for name in names:
        if name in _TABLE:
            input_price, output_price = _TABLE[name]
            return Price(input_price, output_price, source="price table", as_of=PRICES_AS_OF)
    return Price(0.0, 0.0, source="unknown", known=False)


def cost_usd(price: Price, tokens_in: int, tokens_out: int) -> float:
    """Dollars for one request that read ``tokens_in`` and wrote ``tokens_out`` tokens."""
    return (tokens_in * price.input_per_million + tokens_out * price.output_per_million) / 1_000_000


def table() -> dict[str, tuple[float, float]]:
    """A copy of the built-in table (model -> (input, output) dollars per million tokens)."""
    return dict(_TABLE)
