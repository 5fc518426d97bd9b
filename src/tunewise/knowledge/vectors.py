"""Dense search over a collection's chunk vectors: exact in memory, or pgvector on PostgreSQL.

Both indexes answer ``search(queries, k) -> [[(chunk_id, cosine), ...] per query]`` for unit
query rows, best first.

**The embedded default, `ExactIndex`**: the vectors live in the run store's database (a
float32 blob per chunk, written in the same transaction as the chunk, so the index can never
disagree with the text it returns), and search is an exact dot product over a numpy matrix
loaded once per process and reloaded when the collection's fingerprint changes. Why not a
file beside the database, or an approximate index: one store holds everything (a backup, a
copy or a PostgreSQL URL carries the knowledge along with the runs; no second file can go
stale), and exact search is fast enough at the sizes a bake-off indexes. Measured here
(benchmarks/retrieval.py, 100,000 x 384, 2 cores shared with other jobs): one query costs
about 23 ms of CPU (both BLAS threads; ``argpartition`` instead of a full sort saves a third),
which was 10 ms p50 wall at load average 9 and 82 ms at load 14; ``search_many`` scores 64
queries per matrix product, 14 ms per query even at load 14. Exact also means recall is 1 by
construction, so retrieval quality measured in a bake-off is the embedding model's, not an
index's. Memory: ~150 MB per 100,000 chunks; loading them from SQLite took 19 s at load 14.

**`PgvectorIndex`**, when the store is PostgreSQL and the server has the ``vector`` extension:
the vectors are mirrored into ``knowledge_pgvector`` (chunk_id, collection_id, embedding
``vector``) with one HNSW index per collection, partial (``WHERE collection_id = N``) and on
``embedding::vector(dim)`` because an HNSW index needs a fixed dimension while collections
may use different models (the pattern pgvector's README gives for mixed dimensions). Search
runs in the database, so nothing is loaded into the process. The mirror table is created on
first use, not by a migration: the extension is optional on a server (creating it needs a
privileged user), and a run store must open without it. Rows go away with their chunk (a
foreign key ``ON DELETE CASCADE``); `PgvectorIndex.sync_missing` backfills chunks written
while the mirror did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, cast, insert, select, text

from tunewise.errors import StoreError
from tunewise.store.api import Store

Ranked = list[tuple[int, float]]  # (chunk id, score), best first

_QUERY_BLOCK = 64  # queries per matrix product: (chunks x 64) float32 scores stay small
PGVECTOR_TABLE = "knowledge_pgvector"
_DDL_LOCK = 0x6B6E_6F77_6C65_6467  # "knowledg": serialises creating the mirror table and indexes


class VectorIndex(Protocol):
    kind: str

    def search(self, queries: np.ndarray, k: int) -> list[Ranked]: ...


class ExactIndex:
    """Exact inner-product search over unit rows held in memory (see the module docstring)."""

    kind = "exact"

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.ids = ids
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> list[Ranked]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self.ids))
        if k <= 0:
            return [[] for _ in queries]
        results: list[Ranked] = []
        for start in range(0, len(queries), _QUERY_BLOCK):
            scores = queries[start : start + _QUERY_BLOCK] @ self.vectors.T  # (queries, chunks)
            for row in scores:
                top = top_k(row, k)
                results.append([(int(self.ids[i]), float(row[i])) for i in top])
        return results


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k highest scores, highest first (ties: lower index first).

    ``argpartition`` finds the k in linear time; only they are sorted, not all the scores.
    """
    if k >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    chosen = np.argpartition(-scores, k - 1)[:k]
    return chosen[np.lexsort((chosen, -scores[chosen]))]


# -- pgvector ------------------------------------------------------------------------------------


def _mirror_table() -> Table:
    from pgvector.sqlalchemy import Vector

    return Table(PGVECTOR_TABLE, MetaData(), Column("chunk_id", BigInteger, primary_key=True),
                 Column("collection_id", BigInteger), Column("embedding", Vector()))


