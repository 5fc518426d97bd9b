"""The prompting arms' prompts, as pure functions: (card, labels / schema, examples, input) -> Chat.

One layout for every task kind::

    system     the card's instruction, then what an answer must look like
               (the label list, the JSON Schema, "a few words on one line")
    user       example input       } few-shot only: prior turns, as if the model had
    assistant  example output      } already answered them
    ...
    user       the input

Everything shared comes first and the per-example input comes last. LocalBackend computes
the KV cache of the longest common prefix of a batch's rendered prompts once (and keeps it
across batches), so a zero-shot or random few-shot prompt costs, per input, only the input's
own tokens. The instruction goes in the system message rather than the user turn for the same
reason: it then heads every prompt, before any example.

Token budgets are counted with the caller's ``count_tokens`` (the backend's tokenizer), so
these functions stay free of models and are tested without one.

Changing what any function here writes changes every prompting arm's answers: bump
``PROMPT_VERSION`` with it, since it is part of each candidate's config (and cache key).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tunewise.models.base import Chat, Message
from tunewise.task.card import Kind, TaskCard
from tunewise.task.dataset import Example

PROMPT_VERSION = "2"
# 2: what a local model answers changed, not the prompts: a json_mode answer's first token must
#    start with "{" and the answer ends where its object closes (models/json_stop.py). Cached
#    extract answers from version 1 must not be reused as if they were today's.

CountTokens = Callable[[str], int]

TURN_OVERHEAD_TOKENS = 8
"""Tokens a chat template adds around one user + assistant pair (role markers, newlines):
ChatML writes 5-6; the budget counts a few more so it errs on the short side."""

TRUNCATION_MARK = " [...]"


def answer_format(kind: Kind, *, labels: Sequence[str] | None = None, schema: Mapping[str, Any] | None = None) -> str:
    """What an answer must look like, in words: appended to the instruction."""
    if kind is Kind.classify:
        if not labels:
            raise ValueError("a classify prompt needs the label set")
        # Comma-separated rather than one per line: with 150 labels every token per label counts.
        return "Answer with exactly one label from this list, written as it is here: " + ", ".join(labels) + "."
    if kind is Kind.extract:
        if schema is None:
            return "Answer with one JSON object and nothing else."
        # Compact separators: the schema is read by the model once per prompt, spaces buy nothing.
        rendered = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
        return f"Answer with one JSON object that satisfies this JSON Schema, and nothing else:\n{rendered}"
    if kind is Kind.qa:
        return "Answer in a few words, on one line."
    return ""  # generate: the instruction says it all


def task_brief(card: TaskCard, *, labels: Sequence[str] | None = None, schema: Mapping[str, Any] | None = None) -> str:
    """The system message: the card's instruction and the answer format."""
    instruction = card.instruction.strip()
    form = answer_format(card.kind, labels=labels, schema=schema)
    return f"{instruction}\n\n{form}" if form else instruction


def example_turns(examples: Iterable[Example]) -> tuple[Message, ...]:
    """Examples as prior turns: the input as the user's, the expected output as the assistant's."""
    turns: list[Message] = []
    for example in examples:
        turns.append(Message("user", example.input))
        turns.append(Message("assistant", example.output.strip()))
    return tuple(turns)


def shared_prefix(brief: str, examples: Iterable[Example] = ()) -> Chat:
    """Everything before the input: the same for every input of a zero-shot or random few-shot arm."""
    return (Message("system", brief), *example_turns(examples))


def with_input(prefix: Chat, text: str) -> Chat:
    """The prompt for one input: the shared prefix, then the input as the last user turn."""
    return (*prefix, Message("user", text))


def build_chat(
    card: TaskCard,
    text: str,
    *,
    labels: Sequence[str] | None = None,
    schema: Mapping[str, Any] | None = None,
    examples: Iterable[Example] = (),
) -> Chat:
    """The whole prompt for one input (``shared_prefix`` + ``with_input`` in one call)."""
    return with_input(shared_prefix(task_brief(card, labels=labels, schema=schema), examples), text)


# -- token budgets ----------------------------------------------------------------------------


def truncate_to_tokens(text: str, max_tokens: int, count_tokens: CountTokens) -> str:
    """``text`` cut (with a visible mark) to at most ``max_tokens`` tokens; unchanged if it fits.

    Binary search on the character length: tokenizers are not monotone letter by letter, but
    close enough that the result fits and is within a token or two of the longest prefix that does.
    """
    if count_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle].rstrip() + TRUNCATION_MARK) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + TRUNCATION_MARK


def shorten_example(example: Example, max_input_tokens: int, count_tokens: CountTokens) -> Example:
    """The example with its input truncated to ``max_input_tokens``: one very long example must
    not crowd the others out of the budget. Outputs are kept whole: a cut label or JSON object
    would teach the wrong answer."""
    shortened = truncate_to_tokens(example.input, max_input_tokens, count_tokens)
    return example if shortened == example.input else dataclasses.replace(example, input=shortened)


def example_cost(example: Example, count_tokens: CountTokens) -> int:
    """Tokens one example adds to a prompt, template markers included."""
    return count_tokens(example.input) + count_tokens(example.output.strip()) + TURN_OVERHEAD_TOKENS


def fit_examples(examples: Sequence[Example], budget_tokens: int, count_tokens: CountTokens) -> list[Example]:
    """The longest leading run of ``examples`` (in the order given: best first) that fits the budget.

    A leading run rather than "skip the one that does not fit and try the next": the caller's
    order is its preference (nearest first), and a prompt must not depend on which later
    examples happen to be short.
    """
    kept: list[Example] = []
    spent = 0
    for example in examples:
        spent += example_cost(example, count_tokens)
        if spent > budget_tokens:
            break
        kept.append(example)
    return kept


def example_ref(example: Example) -> str:
    """Where an example came from, as ``file:line``: recorded so a prompt can be rebuilt."""
    return f"{example.source}:{example.line}"
