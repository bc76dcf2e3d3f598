"""The feature pipeline: the step modules composed in ARCHITECTURE.md's order.

    experiment arm → prompt (label or arm version) → retrieval (numbered sources) → context policy
    → gateway (streamed or not; structured when declared) → citation check → feature trace

One generator (``events``) serves blocking runs and streams alike: it yields ``Started`` (what will
serve: prompt version, model, arm, sources), then ``Delta`` text or ``Partial`` objects while the
model streams, then ``Done`` with the result. Each run writes one trace row (operation
``feature``) with its prompt version, experiment arm, summed usage and cost, and notes; the model
calls inside it are traced as its children.

Guards, caches, budgets and review are declared in specs but arrive with their own issues; until
then a spec that configures them is refused with a clear error rather than silently served without.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keel.cache.store import AnswerCache, Entry, digest
from keel.checks import CheckContext
from keel.config.settings import BudgetSettings, KeelSettings
from keel.errors import ConfigError, InvalidRequest, UserError
from keel.features.context import estimate_tokens, fit, map_reduce
from keel.features.experiments import Arm, Experiments
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.spec import FeatureSpec, load_feature
from keel.features.structured import Partial, StructuredResult, structured_events
from keel.features.templates import Rendered
from keel.gateway.runtime import build_service, close_service
from keel.gateway.service import GatewayService
from keel.guards import output as output_guards
from keel.guards.actions import decide
from keel.guards.pii import redact_many, restore
from keel.guards.screen import screen
from keel.rag.answer import NOTHING_FOUND, SYSTEM, Citation, check_citations, render_context, select_sources
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.found import Found
from keel.rag.rerank import candidate_pool, rerank_top
from keel.store import connect, db_path
from keel.store.traces import TraceRecord, outcome
from keel.tracing.redact import capture, redact_text
from keel.types import CallContext, ChatRequest

NOT_YET = {
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
    experiment: str | None = None
    arm: str | None = None
    trace_id: str = ""
    cost_usd: float | None = None
    latency_ms: float = 0.0
    found_nothing: bool = False
    attempts: int = 1
    notes: list[str] = field(default_factory=list)
    cache: str | None = None  # for features that cache: "exact" or "semantic" (replayed), or "miss"
    confidence: float | None = None  # the lowest output-guard score, when output guards run
    guards: dict[str, float] = field(default_factory=dict)  # output guard → score

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape shared by the CLI, HTTP and the SDK."""
        value = self.value.model_dump(mode="json") if hasattr(self.value, "model_dump") else self.value
        return {
            "feature": self.feature,
            "answer": self.answer,
            "value": value,
            "prompt_version": self.prompt_version,
            "prompt_fallback": self.prompt_fallback,
            "model": self.model,
            "experiment": self.experiment,
            "arm": self.arm,
            "trace_id": self.trace_id,
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 2),
            "found_nothing": self.found_nothing,
            "attempts": self.attempts,
            "notes": self.notes,
            "cache": self.cache,
            "confidence": self.confidence,
            "guards": self.guards,
            "sources": [s.as_dict() for s in self.sources],
            "citations": [{"number": c.number, "valid": c.valid} for c in self.citations],
        }


@dataclass(frozen=True, slots=True)
class Started:
    result: FeatureResult  # what will serve: prompt version, model, arm, sources, trace id


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    result: FeatureResult


FeatureEvent = Started | Delta | Partial | Done


def event_dict(event: FeatureEvent) -> dict[str, Any]:
    """An event as JSON (the SSE ``data`` of ``POST /v1/features/{name}/run`` with ``stream``)."""
    if isinstance(event, Delta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, Partial):
        return {"type": "partial", "value": event.value, "attempt": event.attempt}
    kind = "started" if isinstance(event, Started) else "done"
    data = event.result.as_dict()
    if kind == "started":
        for key in ("answer", "value", "citations", "cost_usd", "latency_ms", "attempts"):
            data.pop(key)
    return {"type": kind, **data}


def _refuse_unbuilt(spec: FeatureSpec) -> None:
    for section, issue in NOT_YET.items():
        if getattr(spec, section) is not None:
            raise ConfigError(
                f"features/{spec.name}.yaml: '{section}' is declared, but its step arrives with "
                f"{issue}; remove it to run this feature now"
            )