def pgvector_available(store: Store) -> bool:
    """Whether the store is PostgreSQL, its server offers the ``vector`` extension and the
    ``pgvector`` Python package is installed."""
    if store.engine.dialect.name != "postgresql":
        return False
    try:
        import pgvector.sqlalchemy  # noqa: F401
    except ImportError:
        return False
    with store.engine.connect() as connection:
        return bool(connection.scalar(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")))


class PgvectorIndex:
    """HNSW search in PostgreSQL (see the module docstring)."""

    kind = "pgvector"

    def __init__(self, store: Store, collection_id: int, dim: int, *, ef_search: int = 100):
        self.store = store
        self.collection_id = int(collection_id)
        self.dim = int(dim)
        self.ef_search = ef_search
        self.table = _mirror_table()

    @classmethod
    def open(cls, store: Store, collection_id: int, dim: int, *, create_index: bool = True) -> PgvectorIndex:
        """Create the extension, the mirror table and (unless told not to) this collection's
        HNSW index if missing. A sync opens it without the index, inserts, then calls
        `create_index`: building the graph over rows already there is much faster than
        growing it one insert at a time (pgvector's advice for initial loads)."""
        if store.engine.dialect.name != "postgresql":
            raise StoreError("pgvector needs a PostgreSQL store", where=store.url,
                             fix="use --store postgresql://... or the default exact index")
        try:
            import pgvector.sqlalchemy  # noqa: F401
        except ImportError:
            raise StoreError("the pgvector index needs the pgvector Python package", where=store.url,
                             fix="pip install 'tunewise[postgres]' (or pip install pgvector)") from None
        index = cls(store, collection_id, dim)
        from sqlalchemy.exc import DBAPIError

        try:
            with store.engine.begin() as connection:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK})
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
                connection.execute(text(
                    f"CREATE TABLE IF NOT EXISTS {PGVECTOR_TABLE} ("
                    " chunk_id BIGINT PRIMARY KEY REFERENCES knowledge_chunks (id) ON DELETE CASCADE,"
                    " collection_id BIGINT NOT NULL, embedding vector NOT NULL)"
                ))
                if create_index:
                    index.create_index(connection)
        except DBAPIError as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            raise StoreError(f"cannot set up pgvector: {reason}", where=store.url,
                             fix="install pgvector on the server and run `CREATE EXTENSION vector` as a superuser "
                             "in this database, or use the exact index (vector_index='exact')") from None
        return index

    def create_index(self, connection: Connection) -> None:
        """This collection's partial HNSW index, if missing (inside the caller's transaction)."""
        # The build is fastest when the graph fits in maintenance_work_mem (64 MB by default;
        # 100,000 x 384 needs about 200 MB); SET LOCAL ends with the transaction.
        connection.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        connection.execute(text(
            f"CREATE INDEX IF NOT EXISTS {self._index_name()} ON {PGVECTOR_TABLE} "
            f"USING hnsw ((embedding::vector({self.dim})) vector_ip_ops) "
            f"WHERE collection_id = {self.collection_id}"
        ))

    def _index_name(self) -> str:
        return f"ix_{PGVECTOR_TABLE}_c{self.collection_id}_d{self.dim}_hnsw"

    def add(self, connection: Connection, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Mirror new chunks' vectors, inside the caller's transaction."""
        rows = [{"chunk_id": int(i), "collection_id": self.collection_id, "embedding": vector}
                for i, vector in zip(ids, np.asarray(vectors, dtype=np.float32), strict=True)]
        for start in range(0, len(rows), 1000):
            connection.execute(insert(self.table), rows[start : start + 1000])

    def sync_missing(self, connection: Connection) -> int:
        """Mirror chunks that have no row yet (written before the mirror existed); returns how many."""
        missing = connection.execute(text(
            f"SELECT c.id, c.vector FROM knowledge_chunks c LEFT JOIN {PGVECTOR_TABLE} m ON m.chunk_id = c.id "
            "WHERE c.collection_id = :collection AND m.chunk_id IS NULL ORDER BY c.id"
        ), {"collection": self.collection_id}).all()
        if missing:
            vectors = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in missing])
            self.add(connection, [chunk_id for chunk_id, _ in missing], vectors)
        return len(missing)

    def search(self, queries: np.ndarray, k: int) -> list[Ranked]:
        from pgvector.sqlalchemy import Vector

        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if k <= 0:
            return [[] for _ in queries]
        embedding = cast(self.table.c.embedding, Vector(self.dim))
        results = []
        with self.store.engine.connect() as connection, connection.begin():
            # HNSW returns at most ef_search rows; SET LOCAL lasts for this transaction only.
            connection.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, k)}"))
            for query in queries:
                distance = embedding.max_inner_product(query)  # <#>: the negative inner product
                statement = (
                    select(self.table.c.chunk_id, distance)
                    # A literal, not a parameter, so the planner matches the partial index.
                    .where(text(f"{PGVECTOR_TABLE}.collection_id = {self.collection_id}"))
                    .order_by(distance).limit(k)
                )
                results.append([(int(chunk_id), -float(d)) for chunk_id, d in connection.execute(statement)])
        return results


def drop_collection_indexes(connection: Connection, collection_id: int) -> None:
    """Drop a deleted collection's partial HNSW indexes (its mirror rows go with its chunks)."""
    if connection.dialect.name != "postgresql":
        return
    names = connection.execute(text(
        "SELECT indexname FROM pg_indexes WHERE tablename = :table AND indexname LIKE :pattern"
    ), {"table": PGVECTOR_TABLE, "pattern": f"ix_{PGVECTOR_TABLE}_c{int(collection_id)}\\_d%"}).scalars().all()
    for name in names:
        connection.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
