"""LocalBackend on tiny random models with a real tokenizer; the bundled models in slow tests.

The fast tests build a 2-layer Llama (and Gemma 3, Qwen3 and Mistral models with a 6-token
sliding window, far shorter than the prompts) and a small byte-level BPE tokenizer with a ChatML template, save them with save_pretrained
and load them through the same code path as any model folder. The reference for every score
is written out here, independently of the library: one plain forward pass over prompt +
option, summed log-softmax.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from tiny_models import (
    INPUTS,
    INSTRUCTION,
    LABELS,
    write_gemma3,
    write_mistral,
    write_qwen3,
    write_tokenizer,
)

from tunewise.arms.answers import softmax
from tunewise.errors import TunewiseError
from tunewise.models import catalog, prefix_attention
from tunewise.models.base import GenerateOptions, Message
from tunewise.models.catalog import CatalogModel, resolve_model
from tunewise.models.gguf_cache import GgufPart, GgufSource
from tunewise.models.json_stop import (
    JsonObjectEnd,
    JsonStart,
    object_end,
    object_start_ids,
)
from tunewise.models.local import LocalBackend
from tunewise.models.option_scoring import OptionTrie, score_naive

_flash = prefix_attention._flash_cpu


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tiny models gain nothing from a second thread, and on a busy machine every parallel op
    waits for a descheduled thread: one thread keeps the fast suite fast."""
    if "slow" in request.keywords:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def llama_backend(tiny_llama) -> LocalBackend:
    return LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")


def _chat(text: str, instruction: str = INSTRUCTION) -> tuple[Message, ...]:
    return (Message("system", instruction), Message("user", text))


def _full_forward_scores(backend: LocalBackend, prompt, options) -> list[float]:
    """Reference: one plain forward pass over prompt + option tokens, per option."""
    prompt_ids = backend.format.ids(prompt)
    scores = []
    with torch.no_grad():
        for option_ids in backend.option_token_ids(options, prompt=prompt):
            ids = torch.tensor([prompt_ids + option_ids])
            logprobs = torch.log_softmax(backend.model(input_ids=ids).logits[0].double(), dim=-1)
            positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(option_ids) - 1)
            scores.append(sum(logprobs[p, t].item() for p, t in zip(positions, option_ids)))
    return scores


def _assert_matches_reference(backend: LocalBackend, prompts, options, results) -> None:
    """Exact scores equal the reference; a bounded score is at least the reference and below
    the best; the best option is the reference's (by more than float noise, or a near-tie)."""
    assert len(results) == len(prompts)
    for prompt, result in zip(prompts, results):
        expected = _full_forward_scores(backend, prompt, options)
        exact = getattr(result, "exact", None) or (True,) * len(options)
        for got, want, is_exact in zip(result.logprobs, expected, exact):
            if is_exact:
                assert got == pytest.approx(want, abs=2e-4)
            else:
                assert want - 2e-4 <= got < result.logprobs[result.best]
        reference_best = max(range(len(options)), key=expected.__getitem__)
        assert result.best == reference_best or expected[reference_best] - expected[result.best] < 2e-4
        assert exact[result.best]


# -- score_options --------------------------------------------------------------------------


def test_option_trie_shares_prefixes_and_skips_last_tokens():
    trie = OptionTrie.build([[5, 6, 7], [5, 6, 8], [9]])
    # internal nodes: (5,) and (5,6); the last tokens 7, 8 and 9 need no forward pass
    assert trie.node_tokens.tolist() == [5, 6]
    assert trie.node_depth.tolist() == [0, 1]
    assert trie.source_rows.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert trie.owners.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert trie.ancestors.tolist() == [[True, False], [True, True]]


def test_score_options_with_prefix_reuse_equals_full_forward(llama_backend):
    prompts = [_chat(text) for text in INPUTS]
    results = llama_backend.score_options(prompts, LABELS, exact=True)
    assert all(r.all_exact for r in results)
    _assert_matches_reference(llama_backend, prompts, LABELS, results)
    assert all(r.usage.tokens_in == len(llama_backend.format.ids(p)) for r, p in zip(results, prompts))


