"""Answers that show their sources: numbered context within the model's budget, permission to say
"I don't know", and citations checked against the sources actually given.

``answer_stream`` is the reusable function: the features pipeline calls it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from keel.gateway.service import GatewayService
from keel.rag.backends import CollectionLike
from keel.rag.citing import Citer, cited_stream
from keel.rag.found import Found
from keel.rag.grouping import merge_adjacent
from keel.rag.retrieval import DEFAULT_FLOOR, Query, retrieve
from keel.text import cited, estimate_tokens
from keel.types import CallContext, ChatRequest

SYSTEM = (
    "You answer questions using only the numbered sources below. Cite every claim with the number of its "
    "source in square brackets, like [1] or [2][3]. If the sources do not contain the answer, reply exactly: "
    '"I don\'t know based on the available documents." Do not use outside knowledge.\n'
    "Example of a cited answer: Refunds are issued within five business days [2]."
)
NOTHING_FOUND = "I don't know: nothing in the documents matches that question."


@dataclass(slots=True)
class Citation:
    number: int
    valid: bool
    source: Found | None


@dataclass(slots=True)
class Answer:
    text: str = ""
    sources: list[Found] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    found_nothing: bool = False
    trace_id: str | None = None
    attributed: int = 0  # sentences Keel cited (keel.rag.citing), not the model

    @property
    def invalid_citations(self) -> list[int]:
        return [c.number for c in self.citations if not c.valid]

    @property
    def says_dont_know(self) -> bool:
        return "i don't know" in self.text.lower() or "i do not know" in self.text.lower()

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "found_nothing": self.found_nothing,
            "trace_id": self.trace_id,
            "attributed": self.attributed,
            "sources": [{"number": i, **s.as_dict()} for i, s in enumerate(self.sources, 1)],
            "citations": [
                {"number": c.number, "valid": c.valid, "chunk_id": c.source.chunk_id if c.source else None}
                for c in self.citations
            ],
        }


def select_sources(found: list[Found], budget_tokens: int) -> list[Found]:
    """The best sources that fit the budget (estimated at ~4 characters a token)."""
    out: list[Found] = []
    used = 0
    for hit in found:
        cost = estimate_tokens(hit.text) + 11  # its text and its header line
        if used + cost > budget_tokens and out:
            break
        out.append(hit)
        used += cost
    return out


def render_context(sources: list[Found]) -> str:
    blocks = []
    for number, s in enumerate(sources, 1):
        where = " › ".join(s.heading_path) or s.title or s.doc_id
        page = f", page {s.page}" if s.page else ""
        blocks.append(f"[{number}] {s.doc_id} — {where}{page}\n{s.text}")
    return "\n\n".join(blocks)


def check_citations(text: str, sources: list[Found]) -> list[Citation]:
    """The answer's citations, in order of first appearance, each with the source it names (if given)."""
    given = range(1, len(sources) + 1)
    return [Citation(n, n in given, sources[n - 1] if n in given else None) for n in cited(text)]


async def answer_stream(
    service: GatewayService,
    collection: CollectionLike,
    question: str,
    *,
    model: str,
    top_k: int = 6,
    min_score: float | None = DEFAULT_FLOOR,
    max_tokens: int = 512,
    cite: bool = True,
    ctx: CallContext | None = None,
    result: Answer | None = None,
) -> AsyncIterator[str]:
    """Yield the answer's text as it streams; ``result`` is filled with sources and checked citations.
    ``cite``: sentences the model leaves uncited get the source that supports them (keel.rag.citing)."""
    result = result if result is not None else Answer()
    tenant = ctx.tenant if ctx is not None else None
    asked = Query(question, top_k=top_k, min_score=min_score)
    found = await retrieve(collection, asked, service=service, default_model=model, tenant=tenant)
    found = merge_adjacent(found)  # a page's neighbouring chunks joined into one source
    if not found:
        result.found_nothing = True
        result.text = NOTHING_FOUND
        yield NOTHING_FOUND
        return
    window = service.gateway.route(model).info.context_window or 8192
    budget = max(256, window - max_tokens - estimate_tokens(SYSTEM) - estimate_tokens(question) - 62)
    result.sources = select_sources(found, budget)
    messages = [
        {"role": "system", "content": f"{SYSTEM}\n\n{render_context(result.sources)}"},
        {"role": "user", "content": question},
    ]
    req = ChatRequest(
        model=model,
        messages=messages,
        stream=True,
        max_tokens=max_tokens,
        params={"temperature": 0.1},
        ctx=ctx or CallContext(),
    )
    result.trace_id = req.ctx.trace_id
    citer = Citer([s.text for s in result.sources], on=cite)
    parts: list[str] = []
    async for text in cited_stream(service.chat_stream(req), citer):
        parts.append(text)
        yield text
    result.text = "".join(parts)
    result.attributed = len(citer.added)
    result.citations = check_citations(result.text, result.sources)


async def answer(service: GatewayService, collection: CollectionLike, question: str, **kw: Any) -> Answer:
    result = Answer()
    async for _ in answer_stream(service, collection, question, result=result, **kw):
        pass
    return result
