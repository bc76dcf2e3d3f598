"""The retrieval step of a feature run: the query from its text input, one ``retrieve()`` call
(keel.rag.retrieval: pool, search in a worker thread, rerank), the sources screened for injection,
then as many as fit the window, numbered for citation; and the answer's attribution step
(keel.rag.citing) over those sources."""

from __future__ import annotations

from typing import Any

from keel.errors import ConfigError, UserError
from keel.features.guarding import screen_sources
from keel.features.result import FeatureResult, Plan, text_input
from keel.features.spec import FeatureSpec
from keel.gateway.service import GatewayService
from keel.rag.answer import SYSTEM, check_citations, render_context, select_sources
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.citing import Citer
from keel.rag.grouping import distinct_first, merge_adjacent
from keel.rag.retrieval import Query, retrieve


def query_of(spec: FeatureSpec, inputs: dict[str, Any]) -> str:
    key = text_input(inputs)
    if key is None:
        raise UserError(f"feature '{spec.name}' retrieves, so it needs a text input (question or query)")
    return str(inputs[key])


def with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]


async def retrieve_sources(
    plan: Plan, inputs: dict[str, Any], window: int, collections: Collections | None, service: GatewayService
) -> str:
    """Retrieval for a feature that declares it: its sources numbered, screened and fitted to the
    window; the context block for the system message, or "" (``found_nothing`` when none cleared)."""
    spec, result = plan.spec, plan.result
    if spec.retrieval is None:
        return ""
    name = spec.retrieval.collection
    if collections is None:
        raise ConfigError(f"feature '{spec.name}' retrieves from '{name}' but no retrieval backend is configured")
    try:
        collection = collections.get(name, tenant=plan.ctx.tenant)  # opened once; indexes stay in memory
    except CollectionNotFound:
        raise ConfigError(
            f"feature '{spec.name}' retrieves from collection '{name}', which does not exist: "
            f"create it with `keel ingest {name} PATH`"
        ) from None
    query = Query(
        query_of(spec, inputs),
        top_k=spec.retrieval.top_k,
        mode=spec.retrieval.mode,
        min_score=spec.retrieval.min_score,
        rerank=None if spec.retrieval.rerank else "none",  # rerank: true → the collection's own
        feedback=spec.retrieval.feedback,
        group_by=spec.retrieval.group_by,
        per_document=spec.retrieval.max_chunks_per_document,
    )
    found = await retrieve(
        collection,
        query,
        service=service,
        default_model=plan.model,
        tenant=plan.ctx.tenant,
        run=collections.run,
    )
    if spec.retrieval.group_by == "document":
        found = distinct_first(found, spec.retrieval.top_k)
    if spec.retrieval.merge_adjacent:
        found = merge_adjacent(found)
    found = screen_sources(plan, found)
    if not found:
        result.found_nothing = True
        result.notes.append("retrieval: nothing cleared min_score; answered without a model call")
        return ""
    result.sources = select_sources(found, max(256, window - plan.max_output - 512))
    return f"{SYSTEM}\n\n{render_context(result.sources)}"


def citer_for(plan: Plan) -> Citer:
    """The attribution step for this run's answer: it passes text through without sources, or when
    the feature says ``cite: model``."""
    retrieval = plan.spec.retrieval
    on = retrieval is not None and retrieval.cite == "attribute"
    return Citer([s.text for s in plan.result.sources], on=on)


def check_cited(result: FeatureResult) -> None:
    """The answer's citations, each checked against the sources it was given."""
    if result.sources:
        result.citations = check_citations(result.answer, result.sources)
        invalid = [c.number for c in result.citations if not c.valid]
        if invalid:
            result.notes.append(f"citations: {invalid} name sources that were not given")
