"""A deterministic fake backend, for unit tests ONLY.

`ScriptedBackend` answers from a dict or a function, so tests of arms, the bake-off and the
verdict run in milliseconds without a model or a network. It measures nothing real: its
token counts are whitespace splits and its latency is zero. Never use it for a bake-off result.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence

from tunewise.errors import TunewiseError
from tunewise.models.base import Backend, Chat, GenerateOptions, Generation, OptionScores, Usage
from tunewise.models.prices import Price, cost_usd

Answers = Mapping[str, str] | Callable[[Chat], str]
OptionScorer = Mapping[str, float] | Callable[[Chat, Sequence[str]], Sequence[float]]


def _last_user_text(prompt: Chat) -> str:
    for message in reversed(prompt):
        if message.role == "user":
            return message.content
    return prompt[-1].content if prompt else ""


class ScriptedBackend(Backend):
    """A scripted model, for unit tests ONLY: same input, same output, no model behind it.

    answers: a dict from the last user message's text to the reply, or a function of the whole
        chat. A prompt the dict does not cover is an error unless ``default`` is given, so a
        test cannot pass by accident on a reply nobody scripted.
    option_scores: fixed log-probabilities per option name (options not named get -inf), or a
        function ``(chat, options) -> scores``. Without it, the scripted answer's option gets
        0.0 and the others -inf, as `OpenAICompatBackend` does when it has no log-probs.
    price: dollars per million tokens to charge; zero cost when None.
    Every prompt seen is appended to ``calls`` so tests can assert what an arm sent.
    """

    def __init__(
        self,
        answers: Answers | None = None,
        *,
        default: str | None = None,
        option_scores: OptionScorer | None = None,
        price: Price | None = None,
        name: str = "scripted",
    ) -> None:
        self.model_id = f"scripted:{name}"
        self._answers = answers if answers is not None else {}
        self._default = default
        self._option_scores = option_scores
        self._price = price
        self._lock = threading.Lock()  # arms may call from several threads
        self.calls: list[Chat] = []

    def _record(self, prompt: Chat) -> None:
        with self._lock:
            self.calls.append(prompt)

    def _answer(self, prompt: Chat) -> str:
        if callable(self._answers):
            return self._answers(prompt)
        key = _last_user_text(prompt)
        if key in self._answers:
            return self._answers[key]
        if self._default is not None:
            return self._default
        raise TunewiseError(
            f"no scripted answer for the prompt {key[:80]!r}",
            where=self.model_id,
            fix="add the prompt to the answers dict or pass default=",
        )

    def _usage(self, prompt: Chat, reply: str) -> Usage:
        tokens_in = sum(self.count_tokens(message.content) for message in prompt)
        tokens_out = self.count_tokens(reply)
        cost = cost_usd(self._price, tokens_in, tokens_out) if self._price else 0.0
        return Usage(tokens_in=tokens_in, tokens_out=tokens_out, latency_s=0.0, cost_usd=cost)

    def generate(self, prompts: Sequence[Chat], options: GenerateOptions | None = None) -> list[Generation]:
        options = options or GenerateOptions()
        results = []
        for prompt in prompts:
            self._record(prompt)
            reply = self._answer(prompt)
            words = reply.split()
            finish_reason = "stop"
            if len(words) > options.max_new_tokens:
                reply, finish_reason = " ".join(words[: options.max_new_tokens]), "length"
            results.append(Generation(text=reply, usage=self._usage(prompt, reply), finish_reason=finish_reason))
        return results

    def _scores(self, prompt: Chat, options: Sequence[str]) -> tuple[float, ...]:
        if callable(self._option_scores):
            scores = tuple(float(score) for score in self._option_scores(prompt, options))
            if len(scores) != len(options):
                raise TunewiseError(
                    f"the option scorer returned {len(scores)} scores for {len(options)} options",
                    where=self.model_id,
                    fix="return one score per option, in the order given",
                )
            return scores
        if self._option_scores is not None:
            return tuple(float(self._option_scores.get(option, -math.inf)) for option in options)
        answer = self._answer(prompt).strip()
        return tuple(0.0 if option == answer else -math.inf for option in options)

    def score_options(self, prompts: Sequence[Chat], options: Sequence[str]) -> list[OptionScores]:
        results = []
        for prompt in prompts:
            self._record(prompt)
            scores = self._scores(prompt, options)
            chosen = options[max(range(len(scores)), key=scores.__getitem__)] if options else ""
            results.append(OptionScores(logprobs=scores, usage=self._usage(prompt, chosen)))
        return results

    def count_tokens(self, text: str) -> int:
        return len(text.split())
