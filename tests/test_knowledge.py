"""KnowledgeBase on the real embedding model and a real store (SQLite and PostgreSQL + pgvector)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tunewise.cli import cli
from tunewise.errors import DataError, StoreError, TunewiseError
from tunewise.knowledge import ChunkConfig, Hit, IngestReport, KnowledgeBase, delete_collection, list_collections
from tunewise.knowledge.embed import Embedder
from tunewise.knowledge.retrieve import CrossEncoderReranker, reciprocal_rank_fusion
from tunewise.knowledge.vectors import ExactIndex, top_k

DOCUMENTS = {
    "returns.md": "# Returns\n\nItems can be returned within 30 days of delivery for a full refund.\n\n"
                  "## Exceptions\n\nSale items and gift cards cannot be returned.\n",
    "shipping.md": "# Shipping\n\nOrders ship worldwide from our warehouse in Rotterdam.\n\n"
                   "Express delivery takes two business days.\n",
    "account/password.txt": "To reset your password, open Settings and choose Security.\n\n"
                            "Two-factor authentication can be enabled on the same page.\n",
    "faq.jsonl": json.dumps({"title": "Gift wrapping", "text": "Gift wrapping costs three euros per parcel."}) + "\n",
}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder.load("all-minilm-l6-v2")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    for name, text in DOCUMENTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def sources(hits: list[Hit]) -> list[str]:
    return [hit.source for hit in hits]


def test_sync_indexes_a_folder_and_search_finds_the_right_chunk(store, embedder, folder: Path):
    kb = KnowledgeBase.open(store, embedder, name="support-docs")
    report = kb.sync(folder)
    assert isinstance(report, IngestReport)
    assert report.added == ["account/password.txt", "faq.jsonl", "returns.md", "shipping.md"]
    assert (report.updated, report.removed, report.unchanged, report.skipped) == ([], [], [], [])
    assert report.chunks == report.chunks_embedded == 5  # returns: 2 headings; shipping, password: merged; faq: 1
    for mode in ("hybrid", "dense", "lexical"):
        hits = kb.search("how do I reset my password", k=3, mode=mode)
        assert hits[0].source == "account/password.txt", mode
        assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    top = kb.search("can I return sale items?", k=1)[0]
    assert (top.source, top.position["heading"], top.position["paragraphs"]) == (
        "returns.md", ["Returns", "Exceptions"], [1, 1])
    assert top.text == "Sale items and gift cards cannot be returned."
    assert top.covers("returns.md", 1) and not top.covers("returns.md", 0) and not top.covers("shipping.md", 1)
    source_text = (folder / "returns.md").read_text()
    assert source_text[top.position["start"] : top.position["end"]] == top.text
    assert kb.search("gift wrapping price", k=1)[0].position["record"] == 0


def test_resync_touches_only_changed_files_and_deleted_files_leave(store, embedder, folder: Path):
    kb = KnowledgeBase.open(store, embedder, name="docs")
    first = kb.sync(folder)
    assert kb.sync(folder).unchanged == first.added and kb.fingerprint == first.fingerprint
    (folder / "shipping.md").write_text("# Shipping\n\nOrders ship from Lisbon now.\n")
    (folder / "faq.jsonl").unlink()
    (folder / "new.md").write_text("# Loyalty\n\nMembers earn one point per euro.\n")
    report = kb.sync(folder)
    assert (report.added, report.updated, report.removed) == (["new.md"], ["shipping.md"], ["faq.jsonl"])
    assert report.unchanged == ["account/password.txt", "returns.md"]
    assert report.chunks_embedded == 2 and report.chunks == 5 - 1 + 1 + 1 - 1
    assert report.fingerprint == kb.fingerprint != first.fingerprint
    assert "faq.jsonl" not in sources(kb.search("gift wrapping costs", k=10, mode="lexical"))
    assert kb.search("where do orders ship from?", k=1)[0].text == "Orders ship from Lisbon now."
    assert [d.path for d in kb.documents()] == ["account/password.txt", "new.md", "returns.md", "shipping.md"]


def test_another_handle_sees_a_sync_made_elsewhere(store, embedder, folder: Path):
    reader = KnowledgeBase.open(store, embedder, name="shared")
    assert reader.search("password", k=3) == []  # empty collection: no hits, no error
    writer = KnowledgeBase.open(store, embedder, name="shared")
    writer.sync(folder)
    assert reader.search("reset my password", k=1)[0].source == "account/password.txt"
    (folder / "account" / "password.txt").unlink()
    writer.sync(folder)
    assert "account/password.txt" not in sources(reader.search("reset my password", k=10))


def test_search_many_matches_search_and_handles_blank_queries(store, embedder, folder: Path):
    kb = KnowledgeBase.open(store, embedder, name="docs")
    kb.sync(folder)
    queries = ["express delivery time", "", "refund window", "   "]
    batched = kb.search_many(queries, k=2)
    assert batched[1] == [] and batched[3] == []
    for query, hits in zip(queries, batched):
        if query.strip():
            assert [(h.chunk_id, h.rank) for h in hits] == [(h.chunk_id, h.rank) for h in kb.search(query, k=2)]


def test_bad_arguments_are_errors_with_fixes(store, embedder, folder: Path, tmp_path: Path):
    kb = KnowledgeBase.open(store, embedder, name="docs")
    with pytest.raises(TunewiseError, match="unknown search mode"):
        kb.search("x", mode="semantic")
    with pytest.raises(TunewiseError, match="k must be at least 1"):
        kb.search("x", k=0)
    with pytest.raises(TunewiseError, match="sequence of queries"):
        kb.search_many("one string")
    with pytest.raises(TunewiseError, match="name"):
        KnowledgeBase.open(store, embedder, name="  ")
    with pytest.raises(DataError, match="no such folder"):
        kb.sync(tmp_path / "missing")


def test_unreadable_files_are_skipped_and_reported_not_fatal(store, embedder, folder: Path):
    (folder / "broken.jsonl").write_text('{"text": "fine"}\n{not json\n')
    (folder / "latin1.txt").write_bytes(b"caf\xe9")
    kb = KnowledgeBase.open(store, embedder, name="docs")
    report = kb.sync(folder)
    reasons = dict(report.skipped)
    assert set(reasons) == {"broken.jsonl", "latin1.txt"}
    assert "invalid JSON" in reasons["broken.jsonl"] and "UTF-8" in reasons["latin1.txt"]
    assert len(report.added) == 4


def test_links_out_of_the_folder_never_reach_the_index(store, embedder, folder: Path, tmp_path: Path):
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nThe vault code is 4321.\n")
    (folder / "vault.md").symlink_to(secret)
    kb = KnowledgeBase.open(store, embedder, name="docs", max_bytes=10_000)
    (folder / "huge.txt").write_text("padding " * 5000)
    report = kb.sync(folder)
    assert dict(report.skipped).keys() == {"vault.md", "huge.txt"}
    assert all("4321" not in hit.text for hit in kb.search("vault code", k=10))


def test_changing_embedder_or_chunking_re_embeds_and_moves_the_fingerprint(store, embedder, folder: Path):
    kb = KnowledgeBase.open(store, embedder, name="docs")
    before = kb.sync(folder).fingerprint
    bf16 = Embedder.load("all-minilm-l6-v2", dtype="bfloat16")  # another model id: fp32 vs bf16
    other = KnowledgeBase.open(store, bf16, name="docs")
    with pytest.raises(StoreError, match="embedded with"):
        other.search("password", mode="dense")
    assert other.search("password", mode="lexical")[0].source == "account/password.txt"  # BM25 needs no vectors
    report = other.sync(folder)
    assert report.updated and not report.unchanged and report.fingerprint != before
    assert other.search("reset my password", k=1, mode="dense")[0].source == "account/password.txt"
    rechunked = KnowledgeBase.open(store, bf16, name="docs", chunking=ChunkConfig(merge_paragraphs=False))
    again = rechunked.sync(folder)
    assert again.chunks == 7 and again.fingerprint not in (before, report.fingerprint)


def test_collections_are_listed_and_deleted(store, embedder, folder: Path):
    KnowledgeBase.open(store, embedder, name="b").sync(folder)
    KnowledgeBase.open(store, embedder, name="a")
    assert [(row.name, documents, chunks) for row, documents, chunks in list_collections(store)] == [
        ("a", 0, 0), ("b", 4, 5)]
    assert delete_collection(store, "b") and not delete_collection(store, "b")
    assert [row.name for row, _, _ in list_collections(store)] == ["a"]


@pytest.mark.postgres
def test_pgvector_index_agrees_with_the_exact_index(postgres_url: str, embedder, folder: Path):
    from tunewise.store import open_store

    with open_store(postgres_url) as store:
        kb = KnowledgeBase.open(store, embedder, name="docs")
        assert kb.vector_index_kind == "pgvector"  # auto picks it on PostgreSQL with the extension
        kb.sync(folder)
        exact = KnowledgeBase.open(store, embedder, name="docs", vector_index="exact")
        queries = ["password reset", "refund", "shipping time", "gift wrap"]
        for pg_hits, exact_hits in zip(kb.search_many(queries, k=6, mode="dense"),
                                       exact.search_many(queries, k=6, mode="dense")):
            assert [h.chunk_id for h in pg_hits] == [h.chunk_id for h in exact_hits]
            assert np.allclose([h.score for h in pg_hits], [h.score for h in exact_hits], atol=1e-5)
        with store.engine.connect() as connection:
            from sqlalchemy import text

            mirrored = connection.execute(text("SELECT count(*) FROM knowledge_pgvector")).scalar()
            plan = "\n".join(connection.execute(text(
                "EXPLAIN SELECT chunk_id FROM knowledge_pgvector WHERE collection_id = 1 "
                "ORDER BY embedding::vector(384) <#> (SELECT embedding FROM knowledge_pgvector LIMIT 1)::vector(384) "
                "LIMIT 5")).scalars())
        assert mirrored == 5
        (folder / "faq.jsonl").unlink()
        kb.sync(folder)
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM knowledge_pgvector")).scalar() == 4  # cascaded
        hnsw = "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'ix_knowledge_pgvector_c%'"
        with store.engine.connect() as connection:
            assert connection.execute(text(hnsw)).scalar() == 1
        assert delete_collection(store, "docs")
        with store.engine.connect() as connection:
            assert connection.execute(text(hnsw)).scalar() == 0
            assert connection.execute(text("SELECT count(*) FROM knowledge_pgvector")).scalar() == 0
    assert "hnsw" in plan or "Seq Scan" in plan  # the planner may prefer a scan on 5 rows; either is exact here


def test_exact_top_k_matches_a_full_sort():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    index = ExactIndex(np.arange(1000, 1500), vectors)
    for query, ranked in zip(queries, index.search(queries, 10)):
        expected = np.argsort(-(vectors @ query), kind="stable")[:10] + 1000
        assert [chunk_id for chunk_id, _ in ranked] == expected.tolist()
    assert top_k(np.array([1.0, 3.0, 3.0, 2.0]), 10).tolist() == [1, 2, 3, 0]  # k past the end: all, ties in order


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.8), (3, 0.1)], [(2, 12.0), (4, 11.0)]], rrf_k=60)
    assert [chunk_id for chunk_id, _ in fused] == [2, 1, 4, 3]  # in both lists beats first in one
    assert [score for _, score in fused] == pytest.approx([1 / 62 + 1 / 61, 1 / 61, 1 / 62, 1 / 63])


def tiny_cross_encoder(folder: Path) -> Path:
    """A 1-layer BERT cross-encoder with random weights and a real WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
        {w.strip(".,?#").lower() for text in DOCUMENTS.values() for w in text.split()} - {""})
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=128).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=1, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_a_cross_encoder_reorders_the_candidates(store, embedder, folder: Path, tmp_path: Path):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder(tmp_path / "cross-encoder")))
    plain = KnowledgeBase.open(store, embedder, name="docs")
    plain.sync(folder)
    reranked = KnowledgeBase.open(store, embedder, name="docs", reranker=reranker)
    query = "how long does express delivery take"
    hits = reranked.search(query, k=6)
    candidates = plain.search(query, k=6)
    assert sorted(h.chunk_id for h in hits) == sorted(h.chunk_id for h in candidates)
    expected = reranker._model.predict([(query, h.text) for h in hits], show_progress_bar=False)
    assert [h.score for h in hits] == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    with pytest.raises(TunewiseError, match="cross-encoder"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


# -- the command line ----------------------------------------------------------------------------


def test_knowledge_commands_add_search_and_list(folder: Path, tmp_path: Path):
    runner = CliRunner()
    store = ["--store", f"sqlite:///{tmp_path / 'cli.db'}"]
    added = runner.invoke(cli, [*store, "knowledge", "add", str(folder), "--name", "help"])
    assert added.exit_code == 0, added.output
    assert "4 added" in added.output and "5 chunks" in added.output
    again = runner.invoke(cli, [*store, "knowledge", "add", str(folder), "--name", "help", "--json"])
    assert json.loads(again.stdout)["unchanged"] == sorted(DOCUMENTS)
    found = runner.invoke(cli, [*store, "knowledge", "search", "reset password", "-k", "1", "--json"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["source"] == "account/password.txt"
    shown = runner.invoke(cli, [*store, "knowledge", "search", "refund", "--mode", "lexical"])
    assert "returns.md" in shown.output and "paragraph" in shown.output
    listed = runner.invoke(cli, [*store, "knowledge", "list", "--json"])
    assert [(c["name"], c["documents"], c["chunks"]) for c in json.loads(listed.stdout)] == [("help", 4, 5)]
    missing = runner.invoke(cli, [*store, "knowledge", "search", "x", "--name", "nope"])
    assert missing.exit_code == 2 and "no knowledge collection named 'nope'" in missing.output
    no_folder = runner.invoke(cli, [*store, "knowledge", "add", str(tmp_path / "nowhere"), "--name", "help"])
    assert no_folder.exit_code == 2 and "no such folder" in no_folder.output