def test_best_first_scores_the_best_label_exactly_and_bounds_the_rest(llama_backend):
    prompts = [_chat(text) for text in INPUTS]
    pruned = llama_backend.score_options(prompts, LABELS)  # the default: best first
    full = llama_backend.score_options(prompts, LABELS, exact=True)
    _assert_matches_reference(llama_backend, prompts, LABELS, pruned)
    assert [r.best for r in pruned] == [r.best for r in full]
    assert sum(not e for r in pruned for e in r.exact) > 0  # some labels' tails never ran
    for bounded, exact in zip(pruned, full):
        # Bounds only raise the others: the best label's share is a lower bound of the exact one
        # (up to the float noise between two forward passes, as for the scores themselves).
        assert softmax(bounded.logprobs)[bounded.best] <= softmax(exact.logprobs)[exact.best] + 1e-4


def test_exact_scores_can_be_the_backend_default(tiny_llama):
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32", exact_scores=True)
    prompts = [_chat(text) for text in INPUTS[:2]]
    results = backend.score_options(prompts, LABELS)
    assert all(r.all_exact for r in results)
    _assert_matches_reference(backend, prompts, LABELS, results)
    assert not any(r.all_exact for r in backend.score_options(prompts, LABELS * 3, exact=False))


@pytest.mark.parametrize(
    "options",
    [
        [[40, 41, 42]],  # one option: its whole path runs
        [[40, 41], [40, 41, 42], [40], [43, 44]],  # options that are token prefixes of others
        [[40, 41], [43], [40, 41], [43]],  # duplicates: exact ties, the first one wins
        [[], [40, 41]],  # an empty option scores 0 without any pass
    ],
    ids=["one", "prefixes", "ties", "empty"],
)
def test_best_first_edge_cases_against_naive_scoring(llama_backend, options):
    prompts = [llama_backend.format.ids(_chat(text)) for text in INPUTS[:3]]
    trie = OptionTrie.build(options)
    pruned, exact = llama_backend.scorer.score_best_first(prompts, trie)
    reference = score_naive(llama_backend.model, prompts, options)
    assert pruned[exact] == pytest.approx(reference[exact], abs=2e-4)
    assert bool((pruned[~exact] >= reference[~exact] - 2e-4).all())
    for row in range(len(prompts)):
        best = int(pruned[row].argmax())  # torch's argmax: the first of equal maxima
        assert exact[row, best] and best == int(reference[row].argmax())
    if len(options) == 1:
        assert bool(exact.all())
    if options[0] == []:
        assert bool(exact[:, 0].all()) and bool((pruned[:, 0] == 0).all())
    if len(options) > 2 and options[0] == options[2]:
        assert bool((pruned[:, 0] == pruned[:, 2]).all()) and bool((pruned.argmax(1) != 2).all())


@pytest.mark.parametrize("build", [None, write_gemma3], ids=["llama", "gemma3"])
def test_prefix_read_once_attention_equals_the_stock_path(llama_backend, build, tmp_path, monkeypatch):
    """The best-first search's split attention (the shared prefix once for all prompts, each
    prompt's own keys apart, merged by log-sum-exp) gives the stock SDPA path's numbers; on
    Gemma 3's 6-token sliding windows some trie nodes see none of the prefix at all."""
    backend = llama_backend
    if build is not None:
        write_tokenizer(tmp_path)
        build(tmp_path)
        backend = LocalBackend.load(str(tmp_path), device="cpu", dtype="float32")
    calls = []
    monkeypatch.setattr(prefix_attention, "_flash_cpu", lambda *a, **k: calls.append(1) or _flash(*a, **k))
    prompts = [backend.format.ids(_chat(text)) for text in INPUTS]
    trie = OptionTrie.build(backend.option_token_ids(LABELS, prompt=_chat("x")))
    assert backend.scorer.read_prefix_once
    split, split_exact = backend.scorer.score_best_first(prompts, trie)
    assert calls and backend.model.config._attn_implementation == "sdpa"  # used, and switched back
    backend.scorer.read_prefix_once = False
    calls.clear()
    stock, stock_exact = backend.scorer.score_best_first(prompts, trie)
    assert not calls
    assert split.argmax(1).tolist() == stock.argmax(1).tolist()
    assert bool((split_exact == stock_exact).all())
    assert split == pytest.approx(stock, abs=2e-4)
    reference = score_naive(backend.model, prompts, backend.option_token_ids(LABELS, prompt=_chat("x")))
    assert split[split_exact] == pytest.approx(reference[split_exact], abs=2e-4)


