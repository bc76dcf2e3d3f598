"""What retrieval works on: documents split into sections, and chunks that can be cited."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

#: How chunks are indexed (what ``Chunk.embed_text`` holds); a document indexed another way is
#: re-indexed on its next ingest, its unchanged chunks' vectors coming from the embedding cache.
INDEX_FORMAT = "chunks-2: title > headings"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Section:
    """A span of the document's text under one heading path (and on one page, for PDFs)."""

    heading_path: tuple[str, ...]
    start: int
    end: int
    page: int | None = None


@dataclass(slots=True)
class Document:
    id: str
    text: str
    sections: list[Section]
    title: str = ""
    source: str = ""  # the file path or the caller's id
    kind: str = "txt"  # md | txt | html | pdf
    warnings: list[str] = field(default_factory=list)

    @property
    def hash(self) -> str:
        """What an unchanged document is known by: its text, under the way chunks are indexed now."""
        return content_hash(f"{INDEX_FORMAT}\n{self.text}")

    @property
    def legacy_hash(self) -> str:
        """The same text as indexed before chunks carried their document's title (its text alone)."""
        return content_hash(self.text)


@dataclass(slots=True)
class Chunk:
    id: str  # "<doc id>#<ordinal>"
    doc_id: str
    ordinal: int
    text: str
    heading_path: tuple[str, ...]
    start: int  # character offsets into the document's text
    end: int
    page: int | None = None
    tokens: int = 0
    title: str = ""  # its document's

    @property
    def embed_text(self) -> str:
        """What gets embedded and keyword-indexed: the document's title and the heading path give a
        chunk its context (a "contextual chunk header"); the stored text stays the chunk's own."""
        path = list(self.heading_path)
        if self.title and (not path or path[0] != self.title) and not self.text.startswith(self.title):
            path.insert(0, self.title)
        if not path:
            return self.text
        return " > ".join(path) + "\n" + self.text

    @property
    def hash(self) -> str:
        return content_hash(self.embed_text)
