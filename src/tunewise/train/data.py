"""Training pairs -> token ids -> packed rows, with the loss on answer tokens only.

Tokens exactly as at inference: the prompt's ids are ``backend.format.ids(chat)`` (the chat
template with its generation prompt, or a base model's plain text), and the answer's are the
option ids ``score_options`` scores (``backend.option_token_ids``), end-of-turn marker
included, so the model learns to stop where inference expects it to.

Packing. The arms' prompts all start with the same system message (the instruction, and for
CLINC150 a 151-label list: ~690 of a ~710-token prompt). A step's examples therefore go into
one row: their common prompt prefix once, then each example's own tokens (the rest of its
prompt, then its answer). A 4-D mask lets each example's tokens see the prefix and their own
earlier tokens, never another example's; position ids are what each token has in its own
unpacked sequence. The loss equals that of the examples run one by one (tests/test_train_data
compares them), with the prefix computed once per row instead of once per example and not a
single padding token.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunewise.errors import TunewiseError
from tunewise.models.base import Chat


@dataclass(frozen=True, slots=True)
class TrainingPair:
    """One supervised example: the prompt as the arm builds it at inference, and the answer to learn."""

    prompt: Chat
    answer: str


@dataclass(frozen=True, slots=True)
class EncodedPair:
    """A pair as token ids: the loss is taken on ``answer`` only."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.prompt) + len(self.answer)


@dataclass(frozen=True)
class PackedRow:
    """Several examples in one sequence behind their shared prompt prefix (see the module doc).

    ``segment`` is -1 on the shared prefix and the example's index within the row elsewhere;
    ``positions`` restart after the prefix for every example. The logits at ``predict_at``
    are scored against ``targets`` (each answer token, predicted by the token before it).
    """

    input_ids: torch.Tensor  # [L]
    positions: torch.Tensor  # [L]
    segment: torch.Tensor  # [L]
    predict_at: torch.Tensor  # [N]
    targets: torch.Tensor  # [N]
    n_examples: int
    plain_tokens: int  # tokens of its examples unpacked (prompt + answer each): what a plain loop runs

    @property
    def length(self) -> int:
        return int(self.input_ids.numel())


def pairs_digest(pairs: Sequence[TrainingPair]) -> str:
    """sha256 of the pairs' text, in order: part of an adapter's content key and its manifest."""
    digest = hashlib.sha256()
    for pair in pairs:
        record = {"prompt": [[m.role, m.content] for m in pair.prompt], "answer": pair.answer}
        digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def encode_pairs(backend, pairs: Sequence[TrainingPair], max_tokens: int) -> tuple[list[EncodedPair], int]:
    """Token ids of every pair that fits ``max_tokens``, and how many did not fit.

    ``backend`` is a LocalBackend: its prompt format renders the chat as inference does.
    """
    encoded: list[EncodedPair] = []
    too_long = 0
    ids_of: dict[Chat, tuple[int, ...]] = {}
    for index, pair in enumerate(pairs):
        if not isinstance(pair, TrainingPair):
            raise TunewiseError(f"training pair {index} is a {type(pair).__name__}, not a TrainingPair",
                                where="train_adapter", fix="pass TrainingPair(prompt=chat, answer=text) items")
        if not pair.answer.strip():
            raise TunewiseError(f"training pair {index} has an empty answer", where="train_adapter",
                                fix="drop examples without an expected output")
        prompt = ids_of.get(pair.prompt)
        if prompt is None:
            prompt = ids_of[pair.prompt] = tuple(backend.format.ids(pair.prompt))
        answer = tuple(backend.option_token_ids([pair.answer], prompt=pair.prompt)[0])
        if len(prompt) + len(answer) > max_tokens:
            too_long += 1
            continue
        encoded.append(EncodedPair(prompt, answer))
    return encoded, too_long


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The order of the training pairs in ``epoch``: a function of (seed, epoch) alone, so a
    resumed run needs only its step number to know which examples come next."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of the pairs trained at ``step`` (the last batch of an epoch may be smaller)."""
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    epoch, offset = divmod(step, steps_per_epoch)
    order = epoch_order(n, seed, epoch)
    return order[offset * batch_size : (offset + 1) * batch_size]


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for other in sequences[1:]:
        i = 0
        while i < length and other[i] == first[i]:
            i += 1
        length = i
    return length


def pack(examples: Sequence[EncodedPair], max_row_tokens: int) -> list[PackedRow]:
    """The examples in rows of at most ``max_row_tokens`` (one example longer than that gets a
    row of its own), in the order given, each row behind the examples' common prompt prefix."""
    if not examples:
        return []
    # Each example keeps at least its last prompt token in its own segment: that position
    # predicts the answer's first token.
    shortest = min(len(e.prompt) for e in examples)
    shared = max(0, min(common_prefix_length([e.prompt for e in examples]), shortest - 1))
    rows: list[list[EncodedPair]] = [[]]
    used = shared
    for example in examples:
        own = example.n_tokens - shared
        if rows[-1] and used + own > max_row_tokens:
            rows.append([])
            used = shared
        rows[-1].append(example)
        used += own
    prefix = examples[0].prompt[:shared]
    return [_row(prefix, members) for members in rows]


def _row(prefix: tuple[int, ...], members: Sequence[EncodedPair]) -> PackedRow:
    shared = len(prefix)
    ids: list[int] = list(prefix)
    positions: list[int] = list(range(shared))
    segment: list[int] = [-1] * shared
    predict_at: list[int] = []
    targets: list[int] = []
    for index, example in enumerate(members):
        start = len(ids)
        tokens = example.prompt[shared:] + example.answer
        ids.extend(tokens)
        positions.extend(range(shared, shared + len(tokens)))
        segment.extend([index] * len(tokens))
        first_answer = start + len(example.prompt) - shared
        predict_at.extend(range(first_answer - 1, first_answer - 1 + len(example.answer)))
        targets.extend(example.answer)
    return PackedRow(
        input_ids=torch.tensor(ids, dtype=torch.long),
        positions=torch.tensor(positions, dtype=torch.long),
        segment=torch.tensor(segment, dtype=torch.long),
        predict_at=torch.tensor(predict_at, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        n_examples=len(members),
        plain_tokens=sum(e.n_tokens for e in members),
    )
