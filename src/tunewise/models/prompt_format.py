"""How a chat becomes the text a local model reads, and where its answer begins and ends.

Instruct models: the model's own chat template, with the generation prompt, so the next tokens
are the assistant's answer. An answer ends with the template's end-of-turn marker
(``<|im_end|>`` for SmolLM2), and an option is scored as a complete answer, marker included.
Without the marker, "cancel" would always score at least as high as "cancel_reservation" (a
real CLINC150 pair), since a prefix can only be more likely than its extensions.

Base models read plain text, in one of two styles:

- one message: a text to continue ("The capital of France is", "...Intent:"). The answer
  follows after a space (none if the text ends in whitespace) and ends at the end of the line:
  " cancel\n";
- several messages (the arms' system / user / few-shot layout): the contents are paragraphs,
  separated by a blank line, and the answer is the next paragraph: the text gets a blank line
  and the answer ends with one ("cancel\n\n"), as the few-shot answers before it do.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunewise.models.base import Chat

_SENTINEL = "\x00tunewise-answer\x00"
PARAGRAPH = "\n\n"


@dataclass(frozen=True, slots=True)
class AnswerAffixes:
    """What goes around an answer's text: ``lead`` before it, ``end`` after it."""

    lead: str
    end: str


class PromptFormat:
    """Renders chats for one tokenizer, as an instruct (chat template) or base (plain text) model."""

    def __init__(self, tokenizer, *, chat: bool):
        self.tokenizer = tokenizer
        self.chat = chat
        self._turn_end = self._instruct_turn_end() if chat else None

    def text(self, prompt: Chat) -> str:
        """The prompt as the model reads it; the answer's first token comes next."""
        if self.chat:
            messages = [{"role": m.role, "content": m.content} for m in prompt]
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        text = PARAGRAPH.join(message.content for message in prompt)
        return text.rstrip() + PARAGRAPH if len(prompt) > 1 else text

    def tokenize(self, text: str) -> list[int]:
        # A chat template writes its own special tokens (BOS included where the model wants one);
        # plain text gets the tokenizer's usual ones.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def ids(self, prompt: Chat) -> list[int]:
        return self.tokenize(self.text(prompt))

    def affixes(self, prompt: Chat) -> AnswerAffixes:
        """How an answer to ``prompt`` starts and ends."""
        if self.chat:
            return AnswerAffixes("", self._turn_end or "")
        if len(prompt) > 1:
            return AnswerAffixes("", PARAGRAPH)
        text = prompt[0].content if prompt else ""
        return AnswerAffixes(" " if text and not text[-1].isspace() else "", "\n")

    def answer_ids(self, option: str, affixes: AnswerAffixes) -> list[int]:
        """Tokens of ``option`` as a complete answer."""
        return self.tokenizer(affixes.lead + option + affixes.end, add_special_tokens=False)["input_ids"]

    def _instruct_turn_end(self) -> str:
        """What the template writes after an assistant message, e.g. "<|im_end|>"."""
        probe = [{"role": "user", "content": "hi"}]
        try:
            opened = self.tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
            closed = self.tokenizer.apply_chat_template(
                [*probe, {"role": "assistant", "content": _SENTINEL}], tokenize=False
            )
        except Exception:  # noqa: BLE001 - a template may reject the probe; fall back to EOS
            closed = opened = ""
        if closed.startswith(opened) and _SENTINEL in closed:
            end = closed[closed.index(_SENTINEL) + len(_SENTINEL) :].strip()
            if end:
                return end
        return self.tokenizer.eos_token or ""
