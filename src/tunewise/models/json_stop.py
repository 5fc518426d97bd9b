"""How a local model in json_mode starts and ends its answer: with a JSON object.

Start: the first generated token must be one whose text starts with ``{`` (``JsonStart``).
Without it a small chat model answers the request in prose (SmolLM2-135M on SNIPS: 0 of 4
replies were JSON). Writing the ``{`` into the prompt instead is worse: it forces a token
boundary the model has rarely seen, and SmolLM2, whose few-shot answers all begin with the
token ``{"``, went on to write ``{{"intent": ...}}}`` or ``{country": ...`` (half of its
few-shot SNIPS answers invalid). Constraining the first token lets it pick ``{"`` itself.

End: a JSON answer is finished the moment its top-level object closes; whatever a small model
writes after it ("This JSON object contains ...") costs decode steps, holds its whole batch
back (a batch runs until its last row stops), and makes the reply unparsable. Each row stops
where its object closes (``JsonObjectEnd``), as a stop string would end it: the text is cut
there. Nothing inside the object is touched, so validity stays repair-free.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor, StoppingCriteria


def object_end(text: str) -> int | None:
    """The index just past the closing brace of the JSON object ``text`` starts with (after
    whitespace), or None: not an object, or not closed yet. Braces inside strings do not count."""
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def object_start_ids(tokenizer) -> list[int]:
    """The tokens an answer that is a JSON object may start with: their text, after leading
    whitespace, begins with ``{`` (``{``, ``{"``, `` {``, ``{\n``, ...). Special tokens excluded."""
    special = set(tokenizer.all_special_ids)
    vocabulary = tokenizer.get_vocab()
    return sorted(
        index
        for token, index in vocabulary.items()
        if index not in special and tokenizer.convert_tokens_to_string([token]).lstrip().startswith("{")
    )


class JsonStart(LogitsProcessor):
    """At the first generated position, only ``allowed`` tokens (see ``object_start_ids``)."""

    def __init__(self, allowed: list[int], prompt_width: int):
        self.allowed = torch.tensor(allowed, dtype=torch.long)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] != self.prompt_width:
            return scores
        allowed = self.allowed.to(scores.device)
        constrained = torch.full_like(scores, -math.inf)
        constrained[:, allowed] = scores[:, allowed]
        return constrained


class JsonObjectEnd(StoppingCriteria):
    """Ends each row of a batch once what it generated holds a closed JSON object.
    ``prompt_width``: the input's length, where each row's generated tokens begin."""

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_width :].tolist()
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        done = [object_end(text) is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