def test_prefix_cache_is_sliced_and_extended_across_calls(llama_backend):
    # Different batches share different amounts with the cached prefix: all must stay exact.
    other_instruction = INSTRUCTION.replace("Answer with one label", "Reply with a single label")
    calls = [
        [_chat(t) for t in INPUTS[:3]],
        [_chat(INPUTS[3])],  # one prompt: the cache is cut back to the instruction and extended
        [_chat(t, other_instruction) for t in INPUTS[1:4]],  # shares only the start of the system turn
        [_chat(INPUTS[0]), _chat(INPUTS[4], other_instruction)],
    ]
    for prompts in calls:
        _assert_matches_reference(llama_backend, prompts, LABELS, llama_backend.score_options(prompts, LABELS))


def test_scores_without_prefix_reuse_and_naive_fallback_agree(tiny_llama):
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32", reuse_prefix=False)
    prompts = [_chat(text) for text in INPUTS[:3]]
    fast = backend.score_options(prompts, LABELS, exact=True)
    _assert_matches_reference(backend, prompts, LABELS, fast)
    _assert_matches_reference(backend, prompts, LABELS, backend.score_options(prompts, LABELS))
    naive = score_naive(
        backend.model,
        [backend.format.ids(p) for p in prompts],
        backend.option_token_ids(LABELS, prompt=prompts[0]),
    )
    assert torch.tensor([r.logprobs for r in fast], dtype=torch.float64) == pytest.approx(naive, abs=2e-4)
    backend.scorer._attention = "flash_attention_2"  # a kernel that ignores 4-D masks: the naive path
    assert not backend.scorer.supported
    _assert_matches_reference(backend, prompts, LABELS, backend.score_options(prompts, LABELS))


@pytest.mark.parametrize("build", [write_gemma3, write_qwen3, write_mistral], ids=["gemma3", "qwen3", "mistral"])
def test_sliding_window_models_score_equal_full_forward(build, tmp_path):
    write_tokenizer(tmp_path)
    build(tmp_path)
    backend = LocalBackend.load(str(tmp_path), device="cpu", dtype="float32")
    assert backend.scorer.supported
    prompts = [_chat(text) for text in INPUTS]
    assert len(backend.format.ids(prompts[0])) > 10 * 6  # far past the window
    # Generation keeps left padding: padding between a cached prefix and the rest would count
    # as distance in the window.
    assert backend._generation_prefix_length([backend.format.ids(p) for p in prompts]) == 0
    assert backend.generate(prompts[:2], GenerateOptions(max_new_tokens=3))[0].usage.tokens_out >= 1
    _assert_matches_reference(backend, prompts, LABELS, backend.score_options(prompts, LABELS, exact=True))
    _assert_matches_reference(backend, prompts, LABELS, backend.score_options(prompts, LABELS))


def test_base_model_scores_plain_text_in_both_styles(tiny_llama):
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    base = LocalBackend(backend.model, backend.tokenizer, name="tiny-base", kind="base")
    completion = [(Message("user", f"{INSTRUCTION}\nMessage: {t}\nIntent:"),) for t in INPUTS[:3]]
    paragraphs = [_chat(t) for t in INPUTS[:2]]
    assert base.format.text(completion[0]).endswith("Intent:")
    continuation = (Message("user", "The weather today is\n"),)
    assert base.tokenizer.decode(base.option_token_ids(["cancel"], prompt=continuation)[0]) == "cancel\n"
    assert base.tokenizer.decode(base.option_token_ids(["cancel"], prompt=completion[0])[0]) == " cancel\n"
    assert base.format.text(paragraphs[0]) == f"{INSTRUCTION}\n\n{INPUTS[0]}\n\n"
    assert base.tokenizer.decode(base.option_token_ids(["cancel"], prompt=paragraphs[0])[0]) == "cancel\n\n"
    mixed = [completion[0], paragraphs[0], completion[1], paragraphs[1]]  # one call, two tries
    _assert_matches_reference(base, mixed, LABELS, base.score_options(mixed, LABELS))
    _assert_matches_reference(base, mixed, LABELS, base.score_options(mixed, LABELS, exact=True))


def test_base_model_generation_stops_at_the_end_of_its_answer(tiny_llama):
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    base = LocalBackend(backend.model, backend.tokenizer, name="tiny-base", kind="base")
    one_line, paragraph = base.generate(
        [(Message("user", "Message: hi\nIntent:"),), _chat("hi")], GenerateOptions(max_new_tokens=40)
    )
    assert "\n" not in one_line.text and not one_line.text.startswith(" ")
    assert "\n\n" not in paragraph.text


def test_cached_prefix_is_dropped_when_weights_change_in_place(tiny_llama):
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    prompts = [_chat(text) for text in INPUTS[:2]]
    before = backend.score_options(prompts, LABELS, exact=True)
    with torch.no_grad():  # what an optimizer step does: in place
        backend.model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    after = backend.score_options(prompts, LABELS, exact=True)
    assert after[0].logprobs != pytest.approx(before[0].logprobs, abs=1e-3)
    _assert_matches_reference(backend, prompts, LABELS, after)


def test_score_options_chooses_by_the_end_of_answer_marker(llama_backend):
    # "cancel" is a token prefix of "cancel_reservation": the end-of-turn marker makes them
    # distinct answers instead of the shorter always winning.
    ids = llama_backend.option_token_ids(["cancel", "cancel_reservation"], prompt=_chat("x"))
    assert llama_backend.tokenizer.decode(ids[0]).endswith("<|im_end|>")
    assert ids[1][: len(ids[0]) - 1] == ids[0][:-1]


def test_score_options_needs_options(llama_backend):
    with pytest.raises(TunewiseError, match="at least one option"):
        llama_backend.score_options([_chat("hi")], [])


# -- generate -------------------------------------------------------------------------------


def test_batched_greedy_generation_equals_one_by_one(llama_backend):
    prompts = [_chat(text) for text in INPUTS]
    options = GenerateOptions(max_new_tokens=12)
    batched = llama_backend.generate(prompts, options)
    single = [llama_backend.generate([p], options)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.usage.tokens_out for g in batched] == [g.usage.tokens_out for g in single]
    assert any(g.text for g in batched)


def test_generation_reuses_the_shared_prefix_and_writes_the_same(tiny_llama):
    reusing = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    plain = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32", reuse_prefix=False)
    prompts = [_chat(text) for text in INPUTS]
    shared = reusing._generation_prefix_length([reusing.format.ids(p) for p in prompts])
    assert shared > len(reusing.format.ids(prompts[0])) // 2  # the instruction and the template around it
    for options in (GenerateOptions(max_new_tokens=12), GenerateOptions(max_new_tokens=12, json_mode=True)):
        fast, slow = reusing.generate(prompts, options), plain.generate(prompts, options)
        assert [g.text for g in fast] == [g.text for g in slow]
        assert [g.usage.tokens_out for g in fast] == [g.usage.tokens_out for g in slow]
        assert [g.usage.tokens_in for g in fast] == [g.usage.tokens_in for g in slow]
    assert len(reusing.scorer._prefix.tokens) == shared  # the prefix KV came from the shared cache


def test_generation_usage_and_length_limit(llama_backend):
    result = llama_backend.generate([_chat("book a flight")], GenerateOptions(max_new_tokens=5))[0]
    assert result.usage.tokens_in == len(llama_backend.format.ids(_chat("book a flight")))
    assert 1 <= result.usage.tokens_out <= 5
    if result.usage.tokens_out == 5:
        assert result.finish_reason == "length"
    assert result.usage.latency_s > 0
    assert result.usage.cost_usd == pytest.approx(result.usage.latency_s * 0.10 / 3600)


