"""Retrieval as one call — what the feature pipeline, ``/v1/collections/{name}/search``, ``keel
search`` and ``keel ask`` all run: a candidate pool sized for the reranker, the blocking search in a
worker thread, then the reranker the query or the collection names, cut to ``top_k``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from keel.gateway.service import GatewayService
from keel.rag.backends import CollectionLike
from keel.rag.found import Found
from keel.rag.grouping import GroupBy, regroup
from keel.rag.rerank import candidate_pool, rerank_top
from keel.rag.search import Filters, Mode
from keel.tracing.tracer import Tracer

#: How the blocking search is run: a worker thread by default; ``Collections.run`` adds its lock
#: and reconnection.
Runner = Callable[[Callable[[], list[Found]]], Awaitable[list[Found]]]


async def in_thread(fn: Callable[[], list[Found]]) -> list[Found]:
    return await anyio.to_thread.run_sync(fn)


#: The cosine below which a hit is no source, and a question none clears is answered "I don't know"
#: without a model call. bench/retrieval/floor.py: on the demo handbook, chosen on half the golden set
#: (the highest floor keeping all its sources, less a 0.15 margin) it keeps every held-out answerable
#: question's source and refuses 73–93% of off-topic ones (0.25 refused 5%).
DEFAULT_FLOOR = 0.4


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    top_k: int = 5
    mode: Mode = "hybrid"
    min_score: float | None = None
    filters: Filters | None = None
    rerank: str | None = None  # a reranker spec for this query; None: the collection's own
    feedback: bool = True  # pseudo-relevance feedback (see keel.rag.search)
    group_by: GroupBy = "chunk"  # document: top_k documents, each with its best per_document chunks
    per_document: int = 2


async def retrieve(
    collection: CollectionLike,
    query: Query,
    *,
    service: GatewayService | None = None,
    default_model: str = "local",
    tenant: str | None = None,
    tracer: Tracer | None = None,
    run: Runner = in_thread,
) -> list[Found]:
    """The best ``query.top_k`` chunks. An LLM reranker's calls go through ``service`` as
    ``tenant``'s (default: the collection's), on ``default_model`` unless the spec names one."""
    spec = query.rerank if query.rerank is not None else collection.rerank
    options: dict[str, Any] = {
        "top_k": candidate_pool(query.top_k, spec),
        "mode": query.mode,
        "min_score": query.min_score,
        "tracer": tracer if tracer is not None else (service.tracer if service is not None else None),
        "filters": query.filters,
        "group_by": query.group_by,
        "per_document": query.per_document,
    }
    if not query.feedback:
        options["feedback"] = None
    found = await run(functools.partial(collection.search, query.text, **options))
    who = tenant if tenant is not None else collection.tenant
    grouped = query.group_by == "document"
    reranked = await rerank_top(
        spec, query.text, found, len(found) if grouped else query.top_k,
        service=service, default_model=default_model, tenant=who,
    )  # fmt: skip
    return regroup(reranked, query.top_k) if grouped else reranked
