"""Any OpenAI-compatible chat endpoint as a `Backend`: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM.

Requests go through the official ``openai`` client, but the retry loop is ours (the client's
``max_retries`` is 0), so what happens on each failure is exactly this:

* 408, 409, 429, 5xx, a dropped connection, a timeout: retry with exponential backoff and jitter,
  or after the server's ``Retry-After`` (seconds or an HTTP date, capped) when it sends one;
* 400, 401, 403, 404, 422 and any other 4xx: never retried; an `EndpointError` saying what to fix;
* a 200 whose body is not a chat completion: retried a few times, then an error naming the endpoint.

Cost is computed only from the successful response of each logical request, so a retried
request is never counted twice. ``generate`` runs up to ``max_concurrency`` requests at once
and returns results in input order.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlparse

from tunewise.errors import TunewiseError
from tunewise.models.base import Backend, Chat, GenerateOptions, Generation, Message, OptionScores, Usage
from tunewise.models.prices import Price, cost_usd, price_for

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CHARS_PER_TOKEN_ESTIMATE = 4  # English text under BPE tokenizers averages about 4 characters a token

# 408 and 409 are listed by OpenAI's own clients as transient; every other 4xx means the
# request itself is wrong and would fail identically (and possibly be billed) again.
_RETRYABLE_4XX = frozenset({408, 409, 429})
_T = TypeVar("_T")
_R = TypeVar("_R")


class EndpointError(TunewiseError):
    """A request to an OpenAI-compatible endpoint failed for good (after any retries).

    ``completed`` holds, when the failure ended a batch, the results that did succeed (None
    where a request failed or never ran), so a caller can keep what was already paid for.
    """

    def __init__(
        self,
        message: str,
        *,
        where: str,
        fix: str,
        status: int | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, where=where, fix=fix)
        self.status = status
        self.attempts = attempts
        self.completed: list[Any] | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a failed request again."""

    max_retries: int = 5  # retries after the first attempt, for 429/5xx/connection errors/timeouts
    backoff_base_s: float = 1.0  # first backoff; doubles each retry
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 60.0  # a server asking for longer still gets retried after this
    max_malformed_retries: int = 1  # a 200 with a body that is not a chat completion rarely heals

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: a random point in the upper half of base * 2**n.

        Jitter spreads the retries of a concurrent batch that failed together; keeping the
        lower half out keeps the growth exponential rather than occasionally near zero.
        """
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**retry_number))
        return ceiling * (0.5 + 0.5 * rng.random())

    def retry_after_s(self, headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
        """The wait the server asked for (``retry-after-ms``, ``Retry-After`` seconds or HTTP date), capped."""
        if not headers:
            return None
        wait_s: float | None = None
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            try:
                wait_s = float(milliseconds) / 1000
            except ValueError:
                wait_s = None
        value = headers.get("retry-after")
        if wait_s is None and value is not None:
            try:
                wait_s = float(value)
            except ValueError:
                try:
                    when = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    return None
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                wait_s = (when - (now or datetime.now(UTC))).total_seconds()
        if wait_s is None or math.isnan(wait_s):
            return None
        return min(max(wait_s, 0.0), self.max_retry_after_s)


# ---------------------------------------------------------------------------- the response


class _MalformedResponseError(Exception):
    """A 200 whose body is not a chat completion (HTML from a wrong URL, truncated JSON, ...)."""


@dataclass(frozen=True)
class _TokenChoice:
    """One generated token and the server's top alternatives at that position (all with log-probs)."""

    token: str
    logprob: float
    alternatives: tuple[tuple[str, float], ...]

    def candidates(self) -> tuple[tuple[str, float], ...]:
        if any(token == self.token for token, _ in self.alternatives):
            return self.alternatives
        return ((self.token, self.logprob), *self.alternatives)


@dataclass(frozen=True)
class _Completion:
    text: str
    finish_reason: str
    tokens_in: int | None  # None: the server sent no usage
    tokens_out: int | None
    token_choices: tuple[_TokenChoice, ...] | None  # None: the server sent no log-probs
    latency_s: float


