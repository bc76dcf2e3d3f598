"""Recording as a wrapper: every call that reaches it leaves a trace row, a span and metrics.

Recording never blocks or fails a call: rows go to the batched writer, which drops and counts
on overflow; every attempt (retries and fallbacks included) is kept on the record.

With a crash journal, a call is journaled as begun before anything is sent and as ended when its
row is queued: a kill -9 loses neither a call in flight nor a row the writer had not stored yet.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

import orjson

from keel.cost.prices import PriceTable
from keel.gateway.router import Gateway
from keel.gateway.spans import input_messages, step_span
from keel.gateway.streams import estimated_usage
from keel.gateway.wrapper import WrapperProvider, inner
from keel.store.journal import Journal
from keel.store.keys import DEFAULT_TENANT
from keel.store.traces import TraceRecord, outcome
from keel.store.writer import BatchWriter
from keel.text import upper_bound_tokens
from keel.tracing import otel
from keel.tracing.metrics import Metrics
from keel.tracing.redact import capture, identifier, scrub
from keel.tracing.tracer import CURRENT_ROOT, NullTracer, SpanData, Tracer
from keel.types import (
    Attempt,
    CallContext,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)

log = logging.getLogger("keel.gateway")


class Recorded(WrapperProvider):
    def __init__(
        self,
        gateway: Gateway,
        prices: PriceTable,
        *,
        writer: BatchWriter | None = None,
        tracer: Tracer | None = None,
        capture_policy: str = "redacted",
        metrics: Metrics | None = None,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(gateway)
        self.journal = journal
        self.gateway = gateway
        self.prices = prices
        self.writer = writer
        self.tracer: Tracer = tracer or NullTracer()
        self.capture_policy = capture_policy
        self.metrics = metrics or Metrics()
        self._servers = {  # deployment → the host and port a span names as server.address
            name: (url.hostname, url.port)
            for name, dep in gateway.settings.deployments.items()
            if dep.base_url and (url := urlparse(dep.base_url)).hostname
        }

    async def complete(self, req: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        if self.journal is not None:
            self._begin(req.ctx, "chat", req.model, False, req)
        response: ChatResponse | None = None
        error: BaseException | None = None
        try:
            response = await self.wrapped.complete(req)
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            usage, output = (response.usage, response.text) if response else (None, None)
            body = response.body if response else {}
            reasons = [c.get("finish_reason") for c in body.get("choices") or [] if c.get("finish_reason")]
            self.finish(
                req.ctx,
                "chat",
                req.model,
                t0,
                stream=False,
                request=req.messages,
                usage=usage,
                output=output,
                error=error,
                details=self._details(req, body.get("id"), reasons) if self.spans else None,
            )

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        t0 = time.perf_counter()
        usage: Usage | None = None
        ttft: float | None = None
        parts: list[str] = []
        keep = self.capture_policy != "off"
        streamed = 0  # characters of content: what a cut stream is charged for when no usage came
        error: BaseException | None = None
        cancelled = False
        response_id: Any = None
        spans = self.spans
        reasons: list[Any] = []
        if self.journal is not None:
            self._begin(req.ctx, "chat", req.model, True, req)
        try:
            async with inner(self.wrapped.stream(req)) as chunks:
                async for chunk in chunks:
                    if ttft is None and chunk.has_content:
                        ttft = (time.perf_counter() - t0) * 1000
                        response_id = chunk.body.get("id")
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if spans:
                        reasons += [
                            c["finish_reason"] for c in chunk.body.get("choices") or () if c.get("finish_reason")
                        ]
                    text = chunk.text
                    streamed += len(text)
                    if keep:
                        parts.append(text)
                    yield chunk
        except GeneratorExit:
            cancelled = True
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            if usage is None and streamed:  # cut or abandoned after it produced tokens: still paid for
                usage = estimated_usage(req, streamed)
            output = "".join(parts)
            details = (
                self._details(req, response_id, ["stop"] if error is None and not cancelled else [])
                if self.spans
                else None
            )
            self.finish(req.ctx, "chat", req.model, t0, stream=True, request=req.messages, usage=usage, output=output,
                        ttft=ttft, error=error, cancelled=cancelled, details=details)  # fmt: skip

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        t0 = time.perf_counter()
        route = None
        if self.journal is not None:
            self._begin(req.ctx, "embeddings", req.model, False, None)
        try:
            route = self.gateway.route(req.model)
            response = await self.wrapped.embed(req)
        except BaseException as exc:
            served = route.info if route else None
            self.finish(req.ctx, "embeddings", req.model, t0, stream=False, error=exc, served=served)
            raise
        self.finish(req.ctx, "embeddings", req.model, t0, stream=False, usage=response.usage, served=route.info)
        return response

    # -- the record ------------------------------------------------------------------------------
    def record(self, rec: TraceRecord) -> None:
        """Queue a trace row for the background writer (never blocks, never fails the call). Every
        row has a tenant: calls made without one (no-auth mode, the CLI) are the default tenant's."""
        if rec.tenant is None:
            rec.tenant = DEFAULT_TENANT
        if self.capture_policy != "full":
            scrub(rec)  # every row passes here: calls, feature runs, refusals
        if self.journal is not None:
            self.journal.ended(rec)
        if self.writer is not None:
            self.writer.submit(rec)

    def _begin(self, ctx: CallContext, operation: str, alias: str, stream: bool, req: ChatRequest | None) -> None:
        """Journal a call before it is sent: what a crash leaves of it is settled at its worst case."""
        assert self.journal is not None
        full = self.capture_policy == "full"
        self.journal.begin(
            {
                "id": ctx.trace_id,
                "ts": ctx.started,
                "operation": operation,
                "tenant": ctx.tenant or DEFAULT_TENANT,
                "user": ctx.user if full else identifier(ctx.user),
                "feature": ctx.feature if full else identifier(ctx.feature),
                "alias": alias if full else identifier(alias),
                "stream": stream,
                "parent": ctx.parent,
                "prompt": ctx.prompt,
                "prompt_version": ctx.prompt_version,
                "experiment": ctx.experiment,
                "arm": ctx.arm,
                "in": upper_bound_tokens(req.messages) if req is not None else 0,
                "out": (req.max_tokens or req.params.get("max_completion_tokens")) if req is not None else 0,
            }
        )

    def _cost(self, served: Attempt | None, local: bool, usage: Usage, batch: bool) -> tuple[float | None, str]:
        cost, source = self._list_cost(served, local, usage)
        discount = self.gateway.batch_discount(served.deployment) if batch and served is not None else 0.0
        if cost is None or not discount:
            return cost, source
        return cost * (1 - discount), f"{source}, less the deployment's {discount:.0%} batch discount"

    def _list_cost(self, served: Attempt | None, local: bool, usage: Usage) -> tuple[float | None, str]:
        if served is None:
            return None, "no call reached a provider"
        if local:
            return 0.0, "local model (no charge)"
        if usage.source == "none":
            return None, "the provider reported no usage"
        key = self.gateway.price_key(served.deployment)
        cost = self.prices.cost(key, usage, dt.date.today())
        if cost is None:
            return None, f"unpriced: '{key}' is not in price table {self.prices.version}"
        if usage.source == "estimated":
            return cost, f"price table {self.prices.version} × usage estimated from the streamed text (no report came)"
        return cost, f"price table {self.prices.version} × provider-reported usage"

    def finish(
        self,
        ctx: CallContext,
        operation: str,
        alias: str,
        t0: float,
        *,
        stream: bool,
        request: Any = None,
        usage: Usage | None = None,
        output: str | None = None,
        ttft: float | None = None,
        error: BaseException | None = None,
        cancelled: bool = False,
        served: Any = None,
        details: dict[str, Any] | None = None,
    ) -> TraceRecord:
        """Build the call's trace row, put it on ``ctx.record``, queue it, count it and span it
        (``details``: what only the span carries, the request's parameters and the response's id)."""
        latency = (time.perf_counter() - t0) * 1000
        attempts = ctx.attempts
        last = _served_by(ctx, served)
        adapter = self.gateway.adapters.get(last.deployment) if last else None
        local = bool(adapter is not None and adapter.info.local)
        usage = usage or Usage(source="none")
        cost, cost_source = self._cost(last, local, usage, ctx.batch is not None)
        rec = TraceRecord(
            id=ctx.trace_id,
            ts=ctx.started,
            operation=operation,
            tenant=ctx.tenant,
            user=ctx.user,
            feature=ctx.feature,
            alias=alias,
            deployment=last.deployment if last else None,
            provider=last.provider if last else None,
            model=last.model if last else None,
            stream=stream,
            **outcome(error, cancelled=cancelled),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            usage_source=usage.source,
            cost_usd=cost,
            cost_source=cost_source,
            latency_ms=latency,
            ttft_ms=ttft if stream else (last.ttft_ms if last and last.ok else None),
            attempts=[asdict(a) for a in attempts],
            request=capture(request, self.capture_policy) if request is not None else None,
            response=capture(output, self.capture_policy) if output else None,
            parent=ctx.parent,
            notes=([f"mode {ctx.mode} → {alias}"] if ctx.mode else []) + ctx.notes or None,
            prompt=ctx.prompt,
            prompt_version=ctx.prompt_version,
            experiment=ctx.experiment,
            arm=ctx.arm,
        )
        ctx.record = rec
        self.record(rec)
        self._observe(rec, details)
        return rec

    @property
    def spans(self) -> bool:
        return not isinstance(self.tracer, NullTracer)

    def _observe(self, rec: TraceRecord, details: dict[str, Any] | None) -> None:
        """Metrics for every call and every failed attempt, and a span when a tracer is set."""
        label = rec.alias if rec.alias in self.gateway.routes else "(unknown)"  # clients must not mint labels
        self.metrics.observe(
            rec.operation, label, rec.status, rec.latency_ms or 0.0, rec.input_tokens, rec.output_tokens, rec.cost_usd
        )
        for attempt in rec.attempts:
            if attempt.get("error_type"):
                self.metrics.attempt_errors[(attempt["deployment"], attempt["error_type"])] += 1
        if self.spans:
            self.span(rec, details)

    def _details(self, req: ChatRequest, response_id: Any, reasons: list[Any]) -> dict[str, Any]:
        params = req.params
        return {
            otel.RESPONSE_ID: response_id if isinstance(response_id, str) else None,
            otel.FINISH_REASONS: [str(r) for r in reasons] or None,
            otel.TEMPERATURE: params.get("temperature"),
            otel.TOP_P: params.get("top_p"),
            otel.SEED: params.get("seed"),
            otel.MAX_TOKENS: req.max_tokens,
        }

    def span(self, rec: TraceRecord, details: dict[str, Any] | None = None) -> None:
        """The row as a finished span: a call (CLIENT, with the GenAI attributes and metrics) or a
        feature run (INTERNAL, the parent of its calls). Tracing never fails a call."""
        try:
            self.tracer.emit(self._span_data(rec, details or {}))
            for step in rec.steps or []:
                if step["name"] != "retrieval":  # retrieval emits its own, with its timings
                    self.tracer.emit(step_span(rec, step))
        except Exception:
            log.exception("could not emit a span for trace %s", rec.id)

    def _span_data(self, rec: TraceRecord, details: dict[str, Any]) -> SpanData:
        start_ns = int(rec.ts * 1e9)
        end_ns = start_ns + int((rec.latency_ms or 0.0) * 1e6)
        feature_run = rec.operation == "feature"
        host, port = self._servers.get(rec.deployment or "", (None, None))
        attrs: dict[str, Any] = {
            otel.OPERATION: "invoke_agent" if feature_run else rec.operation,
            otel.PROVIDER: rec.provider,
            otel.REQUEST_MODEL: rec.alias,
            otel.RESPONSE_MODEL: rec.model,
            otel.INPUT_TOKENS: rec.input_tokens,
            otel.OUTPUT_TOKENS: rec.output_tokens,
            otel.CACHE_READ: rec.cached_tokens or None,
            otel.ERROR_TYPE: rec.error_type,
            otel.SERVER_ADDRESS: host,
            otel.SERVER_PORT: port,
            **details,
            "user.id": rec.user,  # as the trace keeps it (pseudonymised when it carries an address)
            "keel.trace_id": rec.id,
            "keel.deployment": rec.deployment,
            "keel.tenant": rec.tenant,
            "keel.feature": rec.feature,
            "keel.cost_usd": rec.cost_usd,
            "keel.status": rec.status,
            "keel.prompt": rec.prompt,
            "keel.prompt_version": rec.prompt_version,
        }
        if getattr(self.tracer, "capture_content", False):
            attrs[otel.INPUT_MESSAGES] = input_messages(rec.request)
            if rec.response is not None:
                parts = [{"type": "text", "content": rec.response}]
                attrs[otel.OUTPUT_MESSAGES] = orjson.dumps([{"role": "assistant", "parts": parts}]).decode()
        metrics = None
        if not feature_run:
            duration_s = (rec.latency_ms or 0.0) / 1000
            metrics = {"duration_s": duration_s, "input_tokens": rec.input_tokens, "output_tokens": rec.output_tokens}
        return SpanData(
            name=f"feature {rec.feature}" if feature_run else f"{rec.operation} {rec.alias}",
            keel_id=rec.id,
            root=CURRENT_ROOT.get() or rec.parent or rec.id,
            parent=rec.parent or CURRENT_ROOT.get(),
            start_ns=start_ns,
            end_ns=end_ns,
            attributes=attrs,
            kind="internal" if feature_run else "client",
            events=[("keel.attempt", {k: v for k, v in a.items() if v is not None}) for a in rec.attempts],
            error=rec.error if rec.status in ("error", "interrupted") else None,
            metrics=metrics,
        )


def _served_by(ctx: CallContext, served: Any) -> Attempt | None:
    """The attempt that answered (else the last one tried; else the route's first deployment)."""
    ok = [a for a in ctx.attempts if a.ok]
    last = ok[-1] if ok else (ctx.attempts[-1] if ctx.attempts else None)
    if last is None and served is not None:
        last = Attempt(deployment=served.deployment, provider=served.provider, model=served.model, started=ctx.started)
    return last
