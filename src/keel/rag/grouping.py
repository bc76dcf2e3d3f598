"""Documents, not chunks: each retriever's chunk evidence summed up per document before fusion, then
each document's best chunks.

A document scores its best chunk plus a damped share of its next ones (``damping`` × each of the
next ``depth`` scores): a page that answers in two places beats one that mentions the words once, and
a long page with many weak hits does not beat a short one with a strong hit. ``damping`` 0 is max.
Both passes are linear in the hits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from keel.rag.found import Found
from keel.rag.index import Hits
from keel.rag.retrieve import Hit

GroupBy = Literal["chunk", "document"]
GROUP_BY: tuple[str, ...] = ("chunk", "document")  # what the edges accept


def doc_of(chunk_id: str) -> str:
    return chunk_id.rsplit("#", 1)[0]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """How chunk scores add up to a document's, in one retriever (chosen on Cranfield's grid, mid-plateau:
    see bench/retrieval/cranfield.py --path ingest)."""

    damping: float = 0.0
    depth: int = 2

    def documents(self, hits: Hits) -> Hits:
        """Chunk hits (best first) → document hits, best first."""
        seen: dict[str, list[float]] = {}
        for chunk_id, score in hits:
            scores = seen.setdefault(doc_of(chunk_id), [])
            if len(scores) <= self.depth:
                scores.append(score)
        summed = [
            (doc, scores[0] + self.damping * sum(max(0.0, s) for s in scores[1:])) for doc, scores in seen.items()
        ]
        return sorted(summed, key=lambda item: -item[1])


def best_chunks(
    documents: list[Hit],
    chunks: list[Hit],
    per_document: int,
    *,
    most: int | None = None,
    keep: Callable[[list[Hit], int], list[Hit]] | None = None,
) -> list[tuple[Hit, list[Hit]]]:
    """Each document (in its fused order) with its best ``per_document`` chunks (in their fused order),
    the first ``most`` of them; a document none of whose chunks is in ``chunks`` is left out. ``keep``
    (chunks, n) → the first n that may stay (the relevance floor), asked only for the documents read."""
    by_doc: dict[str, list[Hit]] = {}
    for hit in chunks:
        by_doc.setdefault(doc_of(hit.chunk_id), []).append(hit)
    out: list[tuple[Hit, list[Hit]]] = []
    for doc in documents:
        mine = by_doc.get(doc.chunk_id)
        kept = (keep(mine, per_document) if keep is not None else mine[:per_document]) if mine else []
        if kept:
            out.append((doc, kept))
            if len(out) == most:
                break
    return out


def regroup(found: list[Found], top_k: int) -> list[Found]:
    """Chunks in a new order (a reranker's) put back together by document: each document at its best
    chunk's place, its chunks after it in their new order, the first ``top_k`` documents, renumbered."""
    order: dict[str, list[Found]] = {}
    for f in found:
        order.setdefault(f.doc_id, []).append(f)
    out: list[Found] = []
    for rank, chunks in enumerate(list(order.values())[:top_k], 1):
        for f in chunks:
            f.doc_rank = rank
        out.extend(chunks)
    return out


def documents(found: list[Found]) -> list[dict[str, Any]]:
    """Grouped results as documents (the JSON of ``keel search --group-by document`` and of HTTP
    search with ``group_by: document``): each with its id, title, rank and score, and its chunks."""
    out: list[dict[str, Any]] = []
    for f in found:
        if not out or out[-1]["doc_id"] != f.doc_id:
            out.append({
                "doc_id": f.doc_id, "title": f.title, "source": f.source, "rank": f.doc_rank, "score": f.doc_score,
                "chunks": [],
            })  # fmt: skip
        chunk = f.as_dict()
        for key in ("doc_id", "title", "source", "doc_rank", "doc_score"):
            del chunk[key]
        out[-1]["chunks"].append(chunk)
    return out


def _ordinal(chunk_id: str) -> int | None:
    tail = chunk_id.rsplit("#", 1)[-1]
    return int(tail) if tail.isdigit() else None


def merge_adjacent(found: list[Found]) -> list[Found]:
    """A document's chunks that overlap or follow one another (consecutive in the document) become
    one source spanning them, at the place of the best; its text joins theirs in document order
    without repeating an overlap, its offsets cover them all, its score is the best of them. Other
    chunks are left as they are. Linear in the chunks (one open source per document)."""
    out: list[Found] = []
    open_: dict[str, tuple[Found, int, int]] = {}  # document → (merged source, its first and last ordinal)
    for f in found:
        n = _ordinal(f.chunk_id)
        held = open_.get(f.doc_id)
        if held is not None and n is not None:
            merged, lo, hi = held
            overlaps = f.start < merged.end and f.end > merged.start
            if n == hi + 1 or (overlaps and n > hi):
                merged.text += ("" if f.start < merged.end else "\n\n") + f.text[max(0, merged.end - f.start) :]
                merged.end = max(merged.end, f.end)
            elif n == lo - 1 or (overlaps and n < lo):
                merged.text = (
                    f.text[: max(0, merged.start - f.start)] + ("" if f.end > merged.start else "\n\n") + merged.text
                )
                merged.start, merged.heading_path, merged.page = f.start, list(f.heading_path), f.page
            else:
                n = None  # not next to it: a source of its own
            if n is not None:
                merged.score = max(merged.score, f.score)
                merged.chunk_id = f"{f.doc_id}#{min(lo, n)}-{max(hi, n)}"
                open_[f.doc_id] = (merged, min(lo, n), max(hi, n))
                continue
        merged = replace(f, heading_path=list(f.heading_path))
        out.append(merged)
        ordinal = _ordinal(f.chunk_id)
        if ordinal is not None:
            open_[f.doc_id] = (merged, ordinal, ordinal)
    return out


def distinct_first(found: list[Found], top_k: int) -> list[Found]:
    """Document-major results as ``top_k`` sources, distinct evidence first: every document's best
    chunk (in document order), then every document's second, and so on."""
    by_doc: dict[str, list[Found]] = {}
    for f in found:
        by_doc.setdefault(f.doc_id, []).append(f)
    rounds = max((len(chunks) for chunks in by_doc.values()), default=0)
    ordered = [chunks[i] for i in range(rounds) for chunks in by_doc.values() if i < len(chunks)]
    return ordered[:top_k]
