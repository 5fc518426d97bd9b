"""Training data: tokens exactly as at inference, packing without cross-example attention, and
an answer-only loss equal to the plain per-example loss of transformers, on four model families
(Gemma 3, Qwen3 and Mistral with a 6-token sliding window, far shorter than the prompts)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from tiny_models import (
    write_gemma3,
    write_llama,
    write_mistral,
    write_qwen3,
    write_tokenizer,
)
from tiny_training import MAPPING, chat, load_tiny, one_torch_thread, tiny_pairs

from tunewise.errors import TunewiseError
from tunewise.models.base import Message
from tunewise.models.local import LocalBackend
from tunewise.train import LoraSettings, TrainingPair
from tunewise.train.data import (
    EncodedPair,
    batch_indices,
    encode_pairs,
    epoch_order,
    pack,
    pairs_digest,
)
from tunewise.train.forward import AnswerLoss

FAMILIES = {"llama": write_llama, "gemma3": write_gemma3, "qwen3": write_qwen3, "mistral": write_mistral}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for name, write in FAMILIES.items():
        folder = tmp_path_factory.mktemp(f"tiny-{name}")
        write_tokenizer(folder)
        write(folder)
        folders[name] = folder
    return folders


@pytest.fixture(scope="module")
def llama(tiny_llama) -> LocalBackend:
    return load_tiny(tiny_llama)


def plain_loss_sum(model, examples: list[EncodedPair]) -> float:
    """The reference, written from transformers alone: each example on its own, labels -100 on
    the prompt, the model's own mean loss times the number of answer tokens."""
    total = 0.0
    with torch.no_grad():
        for example in examples:
            ids = torch.tensor([example.prompt + example.answer])
            labels = torch.tensor([[-100] * len(example.prompt) + list(example.answer)])
            total += model(input_ids=ids, labels=labels).loss.item() * len(example.answer)
    return total


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_answer_loss_equals_the_plain_per_example_loss(family_folders, family, attention):
    backend = load_tiny(family_folders[family])
    if attention == "eager":
        backend.model.set_attn_implementation("eager")
    examples, _ = encode_pairs(backend, tiny_pairs(copies=2), max_tokens=4096)
    rows = pack(examples, max_row_tokens=300)
    assert len(rows) > 1 and max(r.n_examples for r in rows) > 1  # several rows, several examples each
    loss = AnswerLoss(backend.model)
    assert loss.unsupported() is None
    with torch.no_grad():
        packed = sum(loss(row, torch.device("cpu")).item() for row in rows)
    assert packed == pytest.approx(plain_loss_sum(backend.model, examples), rel=1e-5)


def test_gradients_of_a_packed_row_equal_those_of_the_plain_loss(llama):
    examples, _ = encode_pairs(llama, tiny_pairs(copies=1), max_tokens=4096)
    weight = llama.model.model.layers[0].self_attn.q_proj.weight
    weight.requires_grad_(True)
    try:
        weight.grad = None
        for row in pack(examples, max_row_tokens=4096):
            AnswerLoss(llama.model)(row, torch.device("cpu")).backward()
        packed = weight.grad.clone()
        weight.grad = None
        for example in examples:
            ids = torch.tensor([example.prompt + example.answer])
            labels = torch.tensor([[-100] * len(example.prompt) + list(example.answer)])
            (llama.model(input_ids=ids, labels=labels).loss * len(example.answer)).backward()
        # fp32 sums in another order: compare the whole gradient, not element by element.
        assert (packed - weight.grad).norm() / weight.grad.norm() < 1e-5
    finally:
        weight.grad = None


def test_tokens_are_exactly_those_inference_scores(llama):
    pair = TrainingPair(chat("book a flight to paris"), "book_flight")
    [encoded], dropped = encode_pairs(llama, [pair], max_tokens=4096)
    assert dropped == 0
    assert list(encoded.prompt) == llama.format.ids(pair.prompt)
    assert list(encoded.answer) == llama.option_token_ids(["book_flight"], prompt=pair.prompt)[0]
    end_of_turn = llama.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert encoded.answer[-1] == end_of_turn  # the model learns to stop where scoring expects it


