"""The cache step of a feature run: look the request up before retrieval (exact key, then the
semantic neighbour the gate allows), replay a hit, and keep a clean answer after the call.
See ``keel.cache`` for the store and the gate."""

from __future__ import annotations

from typing import Any

from keel.cache.store import AnswerCache, Entry, digest
from keel.features.result import FeatureResult, Lookup, Plan, text_input
from keel.features.spec import FeatureSpec
from keel.rag.answer import check_citations
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.found import Found
from keel.store.keys import DEFAULT_TENANT
from keel.tracing.redact import redact_text


def index_version(collections: Collections | None, spec: FeatureSpec, tenant: str | None) -> str | None:
    """The retrieval index stamp a feature's answers depend on (None: no retrieval, or no collection yet —
    retrieval reports that itself, precisely)."""
    if spec.retrieval is None or collections is None:
        return None
    try:
        return collections.get(spec.retrieval.collection, tenant=tenant).index_version()
    except CollectionNotFound:
        return None


async def recall(cache: AnswerCache, collections: Collections | None, plan: Plan, inputs: dict[str, Any]) -> bool:
    """Serve from the cache if the same request (or, with ``semantic``, the same question) was answered
    in this scope; otherwise leave the keys on the plan for ``remember``."""
    spec, result = plan.spec, plan.result
    assert spec.cache is not None
    key = text_input(inputs)
    others = {k: v for k, v in inputs.items() if k != key}
    scope = digest(
        plan.ctx.tenant, spec.model_dump(mode="json"), result.prompt_version, plan.model, plan.params,
        plan.max_output, plan.index, others,
    )  # fmt: skip
    lookup = plan.lookup = Lookup(scope, digest(scope, inputs), str(inputs.get(key, "")) if key else "")
    result.cache = "miss"
    hit = cache.exact(lookup.key) if spec.cache.exact else None
    if hit is not None:
        replay(result, hit, "exact", f"cache: exact hit of trace {hit.trace_id}")
        return True
    semantic = spec.cache.semantic
    if semantic is None or not lookup.text:
        return False
    if redact_text(lookup.text) != lookup.text:
        result.notes.append("cache: semantic lookup skipped — the input holds personal data")
        return False  # and with no vector, ``remember`` keeps it for exact lookups only
    if collections is None:
        return False
    embedder = collections.embedder()
    lookup.vector = (await collections.run(embedder.embed, [lookup.text]))[0]
    near, refused = cache.nearest(scope, lookup.text, lookup.vector, semantic.threshold)
    if near is not None:
        shown = f"{near.entry.text[:80]!r}, trace {near.entry.trace_id}"
        replay(result, near.entry, "semantic", f"cache: semantic hit (cosine {near.cosine:.3f}) of {shown}")
        return True
    if refused is not None:
        result.notes.append(
            f"cache: the gate refused a near-hit (cosine {refused.cosine:.3f}, {refused.entry.text[:60]!r}): "
            f"{refused.gate.reason}"
        )
    return False


def replay(result: FeatureResult, entry: Entry, kind: str, note: str) -> None:
    value = entry.value
    result.answer = value["answer"]
    result.value = value.get("value")
    result.sources = [Found(**s) for s in value.get("sources", [])]
    result.citations = check_citations(result.answer, result.sources)
    result.cache = kind
    result.cost_usd = 0.0
    result.notes.append(note)


def remember(cache: AnswerCache, plan: Plan) -> None:
    """Keep a clean answer: served by the model, valid, with no fallback and no guard on the way."""
    spec, result, lookup = plan.spec, plan.result, plan.lookup
    if spec.cache is None or lookup is None or not result.answer or result.prompt_fallback:
        return
    if any(n.startswith(("output: every attempt", "citations:", "guard ")) for n in result.notes):
        return  # never cache an answer a guard had to flag
    semantic = spec.cache.semantic is not None and lookup.vector is not None  # no vector for PII inputs
    cache.put(
        lookup.key,
        scope=lookup.scope,
        feature=spec.name,
        text=lookup.text,
        vector=lookup.vector if semantic else None,
        value=result.as_dict(),
        trace_id=result.trace_id,
        ttl_s=spec.cache.ttl_s,
        tenant=plan.ctx.tenant or DEFAULT_TENANT,
    )
