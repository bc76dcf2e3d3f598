"""What retrieval works on: documents split into sections, and chunks that can be cited."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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

    @property
    def embed_text(self) -> str:
        """What gets embedded and keyword-indexed: the heading path gives a chunk its context."""
        if not self.heading_path:
            return self.text
        return " > ".join(self.heading_path) + "\n" + self.text

    @property
    def hash(self) -> str:
        return content_hash(self.embed_text)
