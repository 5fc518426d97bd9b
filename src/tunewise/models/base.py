"""The one small interface every model backend implements.

Arms talk to models only through `Backend`: generate text, score a closed set of options,
count tokens, and say what a call cost. A backend may be a local transformers model, an
OpenAI-compatible HTTP endpoint, or (in unit tests only) a scripted fake.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


Chat = tuple[Message, ...]
"""A prompt: chat messages, rendered with the model's own chat template (or plain text for base models)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call consumed, for the latency and cost columns of the bake-off."""

    tokens_in: int
    tokens_out: int
    latency_s: float  # wall time attributed to this request (a batch's time shared by its members)
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    usage: Usage
    finish_reason: str = "stop"  # stop | length | error


@dataclass(frozen=True, slots=True)
class OptionScores:
    """Log-probabilities of each option as the continuation of one prompt."""

    logprobs: tuple[float, ...]  # sum of token log-probs per option, in the order the options were given
    usage: Usage

    @property
    def best(self) -> int:
        return max(range(len(self.logprobs)), key=self.logprobs.__getitem__)


@dataclass(frozen=True)
class GenerateOptions:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy: a bake-off must be reproducible
    stop: tuple[str, ...] = ()
    json_mode: bool = False  # ask the backend for a JSON object where it supports it
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class Backend(ABC):
    """A model that arms can call. Implementations batch internally as they see fit."""

    #: Stable identifier recorded with every prediction (e.g. "local:smollm2-135m-instruct@<sha>").
    model_id: str

    #: How many prompts a bake-off should hand over at once: per kind of call, "score" (label
    #: scoring) and "generate". More is faster where the backend batches; fewer loses less to a
    #: kill and shows progress sooner.
    batch_sizes: Mapping[str, int] = MappingProxyType({"score": 16, "generate": 16})

    @abstractmethod
    def generate(self, prompts: Sequence[Chat], options: GenerateOptions | None = None) -> list[Generation]:
        """One completion per prompt, in order."""

    @abstractmethod
    def score_options(self, prompts: Sequence[Chat], options: Sequence[str]) -> list[OptionScores]:
        """For each prompt, the log-probability of each option as the assistant's answer.

        Used for classification: choosing among labels by likelihood is constrained
        decoding, so the answer is always a valid label and no free text is parsed.
        """

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this model's tokenizer (an estimate where none is available)."""

    def close(self) -> None:
        """Release connections or memory."""
