"""Loaders: Markdown, text, HTML (main content, not navigation) and PDF (pages kept).

Every failure is a ``DocumentError`` naming the file and the reason; callers skip that file and
go on with the rest.
"""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser
from pathlib import Path

from keel.errors import DocumentError as DocumentError
from keel.rag.documents import Document, Section

MAX_BYTES = 50 * 1024 * 1024
KINDS = {".md": "md", ".markdown": "md", ".txt": "txt", ".text": "txt", ".html": "html", ".htm": "html", ".pdf": "pdf"}


def supported(path: Path) -> bool:
    return path.suffix.lower() in KINDS


def load_file(path: Path, doc_id: str | None = None) -> Document:
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise DocumentError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(sorted(KINDS))})")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DocumentError(f"{path}: {size / 1e6:.0f} MB is over the {MAX_BYTES // 2**20} MB limit per document")
        raw = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror})") from None
    return load_bytes(raw, kind, doc_id or str(path), str(path))


def load_bytes(raw: bytes, kind: str, doc_id: str, source: str) -> Document:
    """Parse one document's bytes as ``kind`` (md, txt, html or pdf)."""
    if kind not in KINDS.values():
        raise DocumentError(f"{source}: unknown kind '{kind}' (use md, txt, html or pdf)")
    if len(raw) > MAX_BYTES:
        raise DocumentError(f"{source}: {len(raw) / 1e6:.0f} MB is over the {MAX_BYTES // 2**20} MB limit")
    if kind == "pdf":
        doc = load_pdf(raw, doc_id, source)
    else:
        text, warnings = decode_text(raw, source)
        doc = {"md": load_markdown, "txt": load_text, "html": load_html}[kind](text, doc_id, source)
        doc.warnings.extend(warnings)
    if not doc.text.strip():
        raise DocumentError(f"{source}: no text to index (the document is empty)")
    return doc


def decode_text(raw: bytes, source: str) -> tuple[str, list[str]]:
    if b"\x00" in raw[:8192]:
        raise DocumentError(f"{source}: looks binary (NUL bytes), not text")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        text = raw.decode("cp1252", errors="replace")
        return text, [f"not UTF-8 (byte {exc.start}); read as Windows-1252"]


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"[ \t]+\n", "\n", text)


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")


def load_markdown(text: str, doc_id: str, source: str = "") -> Document:
    text = _normalise(text)
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start = 0
    offset = 0
    in_fence = False
    title = ""
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            if offset > start:
                sections.append(Section(tuple(h for _, h in path), start, offset))
            level, heading = len(match.group(1)), match.group(2).strip()
            title = title or heading
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, heading))
            start = offset + len(line) + 1  # the section's text starts after its heading line
        offset += len(line) + 1
    if len(text) > start:
        sections.append(Section(tuple(h for _, h in path), start, len(text)))
    return Document(doc_id, text, [s for s in sections if text[s.start : s.end].strip()], title, source, "md")


def load_text(text: str, doc_id: str, source: str = "") -> Document:
    text = _normalise(text)
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return Document(doc_id, text, [Section((), 0, len(text))], first[:120], source, "txt")


class _MainText(HTMLParser):
    SKIP = {
        "script",
        "style",
        "nav",
        "header",
        "footer",
        "aside",
        "noscript",
        "form",
        "svg",
        "template",
        "button",
        "select",
        "iframe",
    }
    BLOCK = {
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "br",
        "tr",
        "table",
        "pre",
        "blockquote",
        "section",
        "article",
        "main",
        "dd",
        "dt",
        "figcaption",
        "hr",
    }
    HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.length = 0
        self.skip_depth = 0
        self.heading: tuple[int, list[str]] | None = None
        self.path: list[tuple[int, str]] = []
        self.marks: list[tuple[int, tuple[str, ...]]] = [(0, ())]  # (offset, heading path) at each heading
        self.title = ""
        self.in_title = False
        self.main_starts: list[int] = []
        self.main_ends: list[int] = []

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        role = dict(attrs).get("role")
        if tag in self.SKIP or role in ("navigation", "banner", "contentinfo"):
            self.skip_depth += 1
        elif tag == "title":
            self.in_title = True
        elif tag in self.HEADINGS and not self.skip_depth:
            self.heading = (self.HEADINGS[tag], [])
        elif tag in ("main", "article"):
            self.main_starts.append(self.length)
        if tag in self.BLOCK and not self.skip_depth:
            self._emit("\n\n" if tag in ("p", "div", "pre", "table", "section") else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self.in_title = False
        elif tag in self.HEADINGS and self.heading is not None:
            level, words = self.heading
            heading = " ".join(" ".join(words).split())
            self.heading = None
            while self.path and self.path[-1][0] >= level:
                self.path.pop()
            if heading:
                self.path.append((level, heading))
                self._emit("\n\n")
                self.marks.append((self.length, tuple(h for _, h in self.path)))
        elif tag in ("main", "article"):
            self.main_ends.append(self.length)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif self.skip_depth:
            return
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self._emit(re.sub(r"\s+", " ", data))


def load_html(text: str, doc_id: str, source: str = "") -> Document:
    parser = _MainText()
    parser.feed(text)
    parser.close()
    body = "".join(parser.parts)
    lo, hi = 0, len(body)
    if parser.main_starts and parser.main_ends:  # keep <main>/<article> when the page marks it
        lo, hi = min(parser.main_starts), max(parser.main_ends)
    sections = []
    marks = [*parser.marks, (len(body), ())]
    for (start, path), (end, _) in itertools.pairwise(marks):
        s, e = max(start, lo), min(end, hi)
        if e > s and body[s:e].strip():
            sections.append(Section(path, s, e))
    title = " ".join(parser.title.split()) or (
        sections[0].heading_path[0] if sections and sections[0].heading_path else ""
    )
    return Document(doc_id, body, sections, title, source, "html")


def load_pdf(raw: bytes, doc_id: str, source: str = "") -> Document:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings would duplicate our one-line reason
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{source}: the PDF is encrypted; decrypt it first")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"{source}: not a readable PDF ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pypdf raises assorted errors on damaged files
        raise DocumentError(f"{source}: not a readable PDF ({type(exc).__name__})") from None
    text_parts: list[str] = []
    sections = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        page_text = _normalise(page_text).strip()
        if page_text:
            sections.append(Section((), offset, offset + len(page_text), page=number))
        text_parts.append(page_text + "\n\n")
        offset += len(page_text) + 2
    title = ""
    meta = reader.metadata
    if meta is not None and meta.title:
        title = str(meta.title)
    return Document(doc_id, "".join(text_parts), sections, title, source, "pdf")
