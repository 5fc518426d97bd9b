"""BM25 over a collection's chunks, with bm25s (sparse-matrix BM25, Lucene's variant).

Text is lower-cased, split into words of two or more letters or digits, English stop words
are dropped and words are stemmed (Snowball, via PyStemmer) so "landing" finds "landed".
The index lives in memory, built from the chunk texts when the collection is first searched
in a process and again when its fingerprint changes: building takes about a second per
20,000 chunks here, far less than embedding them took, and keeping it out of the store
means there is nothing to migrate or keep in step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunewise.knowledge.vectors import Ranked


class LexicalIndex:
    """BM25 scores of queries against a fixed list of texts (one per chunk id)."""

    kind = "bm25"

    def __init__(self, ids: np.ndarray, texts: Sequence[str]):
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.ids = ids
        self._tokenizer = Tokenizer(stemmer=_stemmer(), stopwords="en")
        self._bm25 = bm25s.BM25()
        if len(texts):
            tokens = self._tokenizer.tokenize(list(texts), return_as="tuple", show_progress=False)
            self._bm25.index(tokens, show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[Ranked]:
        """The k best chunks per query, best first; chunks sharing no word with it are left out."""
        k = min(k, len(self.ids))
        if k <= 0 or not queries:
            return [[] for _ in queries]
        # update_vocab=False: words the corpus never had map to the empty token, which scores 0.
        query_ids = self._tokenizer.tokenize(list(queries), update_vocab=False, return_as="ids", show_progress=False)
        documents, scores = self._bm25.retrieve(query_ids, k=k, show_progress=False, n_threads=1)
        return [
            [(int(self.ids[d]), float(s)) for d, s in zip(row_documents, row_scores, strict=True) if s > 0]
            for row_documents, row_scores in zip(documents, scores, strict=True)
        ]


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWord
