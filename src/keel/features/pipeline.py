"""The feature pipeline: the step modules composed in ARCHITECTURE.md's order.

    input guards (size, injection, PII) → experiment arm → prompt (label or arm version) → cache
    → retrieval (numbered sources, screened) → context policy → gateway (streamed or not; structured
    when declared; a first tier, then escalation; uncited sentences attributed) → critical-action
    rules → citation check → output guards (confidence) → cache write → feature trace

One generator (``events``) serves blocking runs and streams alike: it yields ``Started`` (what will
serve: prompt version, model, arm, sources), then ``Delta`` text or ``Partial`` objects while the
model streams, then ``Done`` with the result. Each run writes one trace row (operation
``feature``) with its prompt version, experiment arm, summed usage and cost, and notes; the model
calls inside it are traced as its children.

The steps live in their own modules (``caching``, ``guarding``, ``context``, ``structured``,
``reviewing``); this one composes them. Review routing decides after the output guards and puts
its route on the result; a feature held for review never streams its answer (the edge gives the
caller a job instead), so its stream is replayed only once the route says it may be served.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from keel.cache.store import AnswerCache
from keel.checks import CheckContext
from keel.config.settings import KeelSettings
from keel.errors import InjectionBlocked, InputTooLong, InvalidRequest
from keel.features.caching import index_version, recall, remember
from keel.features.context import fit, reduce_input
from keel.features.experiments import Arm, Experiments
from keel.features.guarding import (
    OutputBlocked,
    decide_action,
    guard_output,
    redact_inputs,
    screen_inputs,
)
from keel.features.prompts import DEFAULT_LABEL, PromptRegistry
from keel.features.recording import feature_record, summed_cost
from keel.features.result import Delta, Done, FeatureEvent, FeatureResult, Plan, Started, event_dict, pieces
from keel.features.retrieving import check_cited, citer_for, retrieve_sources, with_context
from keel.features.reviewing import route_review
from keel.features.sampling import enqueue_samples
from keel.features.spec import FeatureSpec, load_feature
from keel.features.steps import retrieved, step
from keel.features.structured import Partial, StructuredResult, structured_events
from keel.features.templates import Rendered
from keel.gateway.runtime import build_service, close_service
from keel.gateway.service import GatewayService
from keel.guards.pii import restore
from keel.rag.answer import NOTHING_FOUND
from keel.rag.backends import Collections
from keel.rag.citing import cited_stream
from keel.store import DEFAULT_TENANT, Store, open_store
from keel.tracing.tracer import CURRENT_RUN
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
        trace_id: str | None = None,
    ) -> FeatureResult:
        """``version`` and ``model`` pin what serves (eval matrices); otherwise the label, the running
        experiment and the spec decide. ``trace_id`` names the run's row (a job's, kept across its retries)."""
        result: FeatureResult | None = None
        pins: dict[str, Any] = {"version": version, "model": model, "trace_id": trace_id}
        async for event in self.events(name, inputs, user=user, tenant=tenant, key=key, label=label, **pins):
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
        trace_id: str | None = None,
    ) -> AsyncGenerator[FeatureEvent, None]:
        started = time.perf_counter()
        ctx = CallContext(tenant=tenant, user=user, feature=name, key=key)
        ctx.trace_id = trace_id or ctx.trace_id
        plan: Plan | None = None
        error: BaseException | None = None
        run = CURRENT_RUN.set(ctx.trace_id)  # spans below (retrieval) nest under this run's
        try:
            plan = await self._prepare(name, inputs, ctx, label, _Pins(version, model))
            result = plan.result
            yield Started(result)
            if result.cache in ("exact", "semantic"):
                if stream:
                    for piece in pieces(result.answer):  # a replayed stream is still a stream
                        yield Delta(piece)
            elif not result.found_nothing:
                held = stream and plan.spec.review is not None and plan.spec.review.mode == "hold"
                with step(ctx, "generation", model=plan.model) as found:
                    async for event in self._complete(plan, stream and not held):
                        yield event
                    found.update(attempts=result.attempts, calls=len(ctx.children))
                if plan.spec.guards is not None and plan.spec.guards.output:
                    with step(ctx, "output guards") as found:
                        guard_output(plan, self.collections)
                        found.update(scores=dict(result.guards), confidence=result.confidence)
                route_review(plan)
                if held and result.review is None:
                    for piece in pieces(result.answer):  # not held after all: served as a stream
                        yield Delta(piece)
                if result.review is None or result.review["mode"] != "hold":
                    remember(self.cache, plan)  # an answer no person has approved is never replayed
            else:
                route_review(plan)  # "nothing found" is an answer a condition may send to a person too
            result.latency_ms = (time.perf_counter() - started) * 1000
            yield Done(result)
        except BaseException as exc:
            error = exc
            raise
        finally:
            with contextlib.suppress(ValueError):  # a generator closed from another context
                CURRENT_RUN.reset(run)
            ctx.record = feature_record(ctx, plan, inputs, started, error, self.service.capture_policy)
            self.service.record(ctx.record)
            if error is None and plan is not None:
                enqueue_samples(self.store, plan)  # scored off the request path (keel.monitor)
            if error is not None:
                with contextlib.suppress(AttributeError):  # the edge names this run's row, not a new one
                    error.keel_call = ctx  # type: ignore[attr-defined]

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
        with step(ctx, "input guards", on=spec.guards is not None) as found:
            flagged = screen_inputs(spec, inputs)
            inputs, mapping, redacted = redact_inputs(spec, inputs)
            found.update(flagged=flagged, redacted=redacted)
        with step(ctx, "prompt", prompt=spec.prompt, label=label) as found:
            rendered, ctx.experiment, arm, model = self._choose(spec, inputs, ctx.user, label, pins, ctx.tenant)
            found.update(version=rendered.version, model=model, arm=arm.name if arm else None)
        ctx.prompt, ctx.prompt_version = spec.prompt, rendered.version
        if spec.budget is not None:  # the feature's own budgets join keel.yaml's for its model calls
            ctx.per_call_usd, ctx.budgets = spec.budget.per_call_usd, spec.budget.budgets(spec.name)
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
        result.notes.extend(n for n in (rendered.fallback_reason, flagged, redacted) if n)
        plan = Plan(spec, result, ctx, model, max_output=int(rendered.params.get("max_tokens", 512)))
        plan.params = {k: v for k, v in rendered.params.items() if k != "max_tokens"}
        plan.pii, plan.inputs, plan.index = mapping, inputs, index_version(self.collections, spec, ctx.tenant)
        if spec.cache is not None and not flagged:
            with step(ctx, "cache") as found:
                hit = await recall(self.cache, self.collections, plan, inputs)
                found["result"] = result.cache or "miss"
            if hit:
                return plan
        window = self.service.gateway.route(model).info.context_window or 8192
        with step(ctx, "retrieval", on=spec.retrieval is not None) as found:
            context = await retrieve_sources(plan, inputs, window, self.collections, self.service)
            if spec.retrieval is not None:
                found.update(retrieved(spec.retrieval.collection, result.sources, self.service.capture_policy))
                found["index"] = plan.index  # monitors group runs by it
        if result.found_nothing:
            result.answer = NOTHING_FOUND
            return plan
        messages = with_context(rendered.messages, context) if context else rendered.messages
        policy = spec.context.policy
        try:
            fitted = fit(
                messages, window=window, max_output=plan.max_output, policy=policy.replace("map_reduce", "fail")
            )
        except InvalidRequest as exc:
            if policy != "map_reduce" or exc.code != "context_length_exceeded":
                raise
            rendered = await self._reduce(plan, inputs, rendered, window, messages)
            messages = with_context(rendered.messages, context) if context else rendered.messages
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

    async def _reduce(
        self, plan: Plan, inputs: dict[str, Any], rendered: Rendered, window: int, messages: Any
    ) -> Rendered:
        key, text = await reduce_input(self.service, plan, inputs, window, messages)
        again = self.registry.render(plan.spec.prompt, {**inputs, key: text}, version=rendered.version)
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
        check_cited(result)
        result.cost_usd = summed_cost(plan.ctx)

    async def _ask(self, plan: Plan, stream: bool) -> AsyncIterator[FeatureEvent]:
        request = ChatRequest(
            model=plan.model,
            messages=plan.messages,
            max_tokens=plan.max_output,
            params=plan.params,
            ctx=plan.ctx.child(),
            stream=stream,
        )
        citer = citer_for(plan)
        if stream:
            parts: list[str] = []
            async for text in cited_stream(self.service.chat_stream(request), citer):
                parts.append(text)
                yield Delta(text)
            plan.result.answer = "".join(parts)
        else:
            plan.result.answer = citer.cite_all((await self.service.chat(request)).text)
        if citer.added:
            plan.result.notes.append(f"citations: {len(citer.added)} sentence(s) cited by attribution")

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
