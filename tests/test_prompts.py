"""Prompt building for the prompting arms: pure functions, no model.

Token counts here are whitespace splits (what ScriptedBackend counts), so budgets are exact.
"""

from __future__ import annotations

import json

import pytest

from tunewise.arms.prompts import (
    TRUNCATION_MARK,
    TURN_OVERHEAD_TOKENS,
    build_chat,
    example_cost,
    example_ref,
    example_turns,
    fit_examples,
    shared_prefix,
    shorten_example,
    task_brief,
    truncate_to_tokens,
    with_input,
)
from tunewise.models.base import Message
from tunewise.task.card import TaskCard
from tunewise.task.dataset import Example

LABELS = ["billing", "refund_request", "shipping_delay", "bug_report"]
SCHEMA = {
    "type": "object",
    "required": ["queue", "order_id"],
    "properties": {"queue": {"enum": LABELS}, "order_id": {"type": ["string", "null"]}},
}


def words(text: str) -> int:
    return len(text.split())


def card(kind: str, **fields) -> TaskCard:
    return TaskCard.model_validate(
        {"name": "t", "kind": kind, "instruction": "Route the support ticket.", "data": {"file": "t.jsonl"}, **fields}
    )


def example(text: str, output: str, line: int = 1) -> Example:
    return Example(input=text, output=output, source="t.jsonl", line=line)


def test_classify_prompt_lists_every_label_after_the_instruction():
    chat = build_chat(card("classify", labels=LABELS), "I was charged twice", labels=LABELS)
    system, user = chat
    assert system.role == "system" and user == Message("user", "I was charged twice")
    assert system.content.startswith("Route the support ticket.")
    assert "billing, refund_request, shipping_delay, bug_report." in system.content


def test_classify_prompt_without_labels_is_refused():
    with pytest.raises(ValueError, match="label set"):
        task_brief(card("classify"), labels=None)


def test_extract_prompt_carries_the_schema_as_json():
    system = build_chat(card("extract", output_schema=SCHEMA), "ticket", schema=SCHEMA)[0].content
    schema_text = system[system.index("{") :]
    assert json.loads(schema_text) == SCHEMA
    assert "JSON Schema" in system


def test_extract_prompt_without_a_schema_still_asks_for_one_object():
    system = task_brief(card("extract"))
    assert "one JSON object" in system and "Schema" not in system


def test_generate_and_qa_prompts_are_the_instruction_and_the_input():
    generate = build_chat(card("generate"), "Write a reply.")
    assert generate == (Message("system", "Route the support ticket."), Message("user", "Write a reply."))
    qa = build_chat(card("qa"), "Who shipped it?")
    assert qa[0].content.startswith("Route the support ticket.") and "one line" in qa[0].content
    assert qa[-1] == Message("user", "Who shipped it?")


def test_zero_shot_prompts_differ_only_in_the_last_turn():
    brief = task_brief(card("classify", labels=LABELS), labels=LABELS)
    first, second = (with_input(shared_prefix(brief), text) for text in ("parcel is late", "refund me"))
    assert first[:-1] == second[:-1]
    assert (first[-1].content, second[-1].content) == ("parcel is late", "refund me")


def test_few_shot_examples_are_prior_turns_in_a_shared_prefix():
    shots = [example("charged twice", "billing"), example("where is my box", " shipping_delay ", line=2)]
    assert example_turns(shots) == (
        Message("user", "charged twice"),
        Message("assistant", "billing"),
        Message("user", "where is my box"),
        Message("assistant", "shipping_delay"),  # outputs are stripped: the answer, nothing around it
    )
    brief = task_brief(card("classify", labels=LABELS), labels=LABELS)
    chats = [with_input(shared_prefix(brief, shots), text) for text in ("a", "b", "c")]
    assert len({chat[:-1] for chat in chats}) == 1  # the whole prefix is shared
    assert chats[0][0].role == "system"  # the instruction heads the prompt, before the examples
    assert [m.role for m in chats[0]] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_truncation_fits_the_budget_and_says_so():
    text = " ".join(f"w{i}" for i in range(100))
    cut = truncate_to_tokens(text, 10, words)
    assert words(cut) <= 10 and cut.endswith(TRUNCATION_MARK)
    assert cut.startswith("w0 w1 w2")
    assert words(cut) == 10  # the longest prefix that fits, not just any
    assert truncate_to_tokens("short enough", 10, words) == "short enough"


def test_shorten_example_cuts_the_input_and_keeps_the_output():
    long = example(" ".join(["word"] * 50), "billing", line=7)
    short = shorten_example(long, 8, words)
    assert words(short.input) <= 8 and short.output == "billing" and example_ref(short) == "t.jsonl:7"
    unchanged = example("tiny", "billing")
    assert shorten_example(unchanged, 8, words) is unchanged


def test_fit_examples_keeps_the_longest_leading_run_within_budget():
    shots = [example("a b c", "billing"), example("d e", "billing"), example("f", "billing")]
    costs = [example_cost(e, words) for e in shots]
    assert costs == [3 + 1 + TURN_OVERHEAD_TOKENS, 2 + 1 + TURN_OVERHEAD_TOKENS, 1 + 1 + TURN_OVERHEAD_TOKENS]
    assert fit_examples(shots, sum(costs), words) == shots
    assert fit_examples(shots, costs[0] + costs[1], words) == shots[:2]
    # The first does not fit: nothing does, even though a later one alone would.
    assert fit_examples(shots, costs[0] - 1, words) == []