def test_stop_strings_cut_the_text(llama_backend):
    prompt = _chat("what is the weather today in the city")
    free = llama_backend.generate([prompt], GenerateOptions(max_new_tokens=20))[0].text
    assert len(free) >= 6, free
    stop = free[3:5]
    cut = free[: free.index(stop)]
    stopped = llama_backend.generate([prompt], GenerateOptions(max_new_tokens=20, stop=(stop,)))[0]
    assert stopped.text == cut
    assert stopped.finish_reason == "stop"
    assert stopped.usage.tokens_out < 20


def test_count_tokens_uses_the_real_tokenizer(llama_backend):
    text = "cancel my reservation please"
    assert llama_backend.count_tokens(text) == len(llama_backend.tokenizer.encode(text, add_special_tokens=False))
    assert 0 < llama_backend.count_tokens(text) < len(text)
    assert llama_backend.count_tokens("") == 0


# -- json_mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ('{"a": 1} and more', 8),
        ('  {"a": {"b": [1, {"c": 2}]}}\n\nok', 29),
        ('{"a": "a } brace and a \\" quote"} x', 33),  # braces and escaped quotes inside strings
        ('{"a": [1, 2', None),  # not closed yet
        ('```json\n{"a": 1}\n```', None),  # a fenced reply is not cut: the arms take the fence off
        ("[1, 2]", None),  # not an object
        ("", None),
    ],
)
def test_object_end_finds_the_close_of_the_top_level_object(text, end):
    assert object_end(text) == end


def test_json_object_end_stops_each_row_of_a_batch_on_its_own(llama_backend):
    tokenizer = llama_backend.tokenizer
    rows = ['{"a": "}"} tail', '{"a": [1', ' {"b": {}}']
    encoded = [tokenizer(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, encoded))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[7, 7] + e + [pad] * (width - len(e)) for e in encoded])
    assert JsonObjectEnd(tokenizer, prompt_width=2)(ids, None).tolist() == [True, False, True]


@pytest.fixture(scope="module")
def json_writer(tiny_llama) -> LocalBackend:
    """The tiny Llama taught (60 Adam steps on one sequence) to answer with a JSON object that
    prose follows, with no end-of-turn token: only the object's close can end the answer early."""
    backend = LocalBackend.load(str(tiny_llama), device="cpu", dtype="float32")
    text = backend.format.text(JSON_PROMPT) + '{"city": "paris"} and then some more text'
    ids = torch.tensor([backend.format.tokenize(text)])
    optimizer = torch.optim.Adam(backend.model.parameters(), lr=3e-2)
    torch.manual_seed(0)
    for _ in range(60):
        loss = backend.model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    backend.model.eval()
    return backend


JSON_PROMPT = (Message("system", "Answer in JSON."), Message("user", "book a flight to paris"))


def test_json_mode_ends_the_answer_where_the_object_closes(json_writer):
    free = json_writer.generate([JSON_PROMPT], GenerateOptions(max_new_tokens=30))[0]
    assert free.text.startswith('{"city": "paris"} and')  # it learned to go on after the object
    json = json_writer.generate([JSON_PROMPT] * 2, GenerateOptions(max_new_tokens=30, json_mode=True))
    for answer in json:
        assert answer.text == '{"city": "paris"}'
        assert answer.finish_reason == "stop"
        assert answer.usage.tokens_out < free.usage.tokens_out
        assert answer.usage.tokens_in == len(json_writer.format.ids(JSON_PROMPT))  # nothing written into the prompt


def test_json_mode_answers_start_with_a_brace_token_of_the_models_choice(llama_backend):
    tokenizer = llama_backend.tokenizer
    allowed = object_start_ids(tokenizer)
    assert allowed and all(tokenizer.decode([i]).lstrip().startswith("{") for i in allowed)
    assert tokenizer.convert_tokens_to_ids("{") in allowed
    free = llama_backend.generate([_chat(t) for t in INPUTS], GenerateOptions(max_new_tokens=6))
    assert not any(g.text.lstrip().startswith("{") for g in free)  # the random model never would
    forced = llama_backend.generate([_chat(t) for t in INPUTS], GenerateOptions(max_new_tokens=6, json_mode=True))
    for answer in forced:
        assert answer.text.lstrip().startswith("{")
        assert object_end(answer.text) is None or answer.text.rstrip().endswith("}")
        assert answer.usage.tokens_out <= 6


