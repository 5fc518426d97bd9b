"""The dated price table, task-card overrides, and the scripted test backend's costs."""

from __future__ import annotations

import math
import re

import pytest

from tunewise.errors import TunewiseError
from tunewise.models.base import GenerateOptions, Message
from tunewise.models.prices import PRICES_AS_OF, Price, cost_usd, price_for, table
from tunewise.models.scripted import ScriptedBackend
from tunewise.task.card import PriceSpec


def test_table_is_dated_and_sane():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICES_AS_OF)
    for model, (input_price, output_price) in table().items():
        assert 0 < input_price <= output_price, model


def test_known_model_comes_from_the_table():
    price = price_for("gpt-4o-mini")
    assert (price.input_per_million, price.output_per_million) == (0.15, 0.60)
    assert price.source == "price table"
    assert price.as_of == PRICES_AS_OF
    assert price.known and price.warning is None


def test_provider_prefix_matches_the_bare_name():
    assert price_for("openai/gpt-4o-mini") == price_for("gpt-4o-mini")


def test_unknown_model_costs_zero_and_is_flagged():
    price = price_for("my-finetune-v3")
    assert (price.input_per_million, price.output_per_million) == (0.0, 0.0)
    assert price.known is False
    assert "costs.prices" in price.warning


def test_no_fuzzy_match_borrows_another_models_price():
    assert price_for("gpt-4o-2024-05-13").known is False  # that snapshot was priced differently


def test_overrides_win_over_the_table_as_dicts_or_card_specs():
    as_dict = price_for("gpt-4o-mini", {"gpt-4o-mini": {"input_per_million": 1, "output_per_million": 2}})
    as_spec = price_for("gpt-4o-mini", {"gpt-4o-mini": PriceSpec(input_per_million=1, output_per_million=2)})
    assert as_dict == as_spec == Price(1.0, 2.0, source="task card override")


def test_override_prices_an_unknown_model():
    price = price_for("llama3.2:1b", {"llama3.2:1b": {"input_per_million": 0.05, "output_per_million": 0.1}})
    assert price.known


def test_cost_usd():
    price = Price(2.0, 8.0, source="price table")
    assert cost_usd(price, 1_000_000, 0) == pytest.approx(2.0)
    assert cost_usd(price, 500, 250) == pytest.approx((500 * 2 + 250 * 8) / 1e6)
    assert cost_usd(price_for("no-such-model"), 10_000, 10_000) == 0.0


# -- ScriptedBackend (unit tests only) ---------------------------------------------------


def chat(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


def test_scripted_answers_from_a_dict_with_whitespace_tokens_and_price():
    backend = ScriptedBackend({"hello there": "general kenobi"}, price=Price(1e6, 2e6, source="test"))
    [generation] = backend.generate([chat("hello there")])
    assert generation.text == "general kenobi"
    assert (generation.usage.tokens_in, generation.usage.tokens_out) == (2, 2)
    assert generation.usage.cost_usd == pytest.approx(2 * 1 + 2 * 2)
    assert backend.calls == [chat("hello there")]


def test_scripted_unscripted_prompt_is_an_error_unless_defaulted():
    with pytest.raises(TunewiseError, match="no scripted answer"):
        ScriptedBackend({}).generate([chat("?")])
    [generation] = ScriptedBackend({}, default="dunno").generate([chat("?")])
    assert generation.text == "dunno"
    assert generation.usage.cost_usd == 0.0


def test_scripted_function_answers_and_max_tokens():
    backend = ScriptedBackend(lambda prompt: prompt[-1].content.upper() + " and more words")
    [generation] = backend.generate([chat("shout")], GenerateOptions(max_new_tokens=2))
    assert generation.text == "SHOUT and"
    assert generation.finish_reason == "length"


def test_scripted_option_scores():
    fixed = ScriptedBackend(option_scores={"b": -0.1, "a": -2.0})
    [scores] = fixed.score_options([chat("x")], ["a", "b", "c"])
    assert scores.logprobs == (-2.0, -0.1, -math.inf)
    assert scores.best == 1

    from_answer = ScriptedBackend({"x": "c"})
    assert from_answer.score_options([chat("x")], ["a", "b", "c"])[0].best == 2

    by_function = ScriptedBackend(option_scores=lambda prompt, options: [float(len(o)) for o in options])
    assert by_function.score_options([chat("x")], ["aa", "a", "aaa"])[0].best == 2
