"""How a chat becomes the token ids a local model reads, and how an answer is ended.

Instruct models: the model's own chat template, with the generation prompt, so the next tokens
are the assistant's answer. An option is scored as the complete answer: its text followed by
the template's end-of-turn marker (``<|im_end|>`` for SmolLM2). Without the marker, "cancel"
would always score at least as high as "cancel_reservation" (a real CLINC150 pair), since a
prefix can only be more likely than its extensions.

Base models: plain text, the messages' contents joined by blank lines. An answer follows after
a space (unless the prompt already ends in whitespace, e.g. "Intent:" -> " cancel") and is ended
by a newline.
"""

from __future__ import annotations

from tunewise.models.base import Chat

_SENTINEL = "\x00tunewise-answer\x00"


class PromptFormat:
    """Renders chats for one tokenizer, as an instruct (chat template) or base (plain text) model."""

    def __init__(self, tokenizer, *, chat: bool):
        self.tokenizer = tokenizer
        self.chat = chat
        self.answer_end = self._instruct_answer_end() if chat else "\n"

    def text(self, prompt: Chat) -> str:
        if not self.chat:
            return "\n\n".join(message.content for message in prompt)
        messages = [{"role": m.role, "content": m.content} for m in prompt]
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def tokenize(self, text: str) -> list[int]:
        # A chat template writes its own special tokens (BOS included where the model wants one);
        # plain text gets the tokenizer's usual ones.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def ids(self, prompt: Chat) -> list[int]:
        return self.tokenize(self.text(prompt))

    def answer_lead(self, prompt_text: str) -> str:
        """What separates a prompt rendered as ``prompt_text`` from its answer."""
        if self.chat or not prompt_text or prompt_text[-1].isspace():
            return ""
        return " "

    def answer_ids(self, option: str, *, lead: str = "") -> list[int]:
        """Tokens of ``option`` as a complete answer, after ``lead`` (see answer_lead)."""
        return self.tokenizer(lead + option + self.answer_end, add_special_tokens=False)["input_ids"]

    def _instruct_answer_end(self) -> str:
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