def test_json_start_constrains_only_the_first_generated_position():
    scores = torch.zeros(2, 6)
    first = JsonStart([1, 4], prompt_width=3)(torch.zeros(2, 3, dtype=torch.long), scores.clone())
    assert torch.isfinite(first).tolist() == [[False, True, False, False, True, False]] * 2
    later = JsonStart([1, 4], prompt_width=3)(torch.zeros(2, 4, dtype=torch.long), scores.clone())
    assert bool(torch.isfinite(later).all())


# -- loading --------------------------------------------------------------------------------


def test_local_folder_loads_with_a_content_fingerprint(tiny_llama, tmp_path):
    copy = tmp_path / "copied-model"
    shutil.copytree(tiny_llama, copy)
    resolved = resolve_model(str(copy))
    assert resolved.source == "folder" and resolved.kind is None
    backend = LocalBackend.load(resolved, device="cpu")
    original = LocalBackend.load(str(tiny_llama), device="cpu")
    assert backend.kind == "instruct"  # it has a chat template
    assert backend.model_id.startswith("local:copied-model@")
    assert backend.model_id.split("@")[1] == original.model_id.split("@")[1]  # same weights, same id
    assert backend.model.dtype == torch.float32


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TunewiseError, match="config.json") as info:
        resolve_model(str(tmp_path))
    assert info.value.where == str(tmp_path) and info.value.fix


def test_missing_folder_path_is_refused(tmp_path):
    with pytest.raises(TunewiseError, match="no such model folder"):
        resolve_model(str(tmp_path / "nowhere"))


def test_hub_id_offline_becomes_a_tunewise_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    resolved = resolve_model("no-such-org/no-such-model")
    assert resolved.source == "hub"
    with pytest.raises(TunewiseError) as info:
        LocalBackend.load(resolved, device="cpu")
    assert info.value.where == "no-such-org/no-such-model"
    assert "no-such-org/no-such-model" in str(info.value)
    assert "HF_HUB_OFFLINE" in info.value.fix and "local folder" in info.value.fix


def test_hub_id_loads_from_the_hub_cache_offline(tiny_llama, tmp_path, monkeypatch):
    # The real from_pretrained(hub_id) path, served by a hub cache laid out as huggingface_hub does.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    shutil.copytree(tiny_llama, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = LocalBackend.load("tiny-org/tiny-llama", device="cpu")
    assert backend.model_id == f"local:tiny-org/tiny-llama@{commit[:12]}"
    assert backend.generate([_chat("hi")], GenerateOptions(max_new_tokens=3))[0].usage.tokens_out >= 1


def test_catalog_name_loads_through_the_verified_cache(tiny_llama, monkeypatch):
    # A catalog entry whose "GGUF" is a file of an installed package, and whose dequantization
    # is replaced by copying the tiny model: the rest (verify, manifest, resolve, load) is real.
    from importlib import metadata

    from tunewise.models import gguf_cache

    dist = metadata.distribution("pytest")
    part = next(f for f in dist.files if str(f).endswith("pytest/__init__.py"))
    source = GgufSource(
        package="pytest",
        install_args=("pytest",),
        parts=(GgufPart("pytest", str(part)),),
        sha256=gguf_cache.sha256_file(Path(str(dist.locate_file(part)))),
    )
    entry = CatalogModel(name="tiny-test", description="tiny", kind="instruct", params=1, source=source)
    monkeypatch.setitem(catalog.CATALOG, "tiny-test", entry)
    monkeypatch.setattr(gguf_cache, "_dequantize", lambda _gguf, out: shutil.copytree(tiny_llama, out))
    backend = LocalBackend.load("tiny-test", device="cpu")
    manifest = json.loads((catalog.models_dir() / "tiny-test" / "manifest.json").read_text())
    assert backend.model_id == f"local:tiny-test@{manifest['files']['model.safetensors'][:12]}"
    assert backend.kind == "instruct"


# -- the bundled models (slow: dequantize real GGUF weights) ---------------------------------


