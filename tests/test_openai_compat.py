"""OpenAICompatBackend against a real HTTP server on loopback: every failure ends in a clear
error or a correct retry, and no request is ever billed twice."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fake_openai_server import Answer, Drop, FakeOpenAIServer, Malformed, Slow, Status

from tunewise.errors import TunewiseError
from tunewise.models.base import GenerateOptions, Message
from tunewise.models.openai_compat import (
    EndpointError,
    OpenAICompatBackend,
    RetryPolicy,
    _closest_option,
)

PRICES = {"fake-model": {"input_per_million": 1000.0, "output_per_million": 4000.0}}
FAST_RETRY = RetryPolicy(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, max_retry_after_s=5.0)


def chat(text: str) -> tuple[Message, ...]:
    return (Message("system", "You are terse."), Message("user", text))


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def make_backend(server):
    created = []

    def make(**overrides) -> OpenAICompatBackend:
        settings = {
            "base_url": server.base_url,
            "timeout_s": 5.0,
            "retry": FAST_RETRY,
            "price_overrides": PRICES,
            "max_concurrency": 4,
        }
        settings.update(overrides)
        backend = OpenAICompatBackend("fake-model", **settings)
        created.append(backend)
        return backend

    yield make
    for backend in created:
        backend.close()


def one_response_cost(prompt_tokens: int = 10, completion_tokens: int = 2) -> float:
    return (prompt_tokens * 1000.0 + completion_tokens * 4000.0) / 1_000_000


# -- the normal path ---------------------------------------------------------------------


def test_generate_returns_text_usage_and_cost(server, make_backend):
    server.script(Answer("Paris", prompt_tokens=12, completion_tokens=3))
    [generation] = make_backend().generate([chat("Capital of France?")])

    assert generation.text == "Paris"
    assert generation.finish_reason == "stop"
    assert (generation.usage.tokens_in, generation.usage.tokens_out) == (12, 3)
    assert generation.usage.cost_usd == pytest.approx(one_response_cost(12, 3))
    assert generation.usage.latency_s > 0
    assert server.request_count == 1


def test_request_carries_model_messages_and_options(server, make_backend):
    backend = make_backend()
    backend.generate(
        [chat("hi")],
        GenerateOptions(max_new_tokens=7, stop=("\n",), json_mode=True, seed=3, extra={"top_k": 5}),
    )
    body = server.received[0].body
    assert body["model"] == "fake-model"
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 7
    assert body["temperature"] == 0.0
    assert body["stop"] == ["\n"]
    assert body["seed"] == 3
    assert body["response_format"] == {"type": "json_object"}
    assert body["top_k"] == 5


def test_length_finish_reason_is_passed_through(server, make_backend):
    server.script(Answer("a b c", finish_reason="length"))
    [generation] = make_backend().generate([chat("count")])
    assert generation.finish_reason == "length"


def test_missing_usage_is_estimated_not_zero(server, make_backend):
    server.script(Answer("x" * 40, include_usage=False))
    [generation] = make_backend().generate([chat("y" * 80)])
    assert generation.usage.tokens_out == 10  # 40 characters at about 4 a token
    assert generation.usage.tokens_in > 0
    assert generation.usage.cost_usd > 0


def test_empty_batch_sends_nothing(server, make_backend):
    assert make_backend().generate([]) == []
    assert server.request_count == 0


# -- retries -----------------------------------------------------------------------------


def test_429_honours_retry_after_seconds_and_bills_once(server, make_backend):
    server.script(Status(429, headers={"Retry-After": "1"}), Answer("fine"))
    started = time.monotonic()
    [generation] = make_backend().generate([chat("q")])

    assert generation.text == "fine"
    assert server.request_count == 2
    assert server.received[1].at - server.received[0].at >= 1.0
    assert time.monotonic() - started >= 1.0
    assert generation.usage.cost_usd == pytest.approx(one_response_cost())


def test_retry_after_is_capped(server, make_backend):
    server.script(Status(429, headers={"Retry-After": "3600"}), Answer("fine"))
    backend = make_backend(retry=RetryPolicy(max_retries=2, backoff_base_s=0.01, max_retry_after_s=0.2))
    started = time.monotonic()
    [generation] = backend.generate([chat("q")])
    assert generation.text == "fine"
    assert time.monotonic() - started < 2.0


def test_500_then_success_is_retried_and_billed_once(server, make_backend):
    server.script(Status(500), Status(503), Answer("recovered", prompt_tokens=20, completion_tokens=5))
    [generation] = make_backend().generate([chat("q")])
    assert generation.text == "recovered"
    assert server.request_count == 3
    assert generation.usage.cost_usd == pytest.approx(one_response_cost(20, 5))


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_client_errors_are_tried_exactly_once(server, make_backend, code):
    server.script(Status(code, message="bad thing"))
    with pytest.raises(EndpointError) as caught:
        make_backend().generate([chat("q")])
    assert server.request_count == 1
    error = caught.value
    assert error.status == code
    assert error.attempts == 1
    assert error.where.endswith("/v1/chat/completions")
    assert "bad thing" in str(error)
    assert error.fix


def test_401_fix_names_the_key_variable(server, make_backend):
    server.script(Status(401))
    with pytest.raises(EndpointError) as caught:
        make_backend(api_key_env="MY_LLM_KEY").generate([chat("q")])
    assert "MY_LLM_KEY" in caught.value.fix


def test_persistent_429_gives_up_after_max_retries(server, make_backend):
    server.default = Status(429, headers={"Retry-After": "0"})
    with pytest.raises(EndpointError) as caught:
        make_backend().generate([chat("q")])
    assert server.request_count == FAST_RETRY.max_retries + 1
    assert caught.value.status == 429
    assert "max_concurrency" in caught.value.fix


def test_dropped_connection_is_retried(server, make_backend):
    server.script(Drop(), Answer("after drop"))
    [generation] = make_backend().generate([chat("q")])
    assert generation.text == "after drop"
    assert server.request_count == 2
    assert generation.usage.cost_usd == pytest.approx(one_response_cost())


def test_always_dropping_server_is_a_clear_error(server, make_backend):
    server.default = Drop()
    with pytest.raises(EndpointError) as caught:
        make_backend().generate([chat("q")])
    assert server.request_count == FAST_RETRY.max_retries + 1
    assert "connection" in caught.value.message
    assert "server is running" in caught.value.fix


def test_malformed_body_is_retried_then_succeeds(server, make_backend):
    server.script(Malformed(), Answer("good"))
    [generation] = make_backend().generate([chat("q")])
    assert generation.text == "good"
    assert server.request_count == 2
    assert generation.usage.cost_usd == pytest.approx(one_response_cost())


def test_persistent_malformed_body_is_a_bounded_clear_error(server, make_backend):
    server.default = Malformed(body=b"<html>Welcome to nginx</html>", content_type="text/html")
    with pytest.raises(EndpointError) as caught:
        make_backend().generate([chat("q")])
    assert server.request_count == FAST_RETRY.max_malformed_retries + 1
    assert caught.value.where == f"{server.base_url}/chat/completions"
    assert "not with a chat completion" in caught.value.message
    assert "/v1" in caught.value.fix


def test_timeout_is_retried_then_a_clear_error(server, make_backend):
    server.default = Slow(1.5)
    backend = make_backend(timeout_s=0.3, retry=RetryPolicy(max_retries=1, backoff_base_s=0.01))
    started = time.monotonic()
    with pytest.raises(EndpointError) as caught:
        backend.generate([chat("q")])
    assert time.monotonic() - started < 1.5
    assert server.request_count == 2
    error = caught.value
    assert error.where == f"{server.base_url}/chat/completions"
    assert "timeout_s" in error.fix
    assert "0.3" in str(error)


def test_slow_answer_within_timeout_is_not_retried(server, make_backend):
    server.script(Slow(0.3, then=Answer("late but fine")))
    [generation] = make_backend(timeout_s=2.0).generate([chat("q")])
    assert generation.text == "late but fine"
    assert server.request_count == 1


# -- batches -----------------------------------------------------------------------------


def test_concurrency_limit_and_input_order(server, make_backend):
    server.default = Answer(text=None, delay_s=0.15)  # echo the prompt, slowly
    prompts = [chat(f"prompt {index}") for index in range(12)]
    generations = make_backend(max_concurrency=3).generate(prompts)

    assert [generation.text for generation in generations] == [f"prompt {index}" for index in range(12)]
    assert server.max_in_flight == 3
    assert server.request_count == 12


def test_concurrency_of_one_is_sequential(server, make_backend):
    server.default = Answer(delay_s=0.02)
    make_backend(max_concurrency=1).generate([chat(str(index)) for index in range(5)])
    assert server.max_in_flight == 1


def test_batch_failure_keeps_the_results_already_paid_for(server, make_backend):
    def behave(body):
        text = body["messages"][-1]["content"]
        return Status(400, message="too long") if text == "bad" else Answer(text=None)

    server.default = behave
    with pytest.raises(EndpointError) as caught:
        make_backend(max_concurrency=1).generate([chat("a"), chat("bad"), chat("c")])
    completed = caught.value.completed
    assert completed is not None and len(completed) == 3
    assert completed[0].text == "a"
    assert completed[1] is None
    assert server.request_count == 2  # the request after the failure was never sent


def test_cost_of_a_retried_batch_equals_one_response_per_prompt(server, make_backend):
    server.script(Status(500), Drop(), Malformed(), Status(429, headers={"Retry-After": "0"}))
    generations = make_backend(max_concurrency=2).generate([chat(str(index)) for index in range(4)])
    assert server.request_count == 8
    assert sum(generation.usage.cost_usd for generation in generations) == pytest.approx(4 * one_response_cost())


# -- score_options -----------------------------------------------------------------------


def test_score_options_maps_text_to_the_option(server, make_backend):
    server.script(Answer("Billing."))
    [scores] = make_backend().score_options([chat("My card was charged twice")], ["refund", "billing", "other"])
    assert scores.logprobs == (-math.inf, 0.0, -math.inf)
    assert scores.best == 1
    assert scores.usage.cost_usd == pytest.approx(one_response_cost())
    sent = server.received[0].body["messages"][-1]["content"]
    assert sent.startswith("My card was charged twice")
    assert "refund\nbilling\nother" in sent
    assert server.received[0].body["logprobs"] is True


def test_score_options_uses_logprobs_when_the_server_sends_them(server, make_backend):
    logprobs = [
        {
            "token": "pos",
            "logprob": -0.2,
            "top_logprobs": [
                {"token": "pos", "logprob": -0.2},
                {"token": "neg", "logprob": -1.8},
                {"token": "Pos", "logprob": -3.0},
            ],
        },
        {"token": "itive", "logprob": -0.1, "top_logprobs": [{"token": "itive", "logprob": -0.1}]},
    ]
    server.script(Answer("positive", logprobs=logprobs))
    [scores] = make_backend().score_options([chat("great film")], ["negative", "positive", "neutral"])

    negative, positive, neutral = scores.logprobs
    assert positive == pytest.approx(math.log(math.exp(-0.2) + math.exp(-3.0)) - 0.1)
    assert negative == pytest.approx(-1.8)  # an upper bound: only its first token was seen
    assert neutral == -math.inf  # not among the top log-probs
    assert scores.best == 1


def test_score_options_falls_back_when_logprobs_are_rejected(server, make_backend):
    server.script(Status(400, message="logprobs are not supported by this model"), Answer("neutral"))
    backend = make_backend()
    [scores] = backend.score_options([chat("meh")], ["negative", "positive", "neutral"])
    assert scores.best == 2
    assert server.request_count == 2
    assert "logprobs" not in server.received[1].body
    backend.score_options([chat("meh")], ["negative", "positive", "neutral"])
    assert "logprobs" not in server.received[2].body  # remembered: no wasted request next time


def test_score_options_order_is_kept(server, make_backend):
    server.default = lambda body: Answer("yes" if "sunny" in body["messages"][-1]["content"] else "no")
    prompts = [chat("sunny day"), chat("rain"), chat("sunny again"), chat("fog")]
    results = make_backend(max_concurrency=4).score_options(prompts, ["no", "yes"])
    assert [result.best for result in results] == [1, 0, 1, 0]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("billing", 1),
        ("BILLING", 1),
        ('"Refund"', 0),
        ("The answer is: card lost", 2),
        ("I think it is about a lost card", 2),  # no option named: the closest string wins
        ("biling", 1),
    ],
)
def test_closest_option(answer, expected):
    assert _closest_option(answer, ["refund", "billing", "card lost"]) == expected


# -- keys, tokens, retry policy ----------------------------------------------------------


def test_missing_api_key_for_a_remote_endpoint_names_the_variable(monkeypatch):
    monkeypatch.delenv("TUNEWISE_TEST_KEY", raising=False)
    with pytest.raises(TunewiseError) as caught:
        OpenAICompatBackend("gpt-4o-mini", base_url="https://api.example.com/v1", api_key_env="TUNEWISE_TEST_KEY")
    assert "TUNEWISE_TEST_KEY" in caught.value.fix
    assert caught.value.where == "https://api.example.com/v1"


def test_loopback_endpoint_needs_no_key(server, make_backend, monkeypatch):
    monkeypatch.delenv("TUNEWISE_TEST_KEY", raising=False)
    make_backend(api_key_env="TUNEWISE_TEST_KEY").generate([chat("q")])
    assert server.request_count == 1


def test_key_from_the_environment_is_sent(server, make_backend, monkeypatch):
    monkeypatch.setenv("TUNEWISE_TEST_KEY", "sk-test-123")
    make_backend(api_key_env="TUNEWISE_TEST_KEY").generate([chat("q")])
    assert server.received[0].headers["authorization"] == "Bearer sk-test-123"


def test_count_tokens_is_an_estimate_unless_a_counter_is_given(server, make_backend):
    assert make_backend().count_tokens("x" * 41) == 11
    assert make_backend(token_counter=lambda text: len(text.split())).count_tokens("a b c") == 3


def test_unknown_model_price_is_flagged(server):
    backend = OpenAICompatBackend("no-such-model", base_url=server.base_url)
    try:
        assert backend.price.known is False
        assert backend.price.warning
    finally:
        backend.close()


def test_retry_after_parsing():
    policy = RetryPolicy(max_retry_after_s=30)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.retry_after_s({"retry-after": "2"}, now) == 2
    assert policy.retry_after_s({"retry-after-ms": "250"}, now) == 0.25
    assert policy.retry_after_s({"retry-after": format_datetime(now + timedelta(seconds=10), usegmt=True)}, now) == 10
    assert policy.retry_after_s({"retry-after": "600"}, now) == 30
    assert policy.retry_after_s({"retry-after": "-5"}, now) == 0
    assert policy.retry_after_s({"retry-after": "soon"}, now) is None
    assert policy.retry_after_s({}, now) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(0)
    for retry_number, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = {policy.backoff_s(retry_number, rng) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered
