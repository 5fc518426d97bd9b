"""Reading documents into text with structure: headings, paragraphs, pages, records.

Each reader turns a file's bytes into a `ReadDocument`: the document's text and its
`Block`s, the paragraphs in reading order, each with the heading path above it and its
character span in that text. The chunker (``chunk.py``) only ever sees blocks, so every
format gets the same heading- and paragraph-aware chunking.

What a "paragraph" is, per format (the 0-based ``paragraph`` index counts them in order;
headings are not paragraphs, so in a Markdown file of a title and 5 paragraphs they are
numbered 0-4, as SQuAD's ``source.paragraph`` numbers them):

- Markdown: each top-level block markdown-it finds (a paragraph, a whole list, a code fence,
  a table, a quote); ``#`` headings set the heading path. Spans index the file's text.
- text: runs of lines separated by blank lines. Spans index the file's text.
- HTML (lxml, which copes with broken markup): each block element's text (p, li, pre, td...,
  and loose text in a div); h1-h6 set the heading path; script, style, nav and the head are
  dropped. Spans index the extracted text.
- PDF (pypdf): each page's text split at blank lines, with its 1-based ``page``. PDFs rarely
  keep blank lines, so a page is often one paragraph, which the chunker then splits.
- JSON / JSONL: each record (a JSON list's items, a JSONL file's lines) is one paragraph with
  its 0-based ``record`` index; its text is its first string field named text, content, body,
  passage, context or document, else its scalar fields as ``key: value`` lines; a title or
  name field becomes its heading.

A file that cannot be read raises `DocumentError` with the reason; ingestion reports it as
skipped rather than failing the whole folder.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from tunewise.errors import DataError

# File name suffix -> reader kind. Anything else in a folder is skipped as unsupported.
SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown",
    ".txt": "text", ".text": "text", ".rst": "text",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}
_TEXT_FIELDS = ("text", "content", "body", "passage", "context", "document")
_TITLE_FIELDS = ("title", "name", "heading")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


class DocumentError(DataError):
    """A file that cannot be read as the document its name says (not UTF-8, broken PDF...)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One paragraph of a document, where it sits, and under which headings."""

    text: str
    heading: tuple[str, ...]  # the heading path above it, outermost first
    start: int  # character span in ReadDocument.text
    end: int
    paragraph: int  # 0-based, in reading order (headings not counted)
    page: int | None = None  # PDF: 1-based
    record: int | None = None  # JSON/JSONL: 0-based


@dataclass(slots=True)
class ReadDocument:
    kind: str  # the reader that read it (see SUFFIXES)
    text: str  # the text block spans index
    blocks: list[Block] = field(default_factory=list)


def reader_kind(path: PurePath) -> str | None:
    """The reader for a file name, or None if tunewise does not read that kind of file."""
    return SUFFIXES.get(path.suffix.lower())


def read_document(name: str, data: bytes, kind: str | None = None) -> ReadDocument:
    """Parse ``data`` (the bytes of the file called ``name``) with the reader its suffix names."""
    kind = kind or reader_kind(PurePath(name))
    reader = _READERS.get(kind or "")
    if reader is None:
        raise DocumentError("not a document type tunewise reads", where=name,
                            fix=f"use one of {', '.join(sorted(SUFFIXES))}")
    return reader(name, data)


# -- the readers ---------------------------------------------------------------------------------


def _decode(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")  # -sig: drop a byte-order mark, common from Windows editors
    except UnicodeDecodeError as error:
        raise DocumentError(f"not UTF-8 text (byte {error.start})", where=name,
                            fix="re-save the file as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(name: str, data: bytes) -> ReadDocument:
    text = _decode(name, data)
    document = ReadDocument("text", text)
    for start, end in _paragraph_spans(text, 0, len(text)):
        document.blocks.append(Block(text[start:end], (), start, end, len(document.blocks)))
    return document


def read_markdown(name: str, data: bytes) -> ReadDocument:
    from markdown_it import MarkdownIt

    text = _decode(name, data)
    document = ReadDocument("markdown", text)
    line_starts = [0] + [match.end() for match in re.finditer("\n", text)] + [len(text)]
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    headings: list[tuple[int, str]] = []  # (level, title), outermost first
    for index, token in enumerate(tokens):
        if token.level != 0 or token.map is None or token.nesting == -1:
            continue
        if token.type == "hr":
            continue
        first, last = token.map
        start, end = line_starts[first], line_starts[min(last, len(line_starts) - 1)]
        if token.type == "heading_open":
            level = int(token.tag[1:])
            title = tokens[index + 1].content.strip() if index + 1 < len(tokens) else ""
            headings = [(lvl, t) for lvl, t in headings if lvl < level] + [(level, title)]
            continue
        block_text = text[start:end].strip()
        if not block_text:
            continue
        start += len(text[start:end]) - len(text[start:end].lstrip())
        document.blocks.append(Block(block_text, tuple(t for _, t in headings), start, start + len(block_text),
                                     len(document.blocks)))
    return document


def read_html(name: str, data: bytes) -> ReadDocument:
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(data)
    except (etree.ParserError, ValueError) as error:
        raise DocumentError(f"not readable as HTML ({error})", where=name, fix="check the file is HTML") from None
    return _HtmlText().read(root)


def read_pdf(name: str, data: bytes) -> ReadDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pdf = PdfReader(io.BytesIO(data))
        if pdf.is_encrypted and not pdf.decrypt(""):
            raise DocumentError("the PDF is encrypted", where=name, fix="save an unencrypted copy")
        pages = [page.extract_text() or "" for page in pdf.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise DocumentError(f"not a readable PDF ({error})", where=name, fix="check the file opens as a PDF") from None
    document = ReadDocument("pdf", "")
    parts: list[str] = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        page_text = page_text.replace("\r\n", "\n").strip()
        for start, end in _paragraph_spans(page_text, 0, len(page_text)):
            document.blocks.append(Block(page_text[start:end], (), offset + start, offset + end,
                                         len(document.blocks), page=number))
        parts.append(page_text)
        offset += len(page_text) + 2  # pages are joined by a blank line
    document.text = "\n\n".join(parts)
    return document


def read_json(name: str, data: bytes) -> ReadDocument:
    text = _decode(name, data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DocumentError(f"invalid JSON at line {error.lineno}: {error.msg}", where=name,
                            fix="fix the JSON (a list of records, or one record)") from None
    return _records("json", value if isinstance(value, list) else [value])


def read_jsonl(name: str, data: bytes) -> ReadDocument:
    records = []
    for number, line in enumerate(_decode(name, data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DocumentError(f"invalid JSON: {error.msg}", where=f"{name}:{number}",
                                fix="one JSON record per line") from None
    return _records("jsonl", records)


_READERS: dict[str, Callable[[str, bytes], ReadDocument]] = {
    "markdown": read_markdown, "text": read_text, "html": read_html, "pdf": read_pdf,
    "json": read_json, "jsonl": read_jsonl,
}


# -- helpers -------------------------------------------------------------------------------------


def _paragraph_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each run of text between blank lines, whitespace trimmed."""
    spans = []
    cursor = start
    for separator in [*_BLANK_LINES.finditer(text, start, end), None]:
        stop = separator.start() if separator else end
        piece = text[cursor:stop]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((cursor + lead, cursor + len(piece.rstrip())))
        if separator:
            cursor = separator.end()
    return spans


