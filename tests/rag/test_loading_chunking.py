from __future__ import annotations

from pathlib import Path

import pytest

from keel.rag.chunking import chunk_document
from keel.rag.loaders import DocumentError, load_file, load_html, load_markdown

MD = """# Handbook

Welcome to Acme. This handbook covers keys and billing.

## API keys

### Rotating
To rotate a key, open Settings. Then click Rotate! The old key works for 24 hours.

```bash
# not a heading: a shell comment
acme keys rotate
```

## Billing

Invoices are monthly.
"""


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def test_markdown_sections_follow_headings_and_skip_code_fences() -> None:
    doc = load_markdown(MD, "handbook.md")
    paths = [s.heading_path for s in doc.sections]
    assert paths == [("Handbook",), ("Handbook", "API keys", "Rotating"), ("Handbook", "Billing")]
    assert "# not a heading" in doc.text[doc.sections[1].start : doc.sections[1].end]
    assert doc.title == "Handbook"


def test_chunks_respect_budget_sections_and_offsets() -> None:
    doc = load_markdown(
        MD
        + "\n"
        + " ".join(f"Short sentence number {i}." for i in range(40))
        + "\n\n"
        + "One long sentence with many words " * 40
        + ".",
        "h.md",
    )
    chunks = chunk_document(doc, words, budget=20, overlap=6)
    assert all(c.tokens <= 20 for c in chunks)
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    for c in chunks:  # never crosses a section boundary
        section = next(s for s in doc.sections if s.heading_path == c.heading_path)
        assert section.start <= c.start and c.end <= section.end
    billing = [c for c in chunks if c.heading_path[-1] == "Billing"]
    assert len(billing) > 3 and billing[1].start < billing[0].end  # overlap inside the section
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert chunks[0].embed_text.startswith("Handbook\n")


def test_chunk_arguments_are_checked() -> None:
    doc = load_markdown(MD, "h.md")
    with pytest.raises(ValueError, match="budget"):
        chunk_document(doc, words, budget=4)
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(doc, words, budget=20, overlap=20)


def test_html_keeps_main_text_and_headings_not_navigation() -> None:
    page = """<html><head><title>Acme Docs</title><style>p{}</style></head><body>
    <nav><a href="/">Home</a> <a href="/pricing">Pricing</a></nav>
    <header>Acme header</header>
    <main><h1>Keys</h1><p>Rotate keys &amp; secrets <b>often</b>.</p><h2>Revoking</h2><ul><li>Revoke leaks</li></ul>
    </main><footer>© Acme</footer><script>track()</script></body></html>"""
    doc = load_html(page, "keys.html")
    assert doc.title == "Acme Docs"
    assert "Home" not in doc.text and "Pricing" not in doc.text and "track" not in doc.text and "©" not in doc.text
    assert [(s.heading_path, doc.text[s.start : s.end].strip()) for s in doc.sections] == [
        (("Keys",), "Rotate keys & secrets often."),
        (("Keys", "Revoking"), "Revoke leaks"),
    ]


def make_pdf(path: Path, pages: list[str]) -> None:
    """A small, valid text PDF written by hand (one Helvetica text object per page)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            f"/Resources << /Font << /F1 {2 * len(pages) + 3} 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>"
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def test_pdf_pages_are_kept(tmp_path: Path) -> None:
    make_pdf(tmp_path / "guide.pdf", ["Rotating keys is done in Settings.", "Billing happens monthly."])
    doc = load_file(tmp_path / "guide.pdf", "guide.pdf")
    assert [s.page for s in doc.sections] == [1, 2]
    assert "Billing" in doc.text[doc.sections[1].start : doc.sections[1].end]
    chunks = chunk_document(doc, words, budget=50)
    assert [c.page for c in chunks] == [1, 2]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("blank.txt", b"   \n\n  ", "empty"),
        ("binary.txt", b"\x89PNG\x00\x00\x01", "binary"),
        ("broken.pdf", b"%PDF-1.4 garbage", "not a readable PDF"),
        ("image.png", b"x", "unsupported file type"),
    ],
)
def test_bad_documents_get_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=reason):
        load_file(path)


def test_non_utf8_text_is_read_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Caf\xe9 menu: cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    doc = load_file(path)
    assert "Café" in doc.text and doc.warnings and "Windows-1252" in doc.warnings[0]


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=100, height=100)
    writer.encrypt(user_password="secret", owner_password="owner")
    with (tmp_path / "locked.pdf").open("wb") as fh:
        writer.write(fh)
    with pytest.raises(DocumentError, match="encrypted"):
        load_file(tmp_path / "locked.pdf")


def test_a_chunk_is_embedded_with_its_documents_title_and_stored_as_itself() -> None:
    from keel.rag.documents import Chunk

    later = Chunk("d#1", "d", 1, "Lag grows while they rebalance.", (), 40, 71, title="Kafka consumer groups")
    assert later.embed_text == "Kafka consumer groups\nLag grows while they rebalance." and later.text.startswith("Lag")
    first = Chunk("d#0", "d", 0, "Kafka consumer groups\n\nConsumers…", (), 0, 38, title="Kafka consumer groups")
    assert first.embed_text == first.text  # the title is already there
    md = Chunk("k#0", "k", 0, "Open Settings.", ("API keys", "Rotating"), 0, 14, title="API keys")
    assert md.embed_text == "API keys > Rotating\nOpen Settings."  # the H1 heads the path already
