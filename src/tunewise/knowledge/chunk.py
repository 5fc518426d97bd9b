"""Cutting a read document into chunks: heading- and paragraph-aware, with a size limit.

Rules, in order:

1. A chunk never crosses a heading, a PDF page or a JSON record: its heading path, page and
   record are one each, so a hit can always say where it came from.
2. Consecutive short paragraphs under one heading are merged while the chunk stays within
   ``max_chars``; the chunk records the range of paragraphs it spans (``paragraphs: [first,
   last]``, inclusive), so a question whose gold source is one paragraph can be matched exactly.
3. A paragraph longer than ``max_chars`` is split at sentence ends into windows of at most
   ``max_chars``; each window starts with the last sentences of the one before (about
   ``overlap_chars``), so a fact that straddles the cut is whole in one of them. Every window
   keeps the paragraph's index. A single sentence longer than the limit is cut at spaces.

Sizes are characters, not tokens, so chunks do not depend on the embedding model: 1,000
characters of English is about 220 word pieces, inside all-MiniLM-L6-v2's 256-token window
(longer text is truncated by the model but still searched in full by BM25).

The text that is embedded and indexed for BM25 is the chunk prefixed with its heading path
(`Chunk.indexed_text`): a paragraph of the "Apollo program" article rarely names the program,
and the question asking about it usually does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunewise.knowledge.readers import Block, ReadDocument

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


class ChunkConfig(BaseModel):
    """How documents are cut into chunks. Part of a collection's fingerprint: changing it
    re-chunks and re-embeds every document on the next sync."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_chars: int = Field(1000, ge=100, le=20_000, description="Longest chunk, in characters.")
    overlap_chars: int = Field(
        150, ge=0, description="Characters of trailing sentences repeated at the start of the next window "
        "when one long paragraph is split.",
    )
    merge_paragraphs: bool = Field(
        True, description="Merge consecutive short paragraphs under the same heading up to max_chars.",
    )
    heading_context: bool = Field(
        True, description="Prefix the heading path to the text that is embedded and BM25-indexed.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkConfig:
        if self.overlap_chars >= self.max_chars // 2:
            raise ValueError(f"overlap_chars ({self.overlap_chars}) must be under half of max_chars ({self.max_chars})")
        return self


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    position: dict[str, Any]  # heading, paragraphs [first, last], start, end, and page / record when known
    indexed_text: str  # what is embedded and BM25-indexed


def chunk_document(document: ReadDocument, config: ChunkConfig | None = None) -> list[Chunk]:
    """The document's chunks in reading order."""
    config = config or ChunkConfig()
    chunks: list[Chunk] = []
    group: list[Block] = []
    for block in document.blocks:
        if group and not _can_join(group, block, config):
            chunks.append(_merged(group, config))
            group = []
        if len(block.text) > config.max_chars:
            chunks.extend(_split(block, config))
        else:
            group.append(block)
    if group:
        chunks.append(_merged(group, config))
    return chunks


def _can_join(group: list[Block], block: Block, config: ChunkConfig) -> bool:
    first = group[0]
    same_place = (block.heading, block.page, block.record) == (first.heading, first.page, first.record)
    size = sum(len(b.text) + 2 for b in group) + len(block.text)
    return config.merge_paragraphs and same_place and block.record is None and size <= config.max_chars


def _merged(group: list[Block], config: ChunkConfig) -> Chunk:
    first, last = group[0], group[-1]
    text = "\n\n".join(block.text for block in group)
    return _chunk(text, first, config, paragraphs=(first.paragraph, last.paragraph), span=(first.start, last.end))


def _split(block: Block, config: ChunkConfig) -> list[Chunk]:
    """Windows of whole sentences (see rule 3)."""
    pieces = _pieces(block.text, config.max_chars)
    chunks = []
    start = 0
    while start < len(pieces):
        end = start
        while end < len(pieces) and pieces[end][1] - pieces[start][0] <= config.max_chars:
            end += 1
        end = max(end, start + 1)
        span = (pieces[start][0], pieces[end - 1][1])
        text = block.text[span[0] : span[1]]
        chunks.append(_chunk(text, block, config, paragraphs=(block.paragraph, block.paragraph),
                             span=(block.start + span[0], block.start + span[1])))
        if end >= len(pieces):
            break
        # Step back over trailing sentences worth about overlap_chars, never back to `start`.
        next_start = end
        while next_start - 1 > start and pieces[end - 1][1] - pieces[next_start - 1][0] <= config.overlap_chars:
            next_start -= 1
        start = next_start
    return chunks


def _pieces(text: str, limit: int) -> list[tuple[int, int]]:
    """Sentence spans of ``text``; a sentence longer than ``limit`` is cut at spaces."""
    spans = []
    cursor = 0
    for match in [*_SENTENCE_END.finditer(text), None]:
        # The sentence keeps its closing quote or bracket; the whitespace after it is dropped.
        stop = match.start() + len(match.group().rstrip()) if match else len(text)
        spans.extend(_cut_long(text, cursor, stop, limit))
        if match:
            cursor = match.end()
            if cursor >= len(text):
                break
    return [(s, e) for s, e in spans if e > s]


def _cut_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    spans = []
    while end - start > limit:
        cut = text.rfind(" ", start, start + limit)
        cut = cut if cut > start else start + limit
        spans.append((start, cut))
        start = cut + 1 if text[cut : cut + 1] == " " else cut
    spans.append((start, end))
    return spans


def _chunk(text: str, block: Block, config: ChunkConfig, *, paragraphs: tuple[int, int],
           span: tuple[int, int]) -> Chunk:
    position: dict[str, Any] = {"heading": list(block.heading), "paragraphs": list(paragraphs),
                                "start": span[0], "end": span[1]}
    if block.page is not None:
        position["page"] = block.page
    if block.record is not None:
        position["record"] = block.record
    return Chunk(text, position, indexed_text(text, block.heading, config))


def indexed_text(text: str, heading: Sequence[str], config: ChunkConfig) -> str:
    """What is embedded and BM25-indexed for a chunk: its text under its heading path."""
    return f"{' > '.join(heading)}\n{text}" if config.heading_context and heading else text