def _records(kind: str, records: list[Any]) -> ReadDocument:
    document = ReadDocument(kind, "")
    parts: list[str] = []
    offset = 0
    for number, record in enumerate(records):
        title, body = _record_text(record)
        if not body:
            continue
        document.blocks.append(Block(body, (title,) if title else (), offset, offset + len(body),
                                     len(document.blocks), record=number))
        parts.append(body)
        offset += len(body) + 2
    document.text = "\n\n".join(parts)
    return document


def _record_text(record: Any) -> tuple[str | None, str]:
    if not isinstance(record, dict):
        return None, record.strip() if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
    title = next((str(record[key]).strip() for key in _TITLE_FIELDS if isinstance(record.get(key), str)), None)
    body = next((record[key].strip() for key in _TEXT_FIELDS if isinstance(record.get(key), str)), None)
    if body is None:
        body = "\n".join(f"{key}: {value}" for key, value in record.items()
                         if isinstance(value, (str, int, float, bool)) and key not in _TITLE_FIELDS)
    return title or None, body


class _HtmlText:
    """Walks an lxml tree, flushing the text gathered so far at every block boundary."""

    BLOCKS = frozenset("p div li pre blockquote td th dd dt figcaption caption section article main aside "
                       "header footer ul ol dl table tr form fieldset address details summary body".split())
    HEADINGS = {f"h{level}": level for level in range(1, 7)}
    SKIPPED = frozenset("script style noscript template head nav svg iframe object".split())

    def __init__(self) -> None:
        self.document = ReadDocument("html", "")
        self.parts: list[str] = []
        self.offset = 0
        self.buffer: list[str] = []
        self.headings: list[tuple[int, str]] = []

    def read(self, root: Any) -> ReadDocument:
        self._walk(root)
        self._flush()
        self.document.text = "\n\n".join(self.parts)
        return self.document

    def _walk(self, element: Any) -> None:
        tag = element.tag.lower() if isinstance(element.tag, str) else None  # None: a comment or PI
        if tag is not None and tag not in self.SKIPPED:
            if tag in self.HEADINGS:
                self._flush()
                title = " ".join(element.text_content().split())
                level = self.HEADINGS[tag]
                self.headings = [(lvl, t) for lvl, t in self.headings if lvl < level] + [(level, title)]
                self._emit(title)
            else:
                block = tag in self.BLOCKS
                if block:
                    self._flush()
                if tag == "br":
                    self.buffer.append("\n")
                self.buffer.append(element.text or "")
                for child in element:
                    self._walk(child)
                if block:
                    self._flush()
        self.buffer.append(element.tail or "")  # the tail belongs to the parent, even after a skipped element

    def _flush(self) -> None:
        text = "\n".join(" ".join(line.split()) for line in "".join(self.buffer).split("\n")).strip()
        text = re.sub(r"\n{2,}", "\n", text)
        self.buffer = []
        if text:
            heading = tuple(t for _, t in self.headings)
            self.document.blocks.append(Block(text, heading, self.offset, self.offset + len(text),
                                              len(self.document.blocks)))
            self._emit(text)

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.offset += len(text) + 2
