"""The feature pipeline: the step modules composed in ARCHITECTURE.md's order.

    prompt (label) → retrieval (numbered sources) → context fit → gateway (structured when declared)
    → citation check → trace (feature, user, prompt version)

Guards, caches, budgets and review are declared in specs but arrive with their own issues; until
then a spec that configures them is refused with a clear error rather than silently served without.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keel.errors import ConfigError, UserError
from keel.features.context import fit
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.spec import FeatureSpec, load_feature
from keel.features.structured import complete_structured
from keel.gateway.service import GatewayService
from keel.rag.answer import NOTHING_FOUND, SYSTEM, Citation, check_citations, render_context, select_sources
from keel.rag.backends import Backend
from keel.rag.embedder import TextEmbedder
from keel.rag.found import Found
from keel.rag.rerank import candidate_pool, rerank_top
from keel.types import CallContext, ChatRequest

NOT_YET = {
    "guards": "issue 7 (guards)",
    "cache": "issue 6 (caching)",
    "budget": "issue 6 (budgets)",
    "review": "the review issue",
}


@dataclass(slots=True)
class FeatureResult:
    feature: str
    answer: str
    value: Any = None  # the validated object for features with an output schema
    sources: list[Found] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    prompt_version: int = 0
    prompt_fallback: str | None = None
    model: str = ""
    trace_id: str = ""
    cost_usd: float | None = None
    latency_ms: float = 0.0
    found_nothing: bool = False
    attempts: int = 1


def _refuse_unbuilt(spec: FeatureSpec) -> None:
    for section, issue in NOT_YET.items():
        if getattr(spec, section) is not None:
            raise ConfigError(
                f"features/{spec.name}.yaml: '{section}' is declared, but its step arrives with "
                f"{issue}; remove it to run this feature now"
            )


def _query(spec: FeatureSpec, inputs: dict[str, Any]) -> str:
    for key in ("question", "query"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    text = next((v for v in inputs.values() if isinstance(v, str)), None)
    if text is None:
        raise UserError(f"feature '{spec.name}' retrieves, so it needs a text input (question or query)")
    return text


class FeaturePipeline:
    def __init__(
        self,
        service: GatewayService,
        root: Path,
        registry: PromptRegistry,
        *,
        backend: Backend | None = None,
        embedder: TextEmbedder | None = None,
    ) -> None:
        self.service = service
        self.root = root
        self.registry = registry
        self.backend = backend
        self.embedder = embedder

    async def run(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        user: str | None = None,
        tenant: str | None = None,
        label: str = DEFAULT_LABEL,
    ) -> FeatureResult:
        started = time.perf_counter()
        spec = load_feature(self.root, name)
        _refuse_unbuilt(spec)
        self.registry.record_file(self.root / "prompts" / f"{spec.prompt}.md")
        rendered = self.registry.render(spec.prompt, inputs, label=label)
        model = spec.model or rendered.model or self.service.gateway.settings.default_model or "local"
        result = FeatureResult(
            name, "", prompt_version=rendered.version, prompt_fallback=rendered.fallback_reason, model=model
        )
        messages = rendered.messages
        window = self.service.gateway.route(model).info.context_window or 8192
        max_output = int(rendered.params.get("max_tokens", 512))
        if spec.retrieval is not None:
            if self.backend is None or self.embedder is None:
                raise ConfigError(
                    f"feature '{name}' retrieves from '{spec.retrieval.collection}' but no retrieval "
                    "backend is configured"
                )
            collection = self.backend.open(spec.retrieval.collection, self.embedder)
            query = _query(spec, inputs)
            spec_rerank = collection.rerank if spec.retrieval.rerank else "none"  # rerank: true → the collection's
            found = collection.search(
                query,
                top_k=candidate_pool(spec.retrieval.top_k, spec_rerank),
                min_score=spec.retrieval.min_score,
                tracer=self.service.tracer,
            )
            found = await rerank_top(
                spec_rerank, query, found, spec.retrieval.top_k, service=self.service, default_model=model
            )
            if not found:
                result.answer, result.found_nothing = NOTHING_FOUND, True
                result.latency_ms = (time.perf_counter() - started) * 1000
                return result
            result.sources = select_sources(found, max(256, window - max_output - 512))
            context = f"{SYSTEM}\n\n{render_context(result.sources)}"
            messages = _with_context(messages, context)
        fitted = fit(messages, window=window, max_output=max_output, policy=spec.context.policy)
        ctx = CallContext(tenant=tenant, user=user, feature=name)
        params = {k: v for k, v in rendered.params.items() if k != "max_tokens"}
        if spec.output is not None and spec.output.schema_path:
            schema = orjson.loads((self.root / spec.output.schema_path).read_bytes())
            structured = await complete_structured(
                self.service,
                model=model,
                messages=fitted.messages,
                schema=schema,
                retries=spec.output.retries,
                max_retry_tokens=spec.output.max_retry_tokens,
                params={**params, "max_tokens": max_output},
                fallback=spec.output.fallback,
                ctx=ctx,
            )
            result.value, result.attempts = structured.value, structured.attempts
            result.answer = orjson.dumps(structured.value).decode()
            result.trace_id = structured.trace_ids[-1] if structured.trace_ids else ""  # each attempt is traced
            result.cost_usd = structured.cost_usd  # what every attempt cost, not just the last
        else:
            response = await self.service.chat(
                ChatRequest(model=model, messages=fitted.messages, max_tokens=max_output, params=params, ctx=ctx)
            )
            result.answer = response.text
            record = ctx.record
            result.trace_id = ctx.trace_id
            result.cost_usd = record.cost_usd if record is not None else None
        result.citations = check_citations(result.answer, result.sources) if result.sources else []
        result.latency_ms = (time.perf_counter() - started) * 1000
        return result


def _with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]