def test_packing_wastes_no_token_and_shares_the_prompt_prefix(llama):
    examples, _ = encode_pairs(llama, tiny_pairs(copies=1), max_tokens=4096)
    [row] = pack(examples, max_row_tokens=10_000)
    shared = int((row.segment == -1).sum())
    assert shared > 0 and all(list(e.prompt[:shared]) == row.input_ids[:shared].tolist() for e in examples)
    assert row.length == shared + sum(e.n_tokens - shared for e in examples)  # not one padding token
    assert row.plain_tokens == sum(e.n_tokens for e in examples)
    assert row.targets.tolist() == [t for e in examples for t in e.answer]
    # Each example restarts its positions after the prefix, as in its own sequence.
    for index, example in enumerate(examples):
        positions = row.positions[row.segment == index]
        assert positions.tolist() == list(range(shared, example.n_tokens))


def test_a_row_never_exceeds_its_token_limit_unless_one_example_does(llama):
    examples, _ = encode_pairs(llama, tiny_pairs(copies=2), max_tokens=4096)
    longest = max(e.n_tokens for e in examples)
    for limit in (longest, 2 * longest, 5 * longest):
        rows = pack(examples, max_row_tokens=limit)
        assert all(row.length <= limit for row in rows)
        assert sum(row.n_examples for row in rows) == len(examples)


def test_pairs_longer_than_the_limit_are_left_out_and_counted(llama):
    pairs = [*tiny_pairs(copies=1), TrainingPair(chat("paris " * 200), "oos")]
    kept, dropped = encode_pairs(llama, pairs, max_tokens=200)
    assert dropped == 1 and len(kept) == len(pairs) - 1


def test_bad_pairs_are_refused_with_the_fix(llama):
    with pytest.raises(TunewiseError, match="empty answer"):
        encode_pairs(llama, [TrainingPair(chat("hi"), "  ")], max_tokens=100)
    with pytest.raises(TunewiseError, match="not a TrainingPair"):
        encode_pairs(llama, [("hi", "oos")], max_tokens=100)


def test_the_data_order_is_a_function_of_seed_and_epoch():
    assert epoch_order(50, seed=3, epoch=1) == epoch_order(50, seed=3, epoch=1)
    assert epoch_order(50, seed=3, epoch=1) != epoch_order(50, seed=3, epoch=2)
    assert sorted(epoch_order(50, seed=3, epoch=1)) == list(range(50))
    # Steps walk through each epoch's order in batches; the last batch of an epoch is short.
    steps = [batch_indices(10, 4, seed=0, step=s) for s in range(3)]
    assert [len(b) for b in steps] == [4, 4, 2] and sorted(i for b in steps for i in b) == list(range(10))


def test_pairs_digest_changes_with_any_text():
    pairs = tiny_pairs(copies=1)
    changed = [*pairs[:-1], TrainingPair(pairs[-1].prompt, pairs[-1].answer + "x")]
    reordered = [pairs[-1], *pairs[:-1]]
    assert len({pairs_digest(pairs), pairs_digest(changed), pairs_digest(reordered)}) == 3
    system_only = [TrainingPair((Message("system", "a"),), "b")]
    assert pairs_digest(system_only) != pairs_digest([TrainingPair((Message("user", "a"),), "b")])


def test_defaults_scale_with_the_data_size():
    small, large = LoraSettings().resolve(40), LoraSettings().resolve(5000)
    assert (small.rank, small.batch_size) == (8, 8) and (large.rank, large.batch_size) == (16, 32)
    assert small.epochs > large.epochs and small.learning_rate > large.learning_rate
    assert small.total_steps == small.epochs * 5 and large.total_steps == large.epochs * 157
    assert 5 <= small.eval_every <= 50 and small.checkpoint_every == small.eval_every
    capped = LoraSettings(max_steps=7).resolve(5000)
    assert capped.total_steps == 7 and capped.warmup_steps == 1
    explicit = LoraSettings(rank=8, batch_size=8).resolve(40)
    assert explicit == small  # a field set to its default names the same run


def test_the_learning_rate_warms_up_then_decays_to_zero():
    s = LoraSettings(learning_rate=1e-3, max_steps=100, warmup_ratio=0.1).resolve(10_000)
    rates = [s.learning_rate_at(step) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:])) and rates[-1] == pytest.approx(1e-3 / 90)


def test_settings_are_validated_field_by_field():
    with pytest.raises(ValueError, match="rank"):
        LoraSettings(rank=0)
    with pytest.raises(ValueError, match="lernig_rate"):
        LoraSettings(lernig_rate=1e-3)


def test_mapping_labels_are_in_the_tiny_vocabulary(llama):
    # Guards the other training tests: a label the tokenizer splits into bytes still trains,
    # but these are meant to be cheap sequences.
    for _, label in MAPPING:
        assert len(llama.tokenizer(label, add_special_tokens=False)["input_ids"]) <= 6