@pytest.fixture(scope="session")
def bundled_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tunewise-home-bundled")


def _timed_pull_and_load(name: str, home: Path, monkeypatch) -> LocalBackend:
    monkeypatch.setenv("TUNEWISE_HOME", str(home))
    began = time.perf_counter()
    catalog.pull(name, progress=print)
    print(f"{name}: pull (cold on first use) {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    backend = LocalBackend.load(name, device="cpu")
    print(f"{name}: warm load (verify hashes + load) {time.perf_counter() - began:.2f} s")
    return backend


FOUR_INTENTS = ["weather", "translate", "book_flight", "timer"]


def _clinc_prompts(shared_datasets: Path, labels: list[str] | None, per_intent: int):
    """CLINC150 test messages (``per_intent`` of each of FOUR_INTENTS) under a zero-shot instruction."""
    rows = [json.loads(line) for line in (shared_datasets / "clinc150" / "test.jsonl").open()]
    labels = labels or sorted({r["output"] for r in rows})
    instruction = (
        "Classify the user's message into exactly one intent. Answer with the intent label only.\n"
        "Labels: " + ", ".join(labels)
    )
    picked = [r for intent in FOUR_INTENTS for r in [x for x in rows if x["output"] == intent][:per_intent]]
    return labels, [_chat(r["input"], instruction) for r in picked], [r["output"] for r in picked]


@pytest.mark.slow
def test_smollm2_from_the_catalog(bundled_home, monkeypatch, shared_datasets):
    backend = _timed_pull_and_load("smollm2-135m-instruct", bundled_home, monkeypatch)
    assert backend.kind == "instruct" and backend.model_id.startswith("local:smollm2-135m-instruct@")
    answer = backend.generate([(Message("user", "What is the capital of France?"),)], GenerateOptions(max_new_tokens=20))
    print("smollm2:", answer[0].text)
    assert "Paris" in answer[0].text and answer[0].finish_reason == "stop"

    labels, prompts, gold = _clinc_prompts(shared_datasets, FOUR_INTENTS, 3)
    chosen = [labels[r.best] for r in backend.score_options(prompts, labels)]
    print("smollm2, 4 intents:", list(zip(gold, chosen)))
    assert sum(c == g for c, g in zip(chosen, gold)) >= 5  # of 12; chance is 3

    # All 151 labels: uncalibrated, a 135M model mostly answers "yes" or "no" (the arms calibrate).
    labels, prompts, gold = _clinc_prompts(shared_datasets, None, 1)
    began = time.perf_counter()
    results = backend.score_options(prompts, labels)
    print(f"smollm2: scored {len(prompts)} x {len(labels)} labels in {time.perf_counter() - began:.1f} s")
    print("smollm2, 151 labels:", [(g, labels[r.best]) for g, r in zip(gold, results)])
    assert all(len(r.logprobs) == len(labels) and r.usage.tokens_in > 600 for r in results)
    few = labels[:6]  # exactness on the real model (the reference runs a full pass per label)
    _assert_matches_reference(backend, prompts[:2], few, backend.score_options(prompts[:2], few))


@pytest.mark.slow
def testwrite_gemma3_base_from_the_catalog(bundled_home, monkeypatch):
    backend = _timed_pull_and_load("gemma3-270m", bundled_home, monkeypatch)
    assert backend.kind == "base"
    continued, answered = backend.generate(
        [
            (Message("user", "The Eiffel Tower is in the city of"),),
            (Message("user", "Q: What is the capital of Germany?\nA: Berlin\nQ: What is the capital of France?\nA:"),),
        ],
        GenerateOptions(max_new_tokens=8),
    )
    print("gemma3:", continued.text, "|", answered.text)
    assert continued.text.startswith("Paris") and answered.text == "Paris"
    prompts = [(Message("user", f"Question: {q}\nAnswer:"),) for q in ("What color is the sky?", "What is 2 + 2?")]
    results = backend.score_options(prompts, ["blue", "four", "green"])
    assert [r.best for r in results] == [0, 1]
    _assert_matches_reference(backend, prompts, ["blue", "four", "green"], results)