class InjectionBlocked(UserError):
    code = "prompt_injection"


class OutputBlocked(UserError):
    status = 422
    code = "output_blocked"


def _embed_with(collections: Collections | None) -> Any:
    if collections is None:
        return None
    return lambda texts: collections.embedder().embed(texts)


class InputTooLong(UserError):
    status = 413
    code = "input_too_long"


def _screen_inputs(spec: FeatureSpec, inputs: dict[str, Any]) -> str | None:
    """The size guard, then every text input through the injection guard: block (400) or a note."""
    size = spec.guards.rule("max_tokens") if spec.guards is not None else None
    if size is not None:
        tokens = sum(estimate_tokens(v) for v in inputs.values() if isinstance(v, str))
        if tokens > size.limit:
            raise InputTooLong(
                f"guard 'max_tokens': the inputs are ~{tokens:,} tokens; this feature takes {size.limit:,}"
            )
    rule = spec.guards.rule("injection") if spec.guards is not None else None
    if rule is None:
        return None
    for key, value in inputs.items():
        if not isinstance(value, str):
            continue
        verdict = screen(value, threshold=rule.threshold)
        if verdict.flagged:
            why = "; ".join(verdict.reasons)
            if rule.action in (None, "block"):
                raise InjectionBlocked(f"guard 'injection' blocked input '{key}': {why}")
            return f"guard injection: input '{key}' flagged ({why}); not cached"
    return None


