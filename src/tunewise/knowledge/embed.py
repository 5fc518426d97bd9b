"""Text embeddings: one `Embedder` per model, with a cache so no text is embedded twice.

Every arm that embeds (the embedding classifier, nearest-neighbour few-shot, RAG, the
cascade's router) shares one loaded `Embedder` (the bake-off hands it out through
``ArmContext.embedder``). ``encode`` returns float32 rows of unit length, in the order the
texts came, so a dot product is the cosine similarity.

Caching, keyed by the sha256 of the text: an in-memory LRU always, plus the run store's
``embedding_cache`` table when a store is given, so a re-run, or another process, does not
embed its texts again. Only texts found in neither are run through the model, each once
however often it repeats. The cache key is the model id, which names the weights'
fingerprint and the precision: vectors from other weights or another precision never mix.

Batching: the texts to embed are sorted by length, longest first, so each batch pads to
texts of about its own length.

Measured on the 2-core development machine (AMD EPYC, AVX-512 with BF16, no AMX), on CLINC150
training inputs (39 characters on average), all-MiniLM-L6-v2. Other jobs shared the machine,
so wall-clock rates swung 5x between runs; these are texts per CPU-second of one torch
thread, the median of 3 interleaved runs of 512 texts:

  batch              16    32    64   128   256
  fp32, sorted      210   216   222   187   137
  bf16, sorted      324   377   367   366   329
  fp32 / bf16 unsorted (batch 64): 167 / 301

Sorting by length gains a third in fp32; batches of 64 are best. bf16 is 1.65x faster and
its vectors stay close to fp32 (cosine 0.9999 on average, 0.996 at worst over 2,000 texts),
yet on full CLINC150 the embedding classifier gave another answer for 13 of 5,500 test
inputs (accuracy 85.71% fp32, 85.64% bf16). fp32 stays the CPU default, as for the local LLMs
(models/device.py): a bake-off does not trade answers for speed unless asked, and embedding
is not its bottleneck. ``dtype="bfloat16"`` opts in; the model id names the precision, so the
two never share cached vectors.

Loading costs ~9 s in a fresh process, almost all imports (sentence-transformers pulls in
torch, transformers and scikit-learn), then ~0.7 s for the model and its sha256 check.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tunewise.errors import TunewiseError
from tunewise.knowledge.embedding_models import DEFAULT_EMBEDDER, load_sentence_transformer, resolve_embedder
from tunewise.store.digests import sha256_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from tunewise.store.api import Store

EncodeProgress = Callable[[int, int], None]
"""Called after each batch with (texts embedded so far, texts to embed in this call)."""

DEFAULT_BATCH_SIZE = 64  # the fastest measured (see above)
DEFAULT_CPU_DTYPE = "float32"  # bf16 is 1.65x faster but changes answers (see above)
MEMORY_CACHE_SIZE = 100_000  # vectors kept in memory: 150 MB at 384 dimensions
_PRECISION_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass
class EmbedStats:
    """What an Embedder has done since it was loaded: where its vectors came from."""

    texts_embedded: int = 0  # run through the model
    memory_hits: int = 0
    store_hits: int = 0
    model_seconds: float = 0.0  # wall time spent in the model


class Embedder:
    """An embedding model with a cache. Build it with `Embedder.load`."""

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        name: str,
        fingerprint: str,
        store: Store | None = None,
        memory_cache_size: int = MEMORY_CACHE_SIZE,
    ):
        self._model = model
        self._store = store
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_cache_size = memory_cache_size
        # Arms may share one Embedder across threads; neither the model nor the LRU is thread-safe.
        self._lock = threading.Lock()
        dtype = next(model.parameters()).dtype
        precision = _PRECISION_NAMES.get(str(dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))
        self.name = name
        self.fingerprint = fingerprint
        #: name, weights fingerprint and precision, e.g. "all-minilm-l6-v2@53aa51172d14/fp32"
        self.model_id = f"{name}@{fingerprint[:12]}/{precision}"
        self.dim: int = int(model.get_embedding_dimension())
        #: Longer inputs are truncated to this many tokens (special tokens included).
        self.max_tokens: int = int(model.max_seq_length)
        self.stats = EmbedStats()

    @classmethod
    def load(
        cls,
        spec: str = DEFAULT_EMBEDDER,
        *,
        store: Store | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> Embedder:
        """Load the model ``spec`` names (see `knowledge.embedding_models`): the bundled
        ``all-minilm-l6-v2``, a sentence-transformers folder, or a hub id. With ``store``,
        vectors are also read from and written to its embedding cache. ``device``: "cpu",
        "cuda" (default: CUDA when present); ``dtype``: "float32" or "bfloat16" (default:
        `DEFAULT_CPU_DTYPE` on CPU, bf16 on a GPU that has it)."""
        from tunewise.models.device import pick_device, pick_dtype

        resolved = resolve_embedder(spec)
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(torch_device, dtype or (DEFAULT_CPU_DTYPE if torch_device.type == "cpu" else None))
        model, fingerprint = load_sentence_transformer(resolved, torch_device, torch_dtype)
        return cls(model, name=resolved.name, fingerprint=fingerprint, store=store)

    def __repr__(self) -> str:
        return f"Embedder({self.model_id!r}, dim={self.dim})"

    # -- embedding -------------------------------------------------------------------------

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: EncodeProgress | None = None,
        use_cache: bool = True,
    ) -> np.ndarray:
        """One float32 row of unit length per text, in order: shape (len(texts), dim).

        ``use_cache=False`` runs every distinct text through the model, for a caller that
        must measure what embedding costs (a prediction's latency); the vectors are still
        cached for others.
        """
        if isinstance(texts, str):
            raise TunewiseError("encode takes a sequence of texts, not one string", fix="pass [text]")
        if batch_size < 1:
            raise TunewiseError(f"batch_size must be at least 1, got {batch_size}", fix="pass batch_size=64")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        hashes = [sha256_text(text) for text in texts]
        with self._lock:
            vectors = self._cached(hashes) if use_cache else {}
            todo = {text_hash: text for text_hash, text in zip(hashes, texts, strict=True) if text_hash not in vectors}
            if todo:
                fresh = dict(zip(todo, self._embed(list(todo.values()), batch_size, progress), strict=True))
                self._remember(fresh, persist=True)
                vectors.update(fresh)
        return np.stack([vectors[text_hash] for text_hash in hashes])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text: special tokens included, truncation applied."""
        if not texts:
            return []
        encoded = self._model.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)
        return [len(ids) for ids in encoded["input_ids"]]

    # -- the two caches --------------------------------------------------------------------

    def _cached(self, hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for text_hash in dict.fromkeys(hashes):
            vector = self._memory.get(text_hash)
            if vector is not None:
                self._memory.move_to_end(text_hash)
                found[text_hash] = vector
        self.stats.memory_hits += sum(1 for text_hash in hashes if text_hash in found)
        missing = [text_hash for text_hash in dict.fromkeys(hashes) if text_hash not in found]
        if missing and self._store is not None:
            stored = self._store.cached_embeddings(self.model_id, missing)
            stored = {text_hash: vector for text_hash, vector in stored.items() if vector.size == self.dim}
            self.stats.store_hits += sum(1 for text_hash in hashes if text_hash in stored)
            self._remember(stored, persist=False)
            found.update(stored)
        return found

    def _remember(self, vectors: dict[str, np.ndarray], *, persist: bool) -> None:
        for text_hash, vector in vectors.items():
            vector.setflags(write=False)  # shared between callers: a caller's edit must not leak
            self._memory[text_hash] = vector
            self._memory.move_to_end(text_hash)
        while len(self._memory) > self._memory_cache_size:
            self._memory.popitem(last=False)
        if persist and vectors and self._store is not None:
            self._store.cache_embeddings(self.model_id, vectors)

    # -- the model -------------------------------------------------------------------------

    def _embed(self, texts: list[str], batch_size: int, progress: EncodeProgress | None) -> list[np.ndarray]:
        """Vectors for ``texts``, batched by length (longest first: the first batch shows
        the peak memory at once), returned in the order given."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows: list[np.ndarray | None] = [None] * len(texts)
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                batch = self._model.encode(
                    [texts[i] for i in chosen], batch_size=len(chosen), convert_to_numpy=True,
                    normalize_embeddings=False, show_progress_bar=False,
                )
                for i, row in zip(chosen, _unit_rows(batch), strict=True):
                    rows[i] = row.copy()  # its own buffer, so evicting it from the LRU frees it
                if progress is not None:
                    progress(min(start + batch_size, len(texts)), len(texts))
        self.stats.model_seconds += time.perf_counter() - started
        self.stats.texts_embedded += len(texts)
        return rows  # type: ignore[return-value] - every slot was filled above


def _unit_rows(batch: np.ndarray) -> np.ndarray:
    # Normalised here, in float32, whatever precision the model ran in (its own Normalize
    # layer, when it has one, ran in that precision).
    rows = np.asarray(batch, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)  # an all-zero row stays zero rather than NaN
