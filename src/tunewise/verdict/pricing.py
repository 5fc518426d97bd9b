"""What one request of an arm costs, from what the bake-off measured, at the card's prices.

Two bases, said out loud in the verdict:

- an arm on an API model (``openai:MODEL``) pays per token: its mean measured tokens in and out
  x the model's price (the card's ``costs.prices`` override, else the dated table);
- an arm on our own machine pays for compute time: its mean measured compute seconds per
  request once warm (the bake-off shares a batch's time among its members; the first batch,
  which also pays one-time warm-up, is left out when there are others) x
  ``costs.machine_per_hour``.

Recomputing from tokens and seconds (rather than reusing the stored dollars) lets a card with
new prices re-price an old run without re-running it. A cascade mixes the two (its first stage
usually local, its second often an API), so it keeps the dollars measured per answer.
"""

from __future__ import annotations

from tunewise.models.load import REMOTE_PREFIX
from tunewise.models.prices import Price, price_for
from tunewise.task.card import TaskCard
from tunewise.verdict.evidence import ArmEvidence
from tunewise.verdict.tco import ArmCostInput, Basis
from tunewise.verdict.words import usd


def api_model(spec: str | None) -> str | None:
    """The API model name of a remote spec ("openai:gpt-4o-mini@URL" -> "gpt-4o-mini"), else None."""
    if not spec or not spec.startswith(REMOTE_PREFIX):
        return None
    return spec.removeprefix(REMOTE_PREFIX).partition("@")[0]


def _stage_models(arm: ArmEvidence) -> list[str | None]:
    return [(arm.config.get(stage) or {}).get("model") for stage in ("first", "second")
            if isinstance(arm.config.get(stage), dict)]


def basis_of(arm: ArmEvidence) -> Basis:
    if arm.kind == "cascade":
        stages = _stage_models(arm)
        remote = [api_model(model) is not None for model in stages]
        if remote and all(remote):
            return "api"
        return "mixed" if any(remote) else "local"
    return "api" if api_model(arm.model) is not None else "local"


def price_of(arm: ArmEvidence, card: TaskCard) -> Price | None:
    name = api_model(arm.model)
    return price_for(name, card.costs.prices) if name is not None else None


def cost_input(
    arm: ArmEvidence,
    card: TaskCard,
    *,
    labels_needed: int = 0,
    training_examples: int = 0,
    eval_examples: int = 0,
) -> tuple[ArmCostInput, list[str]]:
    """The TCO's view of ``arm`` and any warnings about its price (an unknown API price)."""
    warnings: list[str] = []
    basis = basis_of(arm)
    machine = card.costs.machine_per_hour
    if arm.kind == "cascade" or arm.steady_compute_s_per_request is None and basis != "api":
        per_request = arm.stored_cost_per_request_usd or 0.0
        text = f"the dollars measured per answer in the bake-off ({usd(per_request * 1000)} per 1,000 requests)"
    elif basis == "api":
        price = price_of(arm, card)
        assert price is not None
        per_request = ((arm.tokens_in_mean or 0) * price.input_per_million
                       + (arm.tokens_out_mean or 0) * price.output_per_million) / 1e6
        source = "the task card's price" if price.source == "task card override" else (
            f"list prices as of {price.as_of}" if price.known else "no known price")
        text = (f"API tokens: {arm.tokens_in_mean or 0:,.0f} in + {arm.tokens_out_mean or 0:,.0f} out per request "
                f"at {source} (${price.input_per_million:g} / ${price.output_per_million:g} per million)")
        if not price.known:
            warnings.append(f"{arm.name}: {price.warning}")
    else:
        seconds = arm.steady_compute_s_per_request or 0.0
        per_request = seconds * machine / 3600
        text = (f"measured local compute: {seconds * 1000:,.0f} ms per request (the first batch's warm-up left out) "
                f"at ${machine:g} per machine-hour")
    training = arm.prepare_cost_usd
    if training is None and arm.prepare_s is not None and basis != "api":
        training = arm.prepare_s * machine / 3600
    return ArmCostInput(
        name=arm.name, kind=arm.kind, basis=basis, cost_per_request_usd=per_request, training_usd=training or 0.0,
        labels_needed=labels_needed, training_examples=training_examples, eval_examples=eval_examples,
        basis_text=text,
    ), warnings
