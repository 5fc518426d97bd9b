"""Where a generated JSON object ends, so a local model in json_mode stops there.

A JSON answer is finished the moment its top-level object closes; whatever a small model
writes after it ("This JSON object contains ...") costs decode steps, holds its whole batch
back (a batch runs until its last row stops), and makes the reply unparsable. The local
backend therefore starts a json_mode answer with ``{`` and ends each row where the object
closes, as a stop string would end it: the text is cut there. Nothing inside the object is
touched, so validity stays repair-free.
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria


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


class JsonObjectEnd(StoppingCriteria):
    """Ends each row of a batch once its answer (``lead`` + what it generated) holds a closed
    JSON object. ``prompt_width``: the input's length, where each row's generated tokens begin."""

    def __init__(self, tokenizer, prompt_width: int, lead: str = "{"):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.lead = lead

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_width :].tolist()
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        done = [object_end(self.lead + text) is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