def _redact_inputs(spec: FeatureSpec, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """pii_redact: text inputs with placeholders (<EMAIL_1>), the mapping back, and a note."""
    rule = spec.guards.rule("pii_redact") if spec.guards is not None else None
    if rule is None:
        return inputs, {}, None
    keys = [k for k, v in inputs.items() if isinstance(v, str)]
    texts, mapping, found = redact_many([inputs[k] for k in keys], keep=frozenset(rule.keep))
    out = {**inputs, **dict(zip(keys, texts, strict=True))}
    kinds = {f.kind for f in found}
    note = f"guard pii_redact: {', '.join(sorted(kinds))} replaced by placeholders before the model" if kinds else None
    return out, mapping, note


def _unrestored(answer: str, plan: _Plan | None) -> str:
    """What the trace keeps of an answer: with the redacted values back in placeholder form."""
    if plan is None or not plan.pii:
        return answer
    for placeholder, original in plan.pii.items():
        answer = answer.replace(original, re.sub(r"<([A-Z]+)_\d+(_\w+)?>", r"[\1]", placeholder))
    return answer


def _text_input(inputs: dict[str, Any]) -> str | None:
    """The input a question lives in: ``question`` or ``query``, else the first text input."""
    for key in ("question", "query"):
        if isinstance(inputs.get(key), str):
            return key
    return next((k for k, v in inputs.items() if isinstance(v, str)), None)


def _pieces(text: str, size: int = 24) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _query(spec: FeatureSpec, inputs: dict[str, Any]) -> str:
    for key in ("question", "query"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    text = next((v for v in inputs.values() if isinstance(v, str)), None)
    if text is None:
        raise UserError(f"feature '{spec.name}' retrieves, so it needs a text input (question or query)")
    return text


def _with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]


@dataclass(slots=True)
class Lookup:
    scope: str
    key: str
    text: str
    vector: Any = None


@dataclass(frozen=True, slots=True)
class _Pins:
    version: int | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    spec: FeatureSpec
    prompt_version: int
    model: str
    index_version: str | None


@dataclass(slots=True)
class _Plan:
    spec: FeatureSpec
    result: FeatureResult
    ctx: CallContext
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    max_output: int = 512
    lookup: Lookup | None = None  # the cache keys, when the feature caches
    pii: dict[str, str] = field(default_factory=dict)  # placeholder → value, when pii_redact is on
    inputs: dict[str, Any] | None = None  # what the model was given (redacted), for the trace


class FeaturePipeline:
    def __init__(
        self,
        service: GatewayService,
        root: Path,
        registry: PromptRegistry,
        *,
        collections: Collections | None = None,
        experiments: Experiments | None = None,
    ) -> None:
        self.service = service
        self.root = root
        self.registry = registry
        self.collections = collections
        self.experiments = experiments if experiments is not None else Experiments(registry.conn)
        self.cache = AnswerCache(registry.conn)

    async def run(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        user: str | None = None,
        tenant: str | None = None,
        key: str | None = None,
        label: str = DEFAULT_LABEL,
        version: int | None = None,
        model: str | None = None,
    ) -> FeatureResult:
        """``version`` and ``model`` pin what serves (eval matrices); otherwise the label, the running
        experiment and the spec decide."""
        result: FeatureResult | None = None
        events = self.events(name, inputs, user=user, tenant=tenant, key=key, label=label, version=version, model=model)
        async for event in events:
            if isinstance(event, Done):
                result = event.result  # keep draining: the run's trace row is written as the generator ends
        assert result is not None, "the pipeline ends with Done or raises"
        return result

    async def events(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        user: str | None = None,
        tenant: str | None = None,
        key: str | None = None,
        label: str = DEFAULT_LABEL,
        stream: bool = False,
        version: int | None = None,
        model: str | None = None,
    ) -> AsyncGenerator[FeatureEvent, None]:
        started = time.perf_counter()
        ctx = CallContext(tenant=tenant, user=user, feature=name, key=key)
        plan: _Plan | None = None
        error: BaseException | None = None
        try:
            plan = await self._prepare(name, inputs, ctx, label, _Pins(version, model))
            result = plan.result
            yield Started(result)
            if result.cache in ("exact", "semantic"):
                if stream:
                    for piece in _pieces(result.answer):  # a replayed stream is still a stream
                        yield Delta(piece)
            elif not result.found_nothing:
                async for event in self._complete(plan, stream):
                    yield event
                self._guard_output(plan)
                self._remember(plan)
            result.latency_ms = (time.perf_counter() - started) * 1000
            yield Done(result)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record(ctx, plan, inputs, started, error)

    # -- steps ---------------------------------------------------------------------------------
    def resolve(
        self,
        name: str,
        inputs: dict[str, Any],
        *,
        user: str | None = None,
        label: str = DEFAULT_LABEL,
        version: int | None = None,
        model: str | None = None,
    ) -> Resolved:
        """What would serve this call, without calling anything: the prompt version, the model and the
        retrieval index version (eval result caches key on them)."""
        spec, rendered, _, _, chosen = self._choose(name, inputs, user, label, _Pins(version, model))
        index = None
        if spec.retrieval is not None and self.collections is not None:
            try:
                index = self.collections.get(spec.retrieval.collection).index_version()
            except CollectionNotFound:
                index = None  # the run itself says so, precisely
        return Resolved(spec, rendered.version, chosen, index)

    def _choose(
        self, name: str, inputs: dict[str, Any], user: str | None, label: str, pins: _Pins
    ) -> tuple[FeatureSpec, Rendered, str | None, Arm | None, str]:
        spec = load_feature(self.root, name)
        _refuse_unbuilt(spec)
        experiment, arm = self._arm(name, user, label) if pins.version is None and pins.model is None else (None, None)
        self.registry.record_file(self.root / "prompts" / f"{spec.prompt}.md")
        version = pins.version if pins.version is not None else (arm.version if arm else None)
        rendered = self.registry.render(spec.prompt, inputs, label=label, version=version)
        first = spec.route.first if spec.route is not None else None
        model = pins.model or (arm.model if arm else None) or first or spec.model or rendered.model
        model = model or self.service.gateway.settings.default_model or "local"
        return spec, rendered, experiment, arm, model

    async def _prepare(self, name: str, inputs: dict[str, Any], ctx: CallContext, label: str, pins: _Pins) -> _Plan:
        flagged = _screen_inputs(load_feature(self.root, name), inputs)
        inputs, mapping, redacted = _redact_inputs(load_feature(self.root, name), inputs)
        spec, rendered, ctx.experiment, arm, model = self._choose(name, inputs, ctx.user, label, pins)
        ctx.prompt, ctx.prompt_version = spec.prompt, rendered.version
        if spec.budget is not None:  # the feature's own budgets join keel.yaml's for its model calls
            ctx.per_call_usd = spec.budget.per_call_usd
            if spec.budget.per_user_day_usd is not None:
                ctx.budgets = {
                    f"{spec.name}.per_user_day": BudgetSettings(
                        match={"feature": spec.name}, per="user", period="day", usd=spec.budget.per_user_day_usd
                    )
                }
        ctx.arm = arm.name if arm else None
        result = FeatureResult(
            name,
            "",
            prompt_version=rendered.version,
            prompt_fallback=rendered.fallback_reason,
            model=model,
            experiment=ctx.experiment,
            arm=ctx.arm,
            trace_id=ctx.trace_id,
        )
        if rendered.fallback_reason:
            result.notes.append(rendered.fallback_reason)
        if flagged:
            result.notes.append(flagged)
        if redacted:
            result.notes.append(redacted)
        plan = _Plan(spec, result, ctx, model, max_output=int(rendered.params.get("max_tokens", 512)))
        plan.params = {k: v for k, v in rendered.params.items() if k != "max_tokens"}
        plan.pii, plan.inputs = mapping, inputs
        if spec.cache is not None and not flagged and await self._recall(plan, inputs):
            return plan
        window = self.service.gateway.route(model).info.context_window or 8192
        context = await self._retrieve(plan, inputs, window)
        if result.found_nothing:
            result.answer = NOTHING_FOUND
            return plan
        messages = _with_context(rendered.messages, context) if context else rendered.messages
        policy = spec.context.policy
        try:
            fitted = fit(
                messages, window=window, max_output=plan.max_output, policy=policy.replace("map_reduce", "fail")
            )
        except InvalidRequest as exc:
            if policy != "map_reduce" or exc.code != "context_length_exceeded":
                raise
            rendered = await self._reduce(plan, inputs, rendered, window, messages)
            messages = _with_context(rendered.messages, context) if context else rendered.messages
            fitted = fit(messages, window=window, max_output=plan.max_output, policy="fail")
        if fitted.dropped:
            result.notes.append(f"context: dropped the {fitted.dropped} oldest turn(s) to fit the window")
        plan.messages = fitted.messages
        return plan

    # -- cache ---------------------------------------------------------------------------------
    async def _recall(self, plan: _Plan, inputs: dict[str, Any]) -> bool:
        """Serve from the cache if the same request (or, with ``semantic``, the same question) was
        answered in this scope; otherwise remember the keys for after the call."""
        spec, result = plan.spec, plan.result
        assert spec.cache is not None
        index = None
        if spec.retrieval is not None and self.collections is not None:
            try:
                index = self.collections.get(spec.retrieval.collection).index_version()
            except CollectionNotFound:
                index = None  # retrieval says so next, precisely
        text_key = _text_input(inputs)
        others = {k: v for k, v in inputs.items() if k != text_key}
        scope = digest(
            plan.ctx.tenant, spec.model_dump(mode="json"), result.prompt_version, plan.model, plan.params,
            plan.max_output, index, others,
        )  # fmt: skip
        lookup = Lookup(scope, digest(scope, inputs), str(inputs.get(text_key, "")) if text_key else "")
        plan.lookup = lookup
        result.cache = "miss"
        hit = self.cache.exact(lookup.key) if spec.cache.exact else None
        if hit is not None:
            self._replay(result, hit, "exact", f"cache: exact hit of trace {hit.trace_id}")
            return True
        semantic = spec.cache.semantic
        if semantic is None or not lookup.text:
            return False
        if redact_text(lookup.text) != lookup.text:
            result.notes.append("cache: semantic lookup skipped — the input holds personal data")
            return False
        if self.collections is None:
            return False
        embedder = self.collections.embedder()
        lookup.vector = (await self.collections.run(embedder.embed, [lookup.text]))[0]
        near, refused = self.cache.nearest(scope, lookup.text, lookup.vector, semantic.threshold)
        if near is not None:
            shown = f"{near.entry.text[:80]!r}, trace {near.entry.trace_id}"
            why = f"cache: semantic hit (cosine {near.cosine:.3f}) of {shown}"
            self._replay(result, near.entry, "semantic", why)
            return True
        if refused is not None:
            result.notes.append(
                f"cache: the gate refused a near-hit (cosine {refused.cosine:.3f}, {refused.entry.text[:60]!r}): "
                f"{refused.gate.reason}"
            )
        return False

    @staticmethod
    def _replay(result: FeatureResult, entry: Entry, kind: str, note: str) -> None:
        value = entry.value
        result.answer = value["answer"]
        result.value = value.get("value")
        result.sources = [Found(**s) for s in value.get("sources", [])]
        result.citations = check_citations(result.answer, result.sources)
        result.cache = kind
        result.cost_usd = 0.0
        result.notes.append(note)

    def _decide(self, plan: _Plan, proposal: Any) -> Any:
        """Critical actions: the model proposed, the spec's rules decide (keel.guards.actions)."""
        decision = decide(plan.spec.actions, proposal, plan.inputs or {})
        if decision is None:
            return proposal
        if decision.allowed:
            plan.result.notes.append(f"action {decision.action}: every rule holds")
            return proposal
        fallback = plan.spec.actions[decision.action].fallback
        plan.result.notes.append(f"action {decision.action} refused by rules: {'; '.join(decision.reasons)}")
        plan.result.value = fallback
        return fallback

    def _guard_output(self, plan: _Plan) -> None:
        """Output guards in the spec's order; the lowest score is the answer's confidence."""
        spec, result = plan.spec, plan.result
        rules = spec.guards.output if spec.guards is not None else []
        if not rules:
            return
        sources = [s.text for s in result.sources]
        embed = _embed_with(self.collections)
        for rule in rules:
            if rule.name == "grounded":
                checked = output_guards.grounded(result.answer, sources, embed, rule.threshold or 0.8)
            elif rule.name == "citations":
                checked = output_guards.citations(result.answer, sources)
            elif rule.name == "unsafe":
                checked = output_guards.unsafe(result.answer)
            else:
                checked = output_guards.schema(not any(n.startswith("output: every attempt") for n in result.notes))
            result.guards[checked.name] = round(checked.score, 3)
            if checked.passed:
                continue
            action = rule.action or "flag"
            result.notes.append(f"guard {checked.name} ({action}): {checked.reason}")
            if action == "block":
                raise OutputBlocked(f"guard '{checked.name}' blocked the answer: {checked.reason}")
            if action == "fallback":
                fallback = spec.output.fallback if spec.output is not None else None
                result.answer = fallback if isinstance(fallback, str) else NOTHING_FOUND
                result.citations = []
                break
        result.confidence = min(result.guards.values()) if result.guards else None

    def _remember(self, plan: _Plan) -> None:
        """Keep a clean answer: served by the model, valid, with no fallback on the way."""
        spec, result, lookup = plan.spec, plan.result, plan.lookup
        if spec.cache is None or lookup is None or not result.answer or result.prompt_fallback:
            return
        if any(n.startswith(("output: every attempt", "citations:", "guard ")) for n in result.notes):
            return  # never cache an answer a guard had to flag
        private = bool(lookup.text) and redact_text(lookup.text) != lookup.text
        semantic = spec.cache.semantic is not None and lookup.vector is not None and not private
        self.cache.put(
            lookup.key,
            scope=lookup.scope,
            feature=spec.name,
            text=lookup.text,
            vector=lookup.vector if semantic else None,
            value=result.as_dict(),
            trace_id=result.trace_id,
            ttl_s=spec.cache.ttl_s,
        )

    def _arm(self, name: str, user: str | None, label: str) -> tuple[str | None, Arm | None]:
        """Users are enrolled in the feature's running experiment unless they asked for a label."""
        if user is None or label != DEFAULT_LABEL:
            return None, None
        experiment = self.experiments.running(name)
        if experiment is None:
            return None, None
        return experiment.name, experiment.arm_for(user)

    async def _retrieve(self, plan: _Plan, inputs: dict[str, Any], window: int) -> str:
        spec, result = plan.spec, plan.result
        if spec.retrieval is None:
            return ""
        name = spec.retrieval.collection
        if self.collections is None:
            raise ConfigError(f"feature '{spec.name}' retrieves from '{name}' but no retrieval backend is configured")
        try:
            collection = self.collections.get(name)  # opened once; its indexes stay in memory
        except CollectionNotFound:
            raise ConfigError(
                f"feature '{spec.name}' retrieves from collection '{name}', which does not exist: "
                f"create it with `keel ingest {name} PATH`"
            ) from None
        query = _query(spec, inputs)
        spec_rerank = collection.rerank if spec.retrieval.rerank else "none"  # rerank: true → the collection's
        found = await self.collections.run(
            functools.partial(
                collection.search,
                query,
                top_k=candidate_pool(spec.retrieval.top_k, spec_rerank),
                min_score=spec.retrieval.min_score,
                mode=spec.retrieval.mode,
                tracer=self.service.tracer,
                **({} if spec.retrieval.feedback else {"feedback": None}),
            )
        )
        found = await rerank_top(
            spec_rerank, query, found, spec.retrieval.top_k, service=self.service, default_model=plan.model
        )
        rule = spec.guards.rule("injection") if spec.guards is not None else None
        if rule is not None and found:
            kept = []
            for hit in found:
                verdict = screen(hit.text, retrieved=True, threshold=rule.threshold)
                if verdict.flagged:
                    result.notes.append(f"guard injection: dropped {hit.doc_id} ({'; '.join(verdict.reasons)[:160]})")
                else:
                    kept.append(hit)
            found = kept
        if not found:
            result.found_nothing = True
            result.notes.append("retrieval: nothing cleared min_score; answered without a model call")
            return ""
        result.sources = select_sources(found, max(256, window - plan.max_output - 512))
        return f"{SYSTEM}\n\n{render_context(result.sources)}"

    async def _reduce(
        self,
        plan: _Plan,
        inputs: dict[str, Any],
        rendered: Rendered,
        window: int,
        messages: list[dict[str, Any]],
    ) -> Rendered:
        spec = plan.spec
        key = spec.context.input or max(
            (k for k, v in inputs.items() if isinstance(v, str)), key=lambda k: len(inputs[k]), default=None
        )
        if key is None or not isinstance(inputs.get(key), str):
            raise InvalidRequest(
                f"map_reduce needs a text input to reduce (context.input: {key or 'none found'})", param="context"
            )
        document = str(inputs[key])
        others = estimate_tokens(" ".join(m["content"] for m in messages)) - estimate_tokens(document)
        fits = window - plan.max_output - others - 64
        task = " ".join(str(v) for k, v in inputs.items() if k != key and isinstance(v, str)) or spec.description
        reduced = await map_reduce(
            self.service,
            model=plan.model,
            text=document,
            task=task or spec.name,
            fits_tokens=fits,
            window=window,
            ctx=plan.ctx,
            summary_tokens=spec.context.summary_tokens,
        )
        plan.result.notes.append(
            f"context: '{key}' map-reduced in {reduced.rounds} round(s) of {reduced.calls} summaries"
        )
        again = self.registry.render(spec.prompt, {**inputs, key: reduced.text}, version=rendered.version)
        again.fallback_reason = rendered.fallback_reason
        return again

    async def _complete(self, plan: _Plan, stream: bool) -> AsyncIterator[FeatureEvent]:
        spec, result = plan.spec, plan.result
        if spec.output is not None and (spec.output.schema_path or spec.output.pydantic):
            async for event in structured_events(
                self.service,
                model=plan.model,
                messages=plan.messages,
                schema=spec.output.load_schema(self.root),
                retries=spec.output.retries,
                max_retry_tokens=spec.output.max_retry_tokens,
                params={**plan.params, "max_tokens": plan.max_output},
                fallback=spec.output.fallback,
                ctx=plan.ctx,
                stream=stream,
            ):
                if isinstance(event, StructuredResult):
                    result.value, result.attempts = event.value, event.attempts
                    dumped = event.value.model_dump(mode="json") if hasattr(event.value, "model_dump") else event.value
                    if spec.actions:
                        dumped = self._decide(plan, dumped)
                    result.answer = orjson.dumps(dumped).decode()
                    if event.fallback:
                        result.notes.append(
                            f"output: every attempt was invalid; served the declared fallback ({event.errors[-1]})"
                        )
                else:
                    yield event
        else:
            if spec.route is not None and await self._first_tier_answers(plan):
                if stream:
                    for piece in _pieces(result.answer):
                        yield Delta(piece)
            else:
                async for step in self._ask(plan, stream):
                    yield step
        rule = spec.guards.rule("pii_redact") if spec.guards is not None else None
        if plan.pii and rule is not None and rule.restore:
            result.answer = restore(result.answer, plan.pii)  # back for the user; the trace keeps placeholders
        if result.sources:
            result.citations = check_citations(result.answer, result.sources)
            invalid = [c.number for c in result.citations if not c.valid]
            if invalid:
                result.notes.append(f"citations: {invalid} name sources that were not given")
        result.cost_usd = _summed_cost(plan.ctx)

    async def _ask(self, plan: _Plan, stream: bool) -> AsyncIterator[FeatureEvent]:
        request = ChatRequest(
            model=plan.model,
            messages=plan.messages,
            max_tokens=plan.max_output,
            params=plan.params,
            ctx=plan.ctx.child(),
            stream=stream,
        )
        if stream:
            parts: list[str] = []
            async for chunk in self.service.chat_stream(request):
                if chunk.text:
                    parts.append(chunk.text)
                    yield Delta(chunk.text)
            plan.result.answer = "".join(parts)
        else:
            plan.result.answer = (await self.service.chat(request)).text

    async def _first_tier_answers(self, plan: _Plan) -> bool:
        """Tier routing: the small model answers first; if any ``when`` check holds on its answer, the
        large model answers instead (both calls are on the trace). True when the first answer stands."""
        route, result = plan.spec.route, plan.result
        assert route is not None
        async for _ in self._ask(plan, stream=False):
            pass
        ctx = CheckContext(output=result.answer, sources=[s.text for s in result.sources], inputs={})
        reasons = [check.name for check in route.checks() if check(ctx).passed]
        if not reasons:
            result.notes.append(f"route: {plan.model} answered ({', '.join(c.name for c in route.checks())} held not)")
            return True
        result.notes.append(f"route: {plan.model} → {route.escalate_to} ({', '.join(reasons)})")
        plan.model = result.model = route.escalate_to
        return False

    def _record(
        self, ctx: CallContext, plan: _Plan | None, inputs: dict[str, Any], started: float, error: BaseException | None
    ) -> None:
        """The feature run's own trace row: the parent of every model call it made."""
        records = [c.record for c in ctx.children if c.record is not None]
        cancelled = isinstance(error, GeneratorExit)
        result = plan.result if plan is not None else None
        rec = TraceRecord(
            id=ctx.trace_id,
            ts=ctx.started,
            operation="feature",
            tenant=ctx.tenant,
            user=ctx.user,
            feature=ctx.feature,
            alias=plan.model if plan else None,
            deployment=records[-1].deployment if records else None,
            provider=records[-1].provider if records else None,
            model=records[-1].model if records else None,
            stream=False,
            **outcome(None if cancelled else error, cancelled=cancelled),
            input_tokens=sum(r.input_tokens for r in records),
            output_tokens=sum(r.output_tokens for r in records),
            cached_tokens=sum(r.cached_tokens for r in records),
            reasoning_tokens=sum(r.reasoning_tokens for r in records),
            usage_source="calls" if records else "none",
            cost_usd=_summed_cost(ctx),
            cost_source=_cost_source(records),
            latency_ms=(time.perf_counter() - started) * 1000,
            request=capture(
                plan.inputs if plan is not None and plan.inputs is not None else inputs, self.service.capture_policy
            ),
            response=capture(_unrestored(result.answer, plan), self.service.capture_policy)
            if result and result.answer
            else None,
            prompt=ctx.prompt,
            prompt_version=ctx.prompt_version,
            experiment=ctx.experiment,
            arm=ctx.arm,
            notes=(result.notes or None) if result else None,
        )
        self.service.record(rec)


def _cost_source(records: list[TraceRecord]) -> str | None:
    sources = {r.cost_source for r in records}
    if len(sources) == 1:
        return next(iter(sources))  # e.g. every call ran on the local model
    return f"sum of {len(records)} calls" if records else None


@asynccontextmanager
async def open_pipeline(settings: KeelSettings, home: Path, root: Path) -> AsyncIterator[FeaturePipeline]:
    """A pipeline with its own gateway, collections and store connection, all closed on exit (what the
    CLI commands and the pytest plugin run features with; the server keeps one for its life)."""
    service = build_service(settings, home)
    try:
        with closing(Collections(settings, home)) as collections, closing(connect(db_path(home))) as conn:
            yield FeaturePipeline(service, root, PromptRegistry(conn, root / "prompts"), collections=collections)
    finally:
        await close_service(service)


def _summed_cost(ctx: CallContext) -> float | None:
    """What the run's calls cost together; None when any of them is unpriced."""
    costs = [c.record.cost_usd for c in ctx.children if c.record is not None]
    if any(c is None for c in costs):
        return None
    return float(sum(c for c in costs if c is not None))