def _parse_token_choices(logprobs: object) -> tuple[_TokenChoice, ...] | None:
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    choices = []
    try:
        for entry in content:
            alternatives = tuple(
                (str(alt["token"]), float(alt["logprob"])) for alt in (entry.get("top_logprobs") or ())
            )
            choices.append(_TokenChoice(str(entry["token"]), float(entry["logprob"]), alternatives))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # log-probs are an optional extra: a server's odd format falls back to the text
    return tuple(choices)


def _parse_completion(body: str, latency_s: float) -> _Completion:
    try:
        data = json.loads(body)
    except ValueError:
        raise _MalformedResponseError(f"the body is not JSON: {body[:120]!r}") from None
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _MalformedResponseError(f"the JSON has no choices[0].message: {body[:120]!r}") from None
    if content is not None and not isinstance(content, str):
        raise _MalformedResponseError(f"choices[0].message.content is not text: {content!r:.120}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return _Completion(
        text=content or "",
        finish_reason=str(choice.get("finish_reason") or "stop"),
        tokens_in=tokens_in if isinstance(tokens_in, int) else None,
        tokens_out=tokens_out if isinstance(tokens_out, int) else None,
        token_choices=_parse_token_choices(choice.get("logprobs")),
        latency_s=latency_s,
    )


# ---------------------------------------------------------------------------- options from answers

_ANSWER_DECORATION = " \t\r\n\"'`*.:;,!()[]"  # quotes, markdown and punctuation models wrap answers in


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(value - top) for value in values))


def _continues(piece: str, remaining: str) -> bool:
    """Whether a (case-folded) token continues the rest of an option, allowing trailing punctuation."""
    if remaining.startswith(piece):
        return True
    return piece.startswith(remaining) and piece[len(remaining) :].strip(_ANSWER_DECORATION) == ""


def _option_logprob(option: str, token_choices: Sequence[_TokenChoice]) -> float:
    """Log-prob of ``option`` read off the generated tokens and their top-k alternatives.

    Follows the generated tokens while they spell the option. Where the generated token
    departs from it, the best top-k alternative that continues the option is added and the
    walk stops: what the model would have said after that is unseen, so the score is an upper
    bound. An option that no top-k alternative continues gets -inf. Case is ignored (tokens
    that differ only in case are one answer and their probabilities are summed).
    """
    target = option.casefold()
    consumed = 0
    total = 0.0
    for choice in token_choices:
        remaining = target[consumed:]
        if not remaining:
            break
        generated = choice.token.casefold()
        if consumed == 0:
            generated = generated.lstrip(_ANSWER_DECORATION)
            if not generated:
                continue  # leading space or quote before the answer: shared by every option
        matching: list[tuple[str, float]] = []
        for token, logprob in choice.candidates():
            piece = token.casefold().lstrip(_ANSWER_DECORATION) if consumed == 0 else token.casefold()
            if piece and _continues(piece, remaining):
                matching.append((piece, logprob))
        if not matching:
            return -math.inf
        generated_continues = any(piece == generated for piece, _ in matching)
        followed = generated if generated_continues else max(matching, key=lambda pair: pair[1])[0]
        total += _logsumexp([logprob for piece, logprob in matching if piece == followed])
        consumed += len(followed)
        if not generated_continues:
            break
    return total


def _closest_option(text: str, options: Sequence[str]) -> int:
    """Index of the option the answer names: exact, then case-insensitive, then contained, then closest."""
    raw = text.strip()
    cleaned = raw.strip(_ANSWER_DECORATION)
    for candidate in (raw, cleaned):
        if candidate in options:
            return options.index(candidate)
    folded = cleaned.casefold()
    for index, option in enumerate(options):
        if option.strip().casefold() == folded:
            return index
    # "The answer is: billing" names an option inside a sentence: take the longest one named.
    named = [
        index
        for index, option in enumerate(options)
        if option.strip() and re.search(rf"(?<!\w){re.escape(option.strip().casefold())}(?!\w)", folded)
    ]
    if named:
        return max(named, key=lambda index: len(options[index]))
    return max(
        range(len(options)),
        key=lambda index: difflib.SequenceMatcher(None, folded, options[index].casefold()).ratio(),
    )


