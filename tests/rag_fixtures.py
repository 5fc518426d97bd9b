"""A small lexical retriever over a folder of Markdown files, for RAG tests that exercise the
arm's logic without the knowledge base's embedding model (tests of the real knowledge base
go through `tunewise.knowledge`).

It follows the knowledge base's conventions: a chunk is one paragraph (a blank-line block
that is not a heading), numbered from 0 per document, with ``position["paragraphs"] =
[i, i]``; ``source`` is the path relative to the folder. Ranking: the summed inverse document
frequency of the query words a paragraph contains (ties: document name, then paragraph).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.scoring.metrics import normalize_answer


@dataclass(frozen=True)
class Found:
    chunk_id: int
    source: str
    position: dict[str, Any]
    text: str
    score: float = 0.0
    rank: int = 0


@dataclass
class LexicalRetriever:
    folder: Path
    chunks: list[Found] = field(default_factory=list)
    searches: int = 0

    def __post_init__(self) -> None:
        digest = hashlib.sha256()
        for path in sorted(self.folder.rglob("*.md")):
            name = path.relative_to(self.folder).as_posix()
            text = path.read_text(encoding="utf-8")
            digest.update(name.encode() + b"\0" + text.encode())
            blocks = [b.strip() for b in text.split("\n\n") if b.strip() and not b.lstrip().startswith("#")]
            for index, block in enumerate(blocks):
                self.chunks.append(Found(len(self.chunks), name, {"paragraphs": [index, index]}, block))
        self._fingerprint = digest.hexdigest()
        self._words = [set(normalize_answer(chunk.text).split()) for chunk in self.chunks]
        frequency = Counter(word for words in self._words for word in words)
        self._idf = {word: math.log(1 + len(self.chunks) / count) for word, count in frequency.items()}

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def search(self, query: str, k: int = 5, mode: str = "hybrid") -> list[Found]:
        terms = set(normalize_answer(query).split())
        scored = [(sum(self._idf.get(t, 0.0) for t in terms & words), chunk)
                  for words, chunk in zip(self._words, self.chunks)]
        scored.sort(key=lambda pair: (-pair[0], pair[1].source, pair[1].position["paragraphs"][0]))
        return [Found(c.chunk_id, c.source, c.position, c.text, score, rank)
                for rank, (score, c) in enumerate(scored[:k], start=1)]

    def search_many(self, queries: Sequence[str], k: int = 5, mode: str = "hybrid") -> list[list[Found]]:
        self.searches += 1
        return [self.search(query, k, mode) for query in queries]
