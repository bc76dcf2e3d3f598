"""The feature pipeline: the step modules composed in ARCHITECTURE.md's order.

    input guards (size, injection, PII) → experiment arm → prompt (label or arm version) → cache
    → retrieval (numbered sources, screened) → context policy → gateway (streamed or not; structured
    when declared; a first tier, then escalation) → critical-action rules → citation check
    → output guards (confidence) → cache write → feature trace

One generator (``events``) serves blocking runs and streams alike: it yields ``Started`` (what will
serve: prompt version, model, arm, sources), then ``Delta`` text or ``Partial`` objects while the
model streams, then ``Done`` with the result. Each run writes one trace row (operation
``feature``) with its prompt version, experiment arm, summed usage and cost, and notes; the model
calls inside it are traced as its children.

The steps live in their own modules (``caching``, ``guarding``, ``context``, ``structured``); this
one composes them. ``review`` arrives with its own issue; until then a spec that declares it is
refused with a clear error rather than silently served without.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from keel.cache.store import AnswerCache
from keel.checks import CheckContext
from keel.config.settings import BudgetSettings, KeelSettings
from keel.cost.prices import total_cost
from keel.errors import ConfigError, InjectionBlocked, InputTooLong, InvalidRequest, UserError
from keel.features.caching import index_version, recall, remember
from keel.features.context import fit, map_reduce
from keel.features.experiments import Arm, Experiments
from keel.features.guarding import (
    OutputBlocked,
    decide_action,
    guard_output,
    redact_inputs,
    screen_inputs,
    screen_sources,
    unrestored,
)
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.result import Delta, Done, FeatureEvent, FeatureResult, Plan, Started, event_dict, pieces, text_input
from keel.features.spec import FeatureSpec, load_feature
from keel.features.structured import Partial, StructuredResult, structured_events
from keel.features.templates import Rendered
from keel.gateway.runtime import build_service, close_service
from keel.gateway.service import GatewayService
from keel.guards.pii import restore
from keel.rag.answer import NOTHING_FOUND, SYSTEM, check_citations, render_context, select_sources
from keel.rag.backends import CollectionNotFound, Collections
from keel.rag.retrieval import Query, retrieve
from keel.store import DEFAULT_TENANT, Store, open_store
from keel.store.traces import TraceRecord, outcome
from keel.text import estimate_tokens
from keel.tracing.redact import capture
from keel.types import CallContext, ChatRequest

__all__ = [  # what callers import from here: the pipeline, its results and events, its refusals
    "Delta",
    "Done",
    "FeatureEvent",
    "FeaturePipeline",
    "FeatureResult",
    "InjectionBlocked",
    "InputTooLong",
    "OutputBlocked",
    "Partial",
    "Resolved",
    "Started",
    "event_dict",
    "open_pipeline",
]

NOT_YET = {
    "review": "the review issue",
}


def _refuse_unbuilt(spec: FeatureSpec) -> None:
    for section, issue in NOT_YET.items():
        if getattr(spec, section) is not None:
            raise ConfigError(
                f"features/{spec.name}.yaml: '{section}' is declared, but its step arrives with "
                f"{issue}; remove it to run this feature now"
            )


def _query(spec: FeatureSpec, inputs: dict[str, Any]) -> str:
    key = text_input(inputs)
    if key is None:
        raise UserError(f"feature '{spec.name}' retrieves, so it needs a text input (question or query)")
    return str(inputs[key])


def _with_context(messages: list[dict[str, str]], context: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]


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


class FeaturePipeline:
    def __init__(
        self,
        service: GatewayService,
        root: Path,
        store: Store,
        *,
        collections: Collections | None = None,
        registry: PromptRegistry | None = None,
    ) -> None:
        self.service = service
        self.root = root
        self.store = store
        self.registry = registry or PromptRegistry(store.prompts, root / "prompts")
        self.collections = collections
        self.cache = AnswerCache(store.answers)

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
        plan: Plan | None = None
        error: BaseException | None = None
        try:
            plan = await self._prepare(name, inputs, ctx, label, _Pins(version, model))
            result = plan.result
            yield Started(result)
            if result.cache in ("exact", "semantic"):
                if stream:
                    for piece in pieces(result.answer):  # a replayed stream is still a stream
                        yield Delta(piece)
            elif not result.found_nothing:
                async for event in self._complete(plan, stream):
                    yield event
                guard_output(plan, self.collections)
                remember(self.cache, plan)
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
        tenant: str | None = None,
    ) -> Resolved:
        """What would serve this call, without calling anything: the prompt version, the model and the
        retrieval index version (eval result caches key on them)."""
        spec = load_feature(self.root, name)
        spec.check_tenant(tenant)
        rendered, _, _, chosen = self._choose(spec, inputs, user, label, _Pins(version, model), tenant)
        return Resolved(spec, rendered.version, chosen, index_version(self.collections, spec, tenant))

    def _choose(
        self, spec: FeatureSpec, inputs: dict[str, Any], user: str | None, label: str, pins: _Pins, tenant: str | None
    ) -> tuple[Rendered, str | None, Arm | None, str]:
        """The prompt version (rendered), the experiment and arm, and the model that serve this call."""
        name = spec.name
        _refuse_unbuilt(spec)
        pinned = pins.version is not None or pins.model is not None
        experiment, arm = (None, None) if pinned else self._arm(name, user, label, tenant)
        self.registry.record_file(self.root / "prompts" / f"{spec.prompt}.md")
        version = pins.version if pins.version is not None else (arm.version if arm else None)
        rendered = self.registry.render(spec.prompt, inputs, label=label, version=version)
        first = spec.route.first if spec.route is not None else None
        model = pins.model or (arm.model if arm else None) or first or spec.model or rendered.model
        model = model or self.service.gateway.settings.default_model or "local"
        return rendered, experiment, arm, model

    async def _prepare(self, name: str, inputs: dict[str, Any], ctx: CallContext, label: str, pins: _Pins) -> Plan:
        spec = load_feature(self.root, name)
        spec.check_tenant(ctx.tenant)
        flagged = screen_inputs(spec, inputs)
        inputs, mapping, redacted = redact_inputs(spec, inputs)
        rendered, ctx.experiment, arm, model = self._choose(spec, inputs, ctx.user, label, pins, ctx.tenant)
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
        plan = Plan(spec, result, ctx, model, max_output=int(rendered.params.get("max_tokens", 512)))
        plan.params = {k: v for k, v in rendered.params.items() if k != "max_tokens"}
        plan.pii, plan.inputs = mapping, inputs
        if spec.cache is not None and not flagged and await recall(self.cache, self.collections, plan, inputs):
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

    def _arm(self, name: str, user: str | None, label: str, tenant: str | None) -> tuple[str | None, Arm | None]:
        """Users are enrolled in their tenant's running experiment on the feature unless they asked
        for a label."""
        if user is None or label != DEFAULT_LABEL:
            return None, None
        experiment = Experiments(self.store, tenant or DEFAULT_TENANT).running(name)
        if experiment is None:
            return None, None
        return experiment.name, experiment.arm_for(user)

    async def _retrieve(self, plan: Plan, inputs: dict[str, Any], window: int) -> str:
        spec, result = plan.spec, plan.result
        if spec.retrieval is None:
            return ""
        name = spec.retrieval.collection
        if self.collections is None:
            raise ConfigError(f"feature '{spec.name}' retrieves from '{name}' but no retrieval backend is configured")
        try:
            collection = self.collections.get(name, tenant=plan.ctx.tenant)  # opened once; indexes stay in memory
        except CollectionNotFound:
            raise ConfigError(
                f"feature '{spec.name}' retrieves from collection '{name}', which does not exist: "
                f"create it with `keel ingest {name} PATH`"
            ) from None
        query = Query(
            _query(spec, inputs),
            top_k=spec.retrieval.top_k,
            mode=spec.retrieval.mode,
            min_score=spec.retrieval.min_score,
            rerank=None if spec.retrieval.rerank else "none",  # rerank: true → the collection's own
            feedback=spec.retrieval.feedback,
        )
        found = await retrieve(
            collection,
            query,
            service=self.service,
            default_model=plan.model,
            tenant=plan.ctx.tenant,
            run=self.collections.run,
        )
        found = screen_sources(plan, found)
        if not found:
            result.found_nothing = True
            result.notes.append("retrieval: nothing cleared min_score; answered without a model call")
            return ""
        result.sources = select_sources(found, max(256, window - plan.max_output - 512))
        return f"{SYSTEM}\n\n{render_context(result.sources)}"

    async def _reduce(
        self,
        plan: Plan,
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

    async def _complete(self, plan: Plan, stream: bool) -> AsyncIterator[FeatureEvent]:
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
                        dumped = decide_action(plan, dumped)
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
                    for piece in pieces(result.answer):
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

    async def _ask(self, plan: Plan, stream: bool) -> AsyncIterator[FeatureEvent]:
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

    async def _first_tier_answers(self, plan: Plan) -> bool:
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
        self, ctx: CallContext, plan: Plan | None, inputs: dict[str, Any], started: float, error: BaseException | None
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
            response=capture(unrestored(result.answer, plan), self.service.capture_policy)
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
        with closing(Collections(settings, home)) as collections, open_store(settings, home) as store:
            yield FeaturePipeline(service, root, store, collections=collections)
    finally:
        await close_service(service)


def _summed_cost(ctx: CallContext) -> float | None:
    """What the run's calls cost together; None when any of them is unpriced."""
    return total_cost(c.record.cost_usd for c in ctx.children if c.record is not None)
