"""The store's call cache and embedding cache, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import event

from tunewise.errors import StoreError
from tunewise.store import Store, sha256_text
from tunewise.store.records import CachedCall

MODEL = "all-minilm-l6-v2@53aa51172d14/fp32"


def key(n: int) -> str:
    return hashlib.sha256(f"call {n}".encode()).hexdigest()


def call(n: int, *, output: object = None, latency_s: float = 0.25) -> CachedCall:
    document = output if output is not None else {"output": f"label {n}", "raw": f" label {n}\n", "valid": True}
    return CachedCall(key=key(n), model_id="local:smollm2-135m-instruct@b179c9523d0e", output=document,
                      tokens_in=100 + n, tokens_out=3, latency_s=latency_s, cost_usd=1e-6 * n)


def count_selects(store: Store) -> list[str]:
    statements: list[str] = []
    def record(_connection, _cursor, statement, *_):
        if statement.startswith("SELECT"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    return statements


# -- call cache ------------------------------------------------------------------------------


def test_cached_calls_round_trip_with_the_original_measurements(store: Store):
    entries = [call(n) for n in range(5)]
    store.cache_calls(entries)
    found = store.cached_calls([key(n) for n in range(8)])  # 5..7 were never cached
    assert set(found) == {key(n) for n in range(5)}
    for entry in entries:
        got = found[entry.key]
        assert (got.model_id, got.output, got.tokens_in, got.tokens_out, got.latency_s, got.cost_usd) == (
            entry.model_id, entry.output, entry.tokens_in, entry.tokens_out, entry.latency_s, entry.cost_usd)
        assert got.created_at is not None and got.created_at.tzinfo is not None


def test_caching_a_known_key_keeps_the_first_measurement(store: Store):
    store.cache_calls([call(1, latency_s=0.5)])
    # Again, and twice within one batch: neither an error nor a change.
    store.cache_calls([call(1, output={"output": "other"}, latency_s=9.0), call(2), call(2, latency_s=7.0)])
    found = store.cached_calls([key(1), key(2)])
    assert found[key(1)].latency_s == 0.5 and found[key(1)].output["output"] == "label 1"
    assert found[key(2)].latency_s == 0.25


def test_any_json_document_can_be_cached(store: Store):
    documents = ["plain text", ["a", 1, None], {"nested": {"list": [1.5, True]}, "unicode": "naïve ✓"}]
    store.cache_calls(call(n, output=doc) for n, doc in enumerate(documents))
    found = store.cached_calls([key(n) for n in range(len(documents))])
    assert [found[key(n)].output for n in range(len(documents))] == documents


def test_large_key_lists_are_looked_up_in_chunks(store: Store):
    store.cache_calls(call(n) for n in range(2500))  # more than one INSERT batch too
    selects = count_selects(store)
    wanted = [key(n) for n in range(0, 5000, 2)]  # 2,500 keys, half of them cached
    found = store.cached_calls(wanted + wanted[:10])  # repeated keys are asked once
    assert set(found) == {key(n) for n in range(0, 2500, 2)}
    assert len([s for s in selects if "call_cache" in s]) == 3  # 2,500 keys / 900 per query


def test_empty_requests_touch_nothing(store: Store):
    selects = count_selects(store)
    assert store.cached_calls([]) == {}
    store.cache_calls([])
    assert store.cached_embeddings(MODEL, []) == {}
    store.cache_embeddings(MODEL, {})
    assert selects == []


def test_bad_call_cache_entries_are_refused(store: Store):
    with pytest.raises(StoreError, match="not a sha256"):
        store.cache_calls([CachedCall("short", "m", {}, 1, 1, 0.1, 0.0)])
    with pytest.raises(StoreError, match="latency_s is nan"):
        store.cache_calls([CachedCall(key(0), "m", {}, 1, 1, float("nan"), 0.0)])
    assert store.cached_calls([key(0)]) == {}


# -- embedding cache -------------------------------------------------------------------------


def test_embeddings_round_trip_bit_for_bit(store: Store):
    rng = np.random.default_rng(0)
    vectors = {sha256_text(f"text {i}"): rng.standard_normal(384).astype(np.float32) for i in range(50)}
    store.cache_embeddings(MODEL, vectors)
    found = store.cached_embeddings(MODEL, [*vectors, sha256_text("never cached")])
    assert set(found) == set(vectors)
    for text_hash, vector in vectors.items():
        assert found[text_hash].dtype == np.float32 and found[text_hash].flags.writeable
        np.testing.assert_array_equal(found[text_hash], vector)


def test_embeddings_are_kept_per_model(store: Store):
    text_hash = sha256_text("hello")
    store.cache_embeddings(MODEL, {text_hash: np.ones(4, dtype=np.float32)})
    store.cache_embeddings("other-model@000000000000/fp32", {text_hash: np.full(8, 2.0)})  # float64: kept as float32
    store.cache_embeddings(MODEL, {text_hash: np.zeros(4)})  # already cached: the first vector stays
    np.testing.assert_array_equal(store.cached_embeddings(MODEL, [text_hash])[text_hash], np.ones(4))
    other = store.cached_embeddings("other-model@000000000000/fp32", [text_hash])[text_hash]
    assert other.dtype == np.float32 and other.tolist() == [2.0] * 8
    assert store.cached_embeddings("third-model", [text_hash]) == {}


def test_vectors_are_stored_as_little_endian_float32(store: Store):
    text_hash = sha256_text("endianness")
    store.cache_embeddings(MODEL, {text_hash: np.array([1.0, -2.5], dtype=">f8")})  # big-endian float64 in
    with store.engine.connect() as connection:
        dim, blob = connection.exec_driver_sql("SELECT dim, vector FROM embedding_cache").one()
    assert dim == 2 and bytes(blob) == np.array([1.0, -2.5], dtype="<f4").tobytes()


def test_many_embeddings_are_written_and_read_in_chunks(store: Store):
    vectors = {sha256_text(str(i)): np.full(16, i, dtype=np.float32) for i in range(2100)}
    store.cache_embeddings(MODEL, vectors)
    found = store.cached_embeddings(MODEL, list(vectors))
    assert len(found) == 2100 and found[sha256_text("2099")][0] == 2099


def test_bad_embeddings_are_refused(store: Store):
    with pytest.raises(StoreError, match="not a sha256"):
        store.cache_embeddings(MODEL, {"hello": np.ones(3)})
    with pytest.raises(StoreError, match="not one non-empty row"):
        store.cache_embeddings(MODEL, {sha256_text("x"): np.ones((2, 3))})