def _with_option_instruction(prompt: Chat, options: Sequence[str]) -> list[dict[str, str]]:
    instruction = "Answer with exactly one of the following options, copied exactly, and nothing else:\n" + "\n".join(
        options
    )
    messages = [{"role": message.role, "content": message.content} for message in prompt]
    # Appending to the last user turn, rather than adding a second user message, keeps the
    # strict user/assistant alternation some chat templates (llama.cpp, Mistral) insist on.
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{instruction}"}
    else:
        messages.append({"role": "user", "content": instruction})
    return messages


# ---------------------------------------------------------------------------- the backend


def _is_loopback(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    if host in ("localhost", "0.0.0.0"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_api_key(base_url: str, api_key_env: str) -> str:
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if _is_loopback(base_url):
        return "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key
    raise TunewiseError(
        f"no API key found in the environment variable {api_key_env}",
        where=base_url,
        fix=f"export {api_key_env}=<your key>, or set api_key_env to the variable that holds it",
    )


class OpenAICompatBackend(Backend):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    model: the model name the server knows (``gpt-4o-mini``, ``llama3.2:1b``, ...).
    base_url: the API root, usually ending in ``/v1`` (``http://localhost:11434/v1`` for Ollama).
    api_key_env: the environment variable holding the key; loopback servers need none.
    timeout_s: how long to wait for a response (per attempt) before the attempt counts as failed.
    max_concurrency: requests in flight at once within this backend.
    retry: when and how long to wait before retrying; see `RetryPolicy`.
    price_overrides: the task card's ``costs.prices``; they win over the dated price table.
    max_tokens_field: ``max_tokens`` for most servers; ``max_completion_tokens`` for OpenAI's
        reasoning models, which reject ``max_tokens``.
    use_logprobs: ask for top log-probs in `score_options` (turned off for good if the server
        rejects the parameter).
    token_counter: a real tokenizer's counting function; without it `count_tokens` estimates.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_concurrency: int = 8,
        retry: RetryPolicy | None = None,
        price_overrides: Mapping[str, object] | None = None,
        max_tokens_field: str = "max_tokens",
        use_logprobs: bool = True,
        top_logprobs: int = 20,
        token_counter: Callable[[str], int] | None = None,
    ) -> None:
        try:
            import openai
        except ImportError:  # pragma: no cover - depends on the environment
            raise TunewiseError(
                "the openai package is not installed", where="OpenAICompatBackend", fix="pip install openai"
            ) from None
        if max_concurrency < 1:
            raise TunewiseError(
                f"max_concurrency must be at least 1, got {max_concurrency}",
                where="OpenAICompatBackend",
                fix="set max_concurrency to 1 or more",
            )
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise TunewiseError(
                f"max_tokens_field must be max_tokens or max_completion_tokens, got {max_tokens_field!r}",
                where="OpenAICompatBackend",
                fix="use max_completion_tokens for OpenAI reasoning models, max_tokens otherwise",
            )
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = f"{self.base_url}/chat/completions"
        self.model_id = f"openai_compat:{model}@{self.base_url}"
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        self.price: Price = price_for(model, price_overrides)
        self.api_key_env = api_key_env
        self._max_tokens_field = max_tokens_field
        self._use_logprobs = use_logprobs
        self._top_logprobs = top_logprobs
        self._token_counter = token_counter
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=_resolve_api_key(self.base_url, api_key_env),
            base_url=self.base_url,
            timeout=timeout_s,
            max_retries=0,  # the retry loop below is the only one, so its behaviour is exactly as documented
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="tunewise-openai")
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    # -- the Backend interface ------------------------------------------------------------

    def generate(self, prompts: Sequence[Chat], options: GenerateOptions | None = None) -> list[Generation]:
        options = options or GenerateOptions()

        def one(prompt: Chat) -> Generation:
            messages = [{"role": message.role, "content": message.content} for message in prompt]
            completion = self._complete(self._request(messages, options))
            return Generation(
                text=completion.text,
                usage=self._usage(completion, prompt),
                finish_reason=completion.finish_reason,
            )

        return self._run_batch(one, prompts)

    def score_options(self, prompts: Sequence[Chat], options: Sequence[str]) -> list[OptionScores]:
        """Which option the model picks, as log-probabilities, as honestly as a chat API allows.

        Chat APIs cannot score an arbitrary continuation, so the model is asked to answer with
        exactly one of the listed options (greedy decoding), and then:

        * where the server returns top log-probs, each option's score is read off the generated
          tokens and their top-k alternatives (see `_option_logprob`): exact for the option the
          model generated, an upper bound for an option that departs from it after a shared
          prefix, and -inf for an option outside the top-k;
        * otherwise (or when no option appears among the log-probs) the answer text is mapped
          to an option (exact, then case-insensitive, then an option named inside the answer,
          then the closest by string similarity) and that option gets 0.0, every other -inf.
          These are not probabilities: only ``best`` means anything.
        """
        if not options:
            raise TunewiseError(
                "score_options needs at least one option", where=self.model_id, fix="pass the label names"
            )
        longest = max(self.count_tokens(option) for option in options)
        generate_options = GenerateOptions(max_new_tokens=2 * longest + 8, temperature=0.0)

        def one(prompt: Chat) -> OptionScores:
            messages = _with_option_instruction(prompt, options)
            completion = self._complete_scoring(messages, generate_options)
            scores = None
            if completion.token_choices:
                scores = tuple(_option_logprob(option, completion.token_choices) for option in options)
                if all(score == -math.inf for score in scores):
                    scores = None
            if scores is None:
                chosen = _closest_option(completion.text, options)
                scores = tuple(0.0 if index == chosen else -math.inf for index in range(len(options)))
            sent = tuple(Message(m["role"], m["content"]) for m in messages)  # type: ignore[arg-type]
            return OptionScores(logprobs=scores, usage=self._usage(completion, sent))

        return self._run_batch(one, prompts)

    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token) unless a ``token_counter`` was given.

        The endpoint's tokenizer is unknown (a vLLM server can host any model) and tiktoken
        downloads its vocabularies at first use, which fails offline; so unless the caller passes
        the real tokenizer, this is an estimate, and usage reported by the server is preferred
        wherever there is a response.
        """
        if self._token_counter is not None:
            return self._token_counter(text)
        return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # -- one logical request ----------------------------------------------------------------

    def _request(self, messages: list[dict[str, str]], options: GenerateOptions) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            self._max_tokens_field: options.max_new_tokens,
            "temperature": options.temperature,
            "seed": options.seed,
        }
        if options.stop:
            request["stop"] = list(options.stop)
        if options.json_mode:
            request["response_format"] = {"type": "json_object"}
        if options.extra:
            request["extra_body"] = dict(options.extra)  # server-specific fields (vLLM's guided_choice, ...)
        return request

    def _complete_scoring(self, messages: list[dict[str, str]], options: GenerateOptions) -> _Completion:
        request = self._request(messages, options)
        if not self._use_logprobs:
            return self._complete(request)
        try:
            return self._complete({**request, "logprobs": True, "top_logprobs": self._top_logprobs})
        except EndpointError as error:
            # Some servers reject the log-prob parameters outright; the text mapping still works.
            if error.status not in (400, 422) or "logprob" not in error.message.lower():
                raise
            log.warning("%s rejected log-probs; scoring options from the answer text instead", self.endpoint)
            self._use_logprobs = False
            return self._complete(request)

    def _complete(self, request: dict[str, Any]) -> _Completion:
        """One logical request: attempts until a chat completion arrives or the failure is final."""
        openai = self._openai
        retries = 0
        malformed = 0
        while True:
            started = time.monotonic()
            try:
                raw = self._client.chat.completions.with_raw_response.create(**request)
                return _parse_completion(raw.text, latency_s=time.monotonic() - started)
            except openai.APIStatusError as error:
                status = error.status_code
                if not (status in _RETRYABLE_4XX or status >= 500) or retries >= self.retry.max_retries:
                    raise self._status_error(error, attempts=retries + 1) from None
                delay = self.retry.retry_after_s(error.response.headers)
                if delay is None:
                    delay = self._backoff(retries)
                reason = f"HTTP {status}"
            except openai.APITimeoutError:
                if retries >= self.retry.max_retries:
                    raise EndpointError(
                        f"no response within {self.timeout_s:g} s ({retries + 1} attempts)",
                        where=self.endpoint,
                        fix=f"raise timeout_s (now {self.timeout_s:g}), lower max_concurrency, "
                        "or check that the server is not overloaded",
                        attempts=retries + 1,
                    ) from None
                delay, reason = self._backoff(retries), "timeout"
            except openai.APIConnectionError as error:
                if retries >= self.retry.max_retries:
                    cause = error.__cause__ or error
                    raise EndpointError(
                        f"connection failed ({retries + 1} attempts): {cause}",
                        where=self.endpoint,
                        fix="check that the server is running and that base_url is right",
                        attempts=retries + 1,
                    ) from None
                delay, reason = self._backoff(retries), "connection error"
            except _MalformedResponseError as error:
                if malformed >= self.retry.max_malformed_retries or retries >= self.retry.max_retries:
                    raise EndpointError(
                        f"answered 200 but not with a chat completion ({retries + 1} attempts): {error}",
                        where=self.endpoint,
                        fix="check that base_url is the OpenAI-compatible API root (it usually ends in /v1) "
                        "and that no proxy rewrites the response",
                        attempts=retries + 1,
                    ) from None
                malformed += 1
                delay, reason = self._backoff(retries), "malformed response"
            retries += 1
            log.info("%s: %s; retry %d in %.2f s", self.endpoint, reason, retries, delay)
            time.sleep(delay)

    def _backoff(self, retries: int) -> float:
        with self._rng_lock:  # random.Random is not safe to share between threads
            return self.retry.backoff_s(retries, self._rng)

    def _status_error(self, error: Any, *, attempts: int) -> EndpointError:
        status = error.status_code
        detail = str(error.message)[:300]
        if status == 401:
            fix = f"check the API key in {self.api_key_env}"
        elif status == 403:
            fix = f"the key is not allowed to use model {self.model!r}; check its project and permissions"
        elif status == 404:
            fix = f"check base_url (usually ends in /v1) and that the server serves model {self.model!r}"
        elif status == 429:
            fix = (
                f"still rate limited after {attempts} attempts: "
                f"lower max_concurrency (now {self.max_concurrency}) or raise max_retries"
            )
        elif status >= 500 or status in _RETRYABLE_4XX:
            fix = f"the server kept failing ({attempts} attempts): check its logs or try again later"
        else:
            fix = "the server rejected the request as sent; check the parameters this model accepts (see the message)"
        return EndpointError(f"HTTP {status}: {detail}", where=self.endpoint, fix=fix, status=status, attempts=attempts)

    def _usage(self, completion: _Completion, prompt: Chat) -> Usage:
        # Servers that omit usage (some proxies, old llama.cpp builds) get an estimate, so
        # costs are not silently zero.
        tokens_in = completion.tokens_in
        if tokens_in is None:
            tokens_in = sum(self.count_tokens(message.content) for message in prompt)
        tokens_out = completion.tokens_out
        if tokens_out is None:
            tokens_out = self.count_tokens(completion.text)
        return Usage(
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            # The successful attempt's time: retries and rate-limit waits depend on how hard the
            # bench pushed, not on the model being measured.
            latency_s=completion.latency_s,
            cost_usd=cost_usd(self.price, tokens_in, tokens_out),
        )

    # -- batches ----------------------------------------------------------------------------

    def _run_batch(self, one: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``one`` over ``items`` with at most ``max_concurrency`` in flight; results in input order.

        After the first failure no further request is sent, those in flight are allowed to
        finish (they are being paid for), and the error carries every result that did succeed
        in ``completed`` (None where a request failed or was never sent).
        """
        stop = threading.Event()

        def guarded(item: _T) -> _R | None:
            # A worker can pick up the next item before the failure is seen here, so each
            # request checks the flag itself rather than relying on cancelling futures.
            if stop.is_set():
                return None
            try:
                return one(item)
            except BaseException:
                stop.set()
                raise

        futures: list[Future[_R | None]] = [self._pool.submit(guarded, item) for item in items]
        wait(futures)
        failed = next((future for future in futures if future.exception() is not None), None)
        if failed is None:
            return [future.result() for future in futures]  # type: ignore[misc]
        error = failed.exception()
        if isinstance(error, EndpointError):
            error.completed = [None if future.exception() else future.result() for future in futures]
        raise error  # type: ignore[misc]
