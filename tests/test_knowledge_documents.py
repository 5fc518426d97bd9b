"""Reading documents, chunking them, and finding them in a folder (no model, no store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from tunewise.errors import DataError
from tunewise.knowledge import ChunkConfig, DocumentError, chunk_document, read_document
from tunewise.knowledge.folder import (
    FoundFile,
    check_file,
    confined,
    read_confined,
    scan,
)

MARKDOWN = """# Returns

Items can be returned within 30 days.

Refunds go to the original payment method.

## Exceptions

- Sale items
- Gift cards

```
code block

with a blank line
```

### Deep
Final words.
"""


def write_pdf(path: Path, pages: list[str]) -> None:
    """A minimal valid PDF (Helvetica text, one content stream per page), written by hand so
    the reader is tested on a real file without a PDF-writing dependency."""
    count = len(pages)
    objects = {
        1: "<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(count))}] /Count {count} >>",
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for i, text in enumerate(pages):
        lines = " ".join(f"({line.replace('(', '[').replace(')', ']')}) '" for line in text.split("\n"))
        stream = f"BT /F1 12 Tf 72 720 Td 14 TL {lines} ET"
        objects[4 + 2 * i] = ("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                              f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>")
        objects[5 + 2 * i] = f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"
    out = b"%PDF-1.4\n"
    offsets = []
    for number in sorted(objects):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{objects[number]}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


# -- readers -------------------------------------------------------------------------------------


def test_markdown_blocks_carry_heading_path_paragraph_index_and_span():
    document = read_document("policy.md", MARKDOWN.encode())
    texts = [block.text for block in document.blocks]
    assert texts[:2] == ["Items can be returned within 30 days.", "Refunds go to the original payment method."]
    assert texts[2] == "- Sale items\n- Gift cards"  # a list is one block
    assert "with a blank line" in texts[3] and "code block" in texts[3]  # a fence is one block despite its blank line
    assert [block.paragraph for block in document.blocks] == [0, 1, 2, 3, 4]  # headings are not paragraphs
    assert document.blocks[0].heading == ("Returns",)
    assert document.blocks[2].heading == ("Returns", "Exceptions")
    assert document.blocks[4].heading == ("Returns", "Exceptions", "Deep")
    for block in document.blocks:
        assert document.text[block.start : block.end] == block.text


def test_text_paragraphs_split_at_blank_lines_with_windows_line_ends():
    document = read_document("notes.txt", b"first line\r\nsame paragraph\r\n\r\n  \r\nsecond\r\n")
    assert [block.text for block in document.blocks] == ["first line\nsame paragraph", "second"]
    assert all(document.text[b.start : b.end] == b.text for b in document.blocks)


def test_html_keeps_headings_and_blocks_and_drops_scripts():
    html = b"""<html><head><title>t</title><style>p {color: red}</style></head><body>
      <nav>Home | About</nav>
      <h1>Shipping</h1><p>We ship <b>worldwide</b>.</p>
      <div>Loose text in a div<script>alert('x')</script></div>
      <h2>Costs</h2><ul><li>Free over $50</li><li>$5 otherwise</li></ul>
      <p>Unclosed paragraph
    </body></html>"""
    document = read_document("page.html", html)
    blocks = [(block.heading, block.text) for block in document.blocks]
    assert blocks == [
        (("Shipping",), "We ship worldwide."),
        (("Shipping",), "Loose text in a div"),
        (("Shipping", "Costs"), "Free over $50"),
        (("Shipping", "Costs"), "$5 otherwise"),
        (("Shipping", "Costs"), "Unclosed paragraph"),
    ]
    assert all(document.text[b.start : b.end] == b.text for b in document.blocks)
    assert "alert" not in document.text and "Home" not in document.text


def test_pdf_pages_are_recorded(tmp_path: Path):
    write_pdf(tmp_path / "manual.pdf", ["Page one talks about batteries.", "Page two covers the warranty."])
    document = read_document("manual.pdf", (tmp_path / "manual.pdf").read_bytes())
    assert [(block.page, "batteries" in block.text, "warranty" in block.text) for block in document.blocks] == [
        (1, True, False), (2, False, True)]
    chunks = chunk_document(document)
    assert [chunk.position["page"] for chunk in chunks] == [1, 2]


def test_json_and_jsonl_records_become_paragraphs_with_titles():
    records = [{"title": "Returns", "text": "Return within 30 days."}, {"id": 7, "answer": "yes"}, {"text": ""}]
    document = read_document("faq.json", json.dumps(records).encode())
    assert [(b.heading, b.text, b.record) for b in document.blocks] == [
        (("Returns",), "Return within 30 days.", 0), ((), "id: 7\nanswer: yes", 1)]
    lines = b'{"content": "first"}\n\n{"body": "second", "name": "B"}\n'
    document = read_document("faq.jsonl", lines)
    assert [(b.heading, b.text, b.record) for b in document.blocks] == [((), "first", 0), (("B",), "second", 1)]


@pytest.mark.parametrize(("name", "data", "message"), [
    ("bad.md", b"caf\xe9", "not UTF-8"),
    ("bad.jsonl", b'{"text": "ok"}\n{broken\n', "invalid JSON"),
    ("bad.json", b"[1, 2", "invalid JSON"),
    ("bad.pdf", b"%PDF-1.4 this is not a pdf", "PDF"),
    ("image.png", b"\x89PNG", "not a document type"),
])
def test_unreadable_documents_raise_document_error_naming_the_file(name: str, data: bytes, message: str):
    with pytest.raises(DocumentError) as caught:
        read_document(name, data)
    assert message in str(caught.value) and name in str(caught.value) and caught.value.fix


# -- chunking ------------------------------------------------------------------------------------


def test_short_paragraphs_merge_under_one_heading_and_record_their_range():
    chunks = chunk_document(read_document("policy.md", MARKDOWN.encode()), ChunkConfig(max_chars=200, overlap_chars=50))
    positions = [(chunk.position["heading"], chunk.position["paragraphs"]) for chunk in chunks]
    assert positions == [(["Returns"], [0, 1]), (["Returns", "Exceptions"], [2, 3]),
                         (["Returns", "Exceptions", "Deep"], [4, 4])]
    assert chunks[0].text == "Items can be returned within 30 days.\n\nRefunds go to the original payment method."
    assert chunks[0].indexed_text.startswith("Returns\n")
    assert chunks[1].indexed_text.startswith("Returns > Exceptions\n")
    unmerged = chunk_document(read_document("policy.md", MARKDOWN.encode()), ChunkConfig(merge_paragraphs=False))
    assert [chunk.position["paragraphs"] for chunk in unmerged] == [[i, i] for i in range(5)]


def test_a_long_paragraph_is_split_at_sentences_with_overlap():
    sentences = [f"Sentence number {i} says something about topic {i % 7}." for i in range(40)]
    text = "# Long\n\n" + " ".join(sentences) + "\n"
    config = ChunkConfig(max_chars=300, overlap_chars=100)
    document = read_document("long.md", text.encode())
    chunks = chunk_document(document, config)
    assert len(chunks) > 5
    assert all(len(chunk.text) <= 300 for chunk in chunks)
    assert all(chunk.position["paragraphs"] == [0, 0] for chunk in chunks)
    for chunk in chunks:  # every window is a span of the source, starting and ending at sentence bounds
        assert document.text[chunk.position["start"] : chunk.position["end"]] == chunk.text
        assert chunk.text.startswith("Sentence") and chunk.text.endswith(".")
    for before, after in zip(chunks, chunks[1:]):  # consecutive windows overlap, and move forward
        assert after.position["start"] < before.position["end"] and after.position["start"] > before.position["start"]
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.position["start"], chunk.position["end"]))
    assert all(i in covered for i, ch in enumerate(document.text) if i >= chunks[0].position["start"] and ch != " "
               and i < chunks[-1].position["end"])


def test_a_sentence_longer_than_the_limit_is_cut_at_spaces():
    document = read_document("run.txt", ("word " * 400).strip().encode())
    chunks = chunk_document(document, ChunkConfig(max_chars=150, overlap_chars=0))
    assert all(0 < len(chunk.text) <= 150 for chunk in chunks)
    assert " ".join(chunk.text for chunk in chunks).split() == ["word"] * 400


def test_chunk_config_rejects_overlap_as_large_as_the_chunk():
    with pytest.raises(ValidationError, match="overlap_chars"):
        ChunkConfig(max_chars=200, overlap_chars=150)
    with pytest.raises(ValidationError):
        ChunkConfig(max_chars=10)
    with pytest.raises(ValidationError):
        ChunkConfig(size=5)  # unknown fields are errors, not ignored


def test_every_squad_paragraph_maps_to_a_chunk_with_its_index(shared_datasets: Path):
    documents = sorted((shared_datasets / "squad" / "documents").glob("*.md"))
    assert len(documents) == 48
    total = 0
    for path in documents:
        paragraphs = [p for p in path.read_text().split("\n\n") if p.strip() and not p.startswith("#")]
        chunks = chunk_document(read_document(path.name, path.read_bytes()))
        covered = {i for chunk in chunks for i in range(chunk.position["paragraphs"][0],
                                                          chunk.position["paragraphs"][1] + 1)}
        assert covered == set(range(len(paragraphs))), path.name
        for chunk in chunks:  # the chunk's text comes from the paragraphs it names
            first, last = chunk.position["paragraphs"]
            assert chunk.text.split("\n\n")[0] in paragraphs[first] and chunk.text.split("\n\n")[-1] in paragraphs[last]
        total += len(paragraphs)
    assert total == 2067


# -- the folder ----------------------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\nalpha\n")
    (folder / "sub" / "b.txt").write_text("bravo\n")
    (folder / ".hidden.md").write_text("hidden\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "config.md").write_text("git\n")
    (folder / "photo.png").write_bytes(b"\x89PNG")
    return folder


def test_scan_finds_documents_and_reports_unsupported_files(docs: Path):
    found, skipped = scan(docs)
    assert [f.name for f in found] == ["a.md", "sub/b.txt"]
    assert [(s.name, s.reason) for s in skipped] == [("photo.png", "unsupported")]


def test_links_out_of_the_folder_and_oversized_files_are_skipped_and_never_read(docs: Path, tmp_path: Path):
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nthe password is hunter2\n")
    outside_folder = tmp_path / "elsewhere"
    outside_folder.mkdir()
    (outside_folder / "c.md").write_text("charlie\n")
    (docs / "leak.md").symlink_to(secret)
    (docs / "linked").symlink_to(outside_folder, target_is_directory=True)
    (docs / "inside.md").symlink_to(docs / "a.md")  # a link to a file in the folder is fine
    (docs / "big.txt").write_text("x" * 5000)
    found, skipped = scan(docs, max_bytes=1000)
    assert [f.name for f in found] == ["a.md", "inside.md", "sub/b.txt"]
    assert {(s.name, s.reason) for s in skipped} == {
        ("leak.md", "symlink_outside"), ("linked", "symlinked_folder"), ("big.txt", "too_large"),
        ("photo.png", "unsupported")}
    assert all(str(secret) not in str(f.path) for f in found)


def test_dotdot_and_absolute_names_are_refused(docs: Path):
    root = docs.resolve()
    assert confined(root, "../secret.md") is None
    assert confined(root, "sub/../../secret.md") is None
    assert confined(root, "/etc/passwd") is None
    assert confined(root, "sub/b.txt") == root / "sub" / "b.txt"
    outcome = check_file(root, "../secret.md", max_bytes=1000)
    assert (outcome.name, outcome.reason) == ("../secret.md", "outside_folder")


def test_read_confined_refuses_a_file_swapped_for_a_link_or_grown(docs: Path, tmp_path: Path):
    root = docs.resolve()
    found = check_file(root, "a.md", max_bytes=1000)
    assert isinstance(found, FoundFile)
    assert read_confined(found, max_bytes=1000) == b"# A\n\nalpha\n"
    (docs / "a.md").write_text("y" * 2000)  # grew after the check
    with pytest.raises(DataError, match="grew"):
        read_confined(found, max_bytes=1000)
    os.remove(docs / "a.md")
    (docs / "a.md").symlink_to(tmp_path / "secret.txt")  # swapped for a link after the check
    (tmp_path / "secret.txt").write_text("secret")
    with pytest.raises(DataError, match="cannot open"):
        read_confined(found, max_bytes=1000)


def test_scan_of_a_missing_folder_says_so(tmp_path: Path):
    with pytest.raises(DataError, match="no such folder"):
        scan(tmp_path / "nope")
