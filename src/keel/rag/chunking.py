"""Chunking that respects structure: sections → paragraphs → sentences, packed to a token budget.

Token counts come from the embedder's own tokenizer. Overlap repeats whole sentences from the end
of the previous chunk and never crosses a section boundary. A sentence longer than the budget is
split at word boundaries — no chunk is ever emitted over budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from keel.rag.documents import Chunk, Document, Section

CountTokens = Callable[[list[str]], list[int]]
_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n")


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Non-blank spans of ``text[start:end]`` between matches of ``pattern``, trimmed."""
    pos = start
    for match in pattern.finditer(text, start, end):
        yield from _trim(text, pos, match.start())
        pos = match.end()
    yield from _trim(text, pos, end)


def _trim(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def _split_long(text: str, start: int, end: int, tokens: int, budget: int) -> list[tuple[int, int]]:
    """Cut an over-budget sentence at word boundaries into pieces that fit."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[start:end])]
    pieces = max(2, -(-tokens // budget) + 1)
    size = max(1, -(-len(words) // pieces))
    out = []
    for i in range(0, len(words), size):
        group = words[i : i + size]
        out.append((start + group[0][0], start + group[-1][1]))
    return out


def units(doc: Document, section: Section, count: CountTokens, budget: int) -> list[tuple[int, int, int, bool]]:
    """Sentence spans with token counts: (start, end, tokens, starts_paragraph)."""
    spans: list[tuple[int, int, bool]] = []
    for p_start, p_end in _spans(doc.text, section.start, section.end, _PARAGRAPH):
        for i, (s, e) in enumerate(_spans(doc.text, p_start, p_end, _SENTENCE)):
            spans.append((s, e, i == 0))
    counts = count([doc.text[s:e] for s, e, _ in spans])
    out: list[tuple[int, int, int, bool]] = []
    for (s, e, para), n in zip(spans, counts, strict=True):
        if n <= budget:
            out.append((s, e, n, para))
            continue
        pieces = _split_long(doc.text, s, e, n, budget)
        piece_counts = count([doc.text[a:b] for a, b in pieces])
        while any(c > budget for c in piece_counts):  # rare: very dense text; split finer
            pieces = [
                p
                for (a, b), c in zip(pieces, piece_counts, strict=True)
                for p in (_split_long(doc.text, a, b, c, budget) if c > budget else [(a, b)])
            ]
            piece_counts = count([doc.text[a:b] for a, b in pieces])
        out.extend((a, b, c, para and j == 0) for j, ((a, b), c) in enumerate(zip(pieces, piece_counts, strict=True)))
    return out


def chunk_document(doc: Document, count: CountTokens, *, budget: int = 200, overlap: int = 0) -> list[Chunk]:
    """Split a document into chunks of at most ``budget`` tokens, each inside one section."""
    if budget < 8:
        raise ValueError("the chunk budget must be at least 8 tokens")
    if not 0 <= overlap < budget:
        raise ValueError("overlap must be ≥ 0 and below the budget")
    chunks: list[Chunk] = []
    for section in doc.sections:
        pieces = units(doc, section, count, budget)
        i = 0
        while i < len(pieces):
            used, j = 0, i
            while j < len(pieces) and used + pieces[j][2] <= budget:
                used += pieces[j][2]
                j += 1
            start, end = pieces[i][0], pieces[j - 1][1]
            chunks.append(
                Chunk(
                    id=f"{doc.id}#{len(chunks)}",
                    doc_id=doc.id,
                    ordinal=len(chunks),
                    text=doc.text[start:end],
                    heading_path=section.heading_path,
                    start=start,
                    end=end,
                    page=section.page,
                    tokens=used,
                    title=doc.title,
                )
            )
            if j >= len(pieces):
                break
            back, carried = j, 0  # step back whole sentences for the overlap, always moving forward
            while overlap and back - 1 > i and carried + pieces[back - 1][2] <= overlap:
                back -= 1
                carried += pieces[back][2]
            i = back
    return chunks
