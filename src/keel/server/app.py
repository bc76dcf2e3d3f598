"""The HTTP edge: OpenAI-compatible routes. No business logic — parse, call the service, answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import (
    KeelError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    StreamInterrupted,
    UnknownRoute,
)
from keel.gateway.service import GatewayService
from keel.gateway.streams import prime
from keel.rag.backends import Collections
from keel.server.auth import Authenticator, caller_of
from keel.server.batches import BatchRoutes
from keel.server.collections import CollectionRoutes
from keel.server.errors import error_body, error_response, refused_record
from keel.server.features import FeatureRoutes
from keel.server.guards import guard_chat
from keel.server.jobs import JobRoutes
from keel.server.lines import embeddings_body
from keel.server.openapi import document
from keel.server.review import ReviewRoutes
from keel.server.streaming import ReadingStream
from keel.server.traces import TraceRoutes
from keel.server.validate import CHAT, EMBEDDINGS, FEEDBACK, parse_chat, parse_embeddings, parse_json
from keel.store import Store
from keel.store.feedback import TraceNotFound
from keel.types import CallContext, ChatChunk, ChatRequest

log = logging.getLogger("keel.server")
JSON_TYPE = "application/json"


class KeelApp:
    """Holds what the routes need; ``asgi`` is the Starlette application."""

    def __init__(
        self,
        service: GatewayService,
        *,
        store: Store | None = None,
        auth: bool = True,
        max_body_bytes: int,
        auth_cache_s: float = 1.0,
        body_timeout_s: float = 30.0,
        collections: Collections | None = None,
        project_root: Path | None = None,
        on_startup: Any = None,
        on_shutdown: Any = None,
        ui: Any = None,
    ) -> None:
        self.service = service
        self.store = store
        self.authenticate = Authenticator(store.keys if store is not None and auth else None, cache_s=auth_cache_s)
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.started = time.time()
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self.collections = collections
        self._openapi: bytes | None = None
        guard = self.authenticate.guard
        extra = []
        self.jobs: JobRoutes | None = None
        self.review: ReviewRoutes | None = None
        if collections is not None and project_root is not None and store is not None:
            features = FeatureRoutes(service, collections, project_root, store, guard, self.json_body)
            self.jobs = JobRoutes(store, features, guard, self.json_body, service.gateway.settings)
            batches = BatchRoutes(self.jobs, guard, self._body)
            self.review = ReviewRoutes(self.jobs, guard, self.json_body)
            features.routed = self.review.routed
            extra += features.routes() + self.jobs.routes() + batches.routes() + self.review.routes()
        if collections is not None:
            extra += CollectionRoutes(collections, guard, self.json_body, service, self.jobs).routes()
        if store is not None:
            extra += TraceRoutes(store, guard).routes()
        if ui is not None:
            extra += ui.routes()  # the dashboard at /ui (keel.server.ui)
        self.asgi = Starlette(
            routes=[
                *extra,
                Route("/v1/chat/completions", guard(self.chat), methods=["POST"]),
                Route("/v1/embeddings", guard(self.embeddings), methods=["POST"]),
                Route("/v1/models", guard(self.models), methods=["GET"]),
                Route("/v1/feedback", guard(self.feedback), methods=["POST"]),
                Route("/healthz", self.health, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
            ],
            exception_handlers={
                404: self._not_found,
                405: self._not_allowed,
                KeelError: self._keel_error,
                Exception: self._crashed,
            },
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self._on_startup:
            await self._on_startup()
        if self.jobs is not None:
            self.jobs.start()  # the embedded worker pool runs the queued jobs while this app serves
        yield
        if self.jobs is not None:
            await self.jobs.aclose()
        if self._on_shutdown:
            await self._on_shutdown()

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self.refuse(UnknownRoute(f"no route {request.method} {request.url.path}"), request)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return self.refuse(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"), request)

    async def _keel_error(self, request: Request, exc: Exception) -> Response:
        return self.refuse(exc, request)

    def refuse(
        self, exc: BaseException, request: Request, ctx: CallContext | None = None, operation: str = "http"
    ) -> Response:
        """Every error response: its trace id in ``x-keel-trace-id``, a trace row under that id (unless
        the call already left one, as a feature run that failed does), and a count in
        ``keel_http_errors_total``."""
        ctx = ctx or getattr(exc, "keel_call", None)
        operation = getattr(exc, "keel_operation", operation)
        if ctx is None:
            caller = getattr(request.state, "caller", None)
            ctx = CallContext(tenant=caller.tenant if caller is not None else None)
        status = exc.status if isinstance(exc, KeelError) else 500
        self.service.metrics.http_errors[(operation, status)] += 1
        if ctx.record is None:
            self.service.record(refused_record(ctx, operation, exc, f"{request.method} {request.url.path}"))
        return error_response(exc, _trace_headers(ctx))

    async def feedback(self, request: Request) -> Response:
        """``POST /v1/feedback``: attach a score, comment or correction to a trace of the caller's tenant."""
        caller = caller_of(request)
        body = await self.json_body(request)
        FEEDBACK.check(body)
        if self.store is None:
            raise UnknownRoute("feedback needs the store; this app has none")
        fields: dict[str, Any] = {
            "tenant": caller.tenant,
            "comment": body.get("comment"),
            "correction": body.get("correction"),
            "user": body.get("user") or request.headers.get("x-keel-user"),
            "scores": self.service.gateway.settings.feedback,
        }
        args = (body.get("trace_id"), body.get("name", "feedback"), body.get("value"))
        add = self.store.feedback.add
        try:
            row = await self.store.db.call(lambda: add(*args, **fields))
        except TraceNotFound:
            writer = self.service.writer  # a call answered a moment ago may still be queued for writing
            if writer is None or not await anyio.to_thread.run_sync(writer.flush, 2.0):
                raise
            row = await self.store.db.call(lambda: add(*args, **fields))
        data = {"id": row.id, "trace_id": row.trace_id, "name": row.name, "value": row.value, "label": row.label}
        return Response(orjson.dumps(data), status_code=201, media_type=JSON_TYPE)

    async def json_body(self, request: Request) -> dict[str, Any]:
        return parse_json(await self._body(request))

    async def _crashed(self, request: Request, exc: Exception) -> Response:
        return self.refuse(exc, request)

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The body, read within ``server.body_timeout_s``; over ``limit`` (``server.max_body_bytes``
        unless a route allows more, as uploads do) it is a 413."""
        most = limit or self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > most:
            raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {most}")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.body_timeout_s * max(1, most // self.max_body_bytes)):
                async for chunk in request.stream():  # a slow-body client is cut, not waited for
                    size += len(chunk)
                    if size > most:
                        raise PayloadTooLarge(f"the body exceeds the limit of {most} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.body_timeout_s:g} s (server.body_timeout_s)"
            ) from None
        return b"".join(chunks)

    def _context(self, request: Request) -> CallContext:
        caller = caller_of(request)
        ctx = CallContext(tenant=caller.tenant, key=caller.key)
        ctx.user = request.headers.get("x-keel-user")
        ctx.feature = request.headers.get("x-keel-feature")
        ctx.mode = request.headers.get("x-keel-mode")
        return ctx

    async def chat(self, request: Request) -> Response:
        ctx: CallContext | None = None
        try:
            ctx = self._context(request)
            req, wants_usage = parse_chat(parse_json(await self._body(request)), ctx)
            if ctx.mode is not None:  # fast / accurate → the alias keel.yaml's modes: names
                req.model = self.service.gateway.settings.model_for_mode(ctx.mode)
            guard_chat(self.service.gateway.settings.guards, req)
            if req.stream:
                return await self._stream(req, wants_usage, request)
            response = await self.service.chat(req)
        except Exception as exc:  # a KeelError, or a bug: either way the answer names a trace that exists
            return self.refuse(exc, request, ctx, "chat")
        return Response(orjson.dumps(response.body), media_type=JSON_TYPE, headers=_trace_headers(ctx))

    async def _stream(self, req: ChatRequest, wants_usage: bool, request: Request) -> Response:
        upstream = self.service.chat_stream(req)
        try:
            head = await prime(upstream)  # errors before the first token get a real HTTP status
        except Exception as exc:
            return self.refuse(exc, request, req.ctx, "chat")

        async def events() -> AsyncGenerator[bytes, None]:
            try:
                for chunk in head:
                    if _send(chunk, wants_usage):
                        yield b"data: " + orjson.dumps(chunk.body) + b"\n\n"
                async for chunk in upstream:
                    if _send(chunk, wants_usage):
                        yield b"data: " + orjson.dumps(chunk.body) + b"\n\n"
            except KeelError as exc:
                error = exc if isinstance(exc, StreamInterrupted) else StreamInterrupted(exc.message)
                yield b"data: " + orjson.dumps(error_body(error)) + b"\n\n"
                return
            finally:
                await upstream.aclose()
            rec = req.ctx.record
            cost = "" if rec is None or rec.cost_usd is None else f" cost_usd={rec.cost_usd:.8f}"
            failed = [f"{a.deployment}:{a.error_type}" for a in req.ctx.attempts if a.error_type is not None]
            fell = f" fallback_from={','.join(failed)}" if failed else ""
            yield f": keel trace_id={req.ctx.trace_id}{cost}{fell}\n\n".encode()
            yield b"data: [DONE]\n\n"

        headers = {**_trace_headers(req.ctx), "cache-control": "no-cache", "x-accel-buffering": "no"}
        serving = [a.deployment for a in req.ctx.attempts if a.error_type is None]  # routing picked it
        if serving:
            headers["x-keel-deployment"] = serving[-1]
        return ReadingStream(events(), deadline_s=self._total_s(req), headers=headers)

    def _total_s(self, req: ChatRequest) -> float:
        """The whole-call timeout of the deployment serving ``req`` (the longest of its route's, if
        none has answered yet): how long its client may take to read the stream."""
        deployments = self.service.gateway.settings.deployments
        served = [a.deployment for a in req.ctx.attempts if a.error_type is None]  # the one streaming
        names = served[-1:] or self.service.gateway.route(req.model).settings.deployments
        return max(deployments[n].timeout.total for n in names if n in deployments)

    async def embeddings(self, request: Request) -> Response:
        ctx: CallContext | None = None
        try:
            ctx = self._context(request)
            req, fmt = parse_embeddings(parse_json(await self._body(request)), ctx)
            response = await self.service.embed(req)
        except Exception as exc:
            return self.refuse(exc, request, ctx, "embeddings")
        body = embeddings_body(response, req.model, fmt)
        return Response(orjson.dumps(body), media_type=JSON_TYPE, headers=_trace_headers(ctx))

    async def models(self, request: Request) -> Response:
        created = int(self.started)
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "keel"}
            for name in self.service.gateway.routes
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON_TYPE)

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            settings = self.service.gateway.settings
            routes = self.service.gateway.routes
            models = {
                CHAT.name: [a for a, r in routes.items() if r.chat is not None],
                EMBEDDINGS.name: [a for a, r in routes.items() if r.embed is not None],
            }
            doc = document(self.asgi.routes, models=models, modes=list(settings.modes))
            self._openapi = orjson.dumps(doc)
        return Response(self._openapi, media_type=JSON_TYPE)

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON_TYPE)

    async def metrics(self, request: Request) -> Response:
        writer = self.service.writer
        gauges = {
            "keel_trace_rows_written": ("Trace rows written to the store.", writer.written if writer else 0),
            "keel_trace_rows_dropped": (
                "Trace rows dropped because the write queue was full.",
                writer.dropped if writer else 0,
            ),
            "keel_trace_rows_failed": ("Trace rows lost to write errors.", writer.failed if writer else 0),
            "keel_trace_queue_depth": ("Trace rows waiting to be written.", writer.pending if writer else 0),
            "keel_trace_rows_purged": ("Trace rows deleted by store.retention_days.", writer.purged if writer else 0),
            "keel_store_outages": (
                "Times the trace writer found the store unreachable.",
                writer.outages if writer else 0,
            ),
            "keel_otel_spans_dropped": (
                "Spans the OpenTelemetry collector did not take (down, refusing or too slow).",
                getattr(self.service.tracer, "dropped", 0),
            ),
            "keel_uptime_seconds": ("Seconds since the server started.", time.time() - self.started),
        }
        if self.jobs is not None:
            gauges.update(await self.jobs.gauges())
        series = {}
        if self.review is not None:
            gauges.update(await self.review.gauges())
            series["keel_monitor_alert"] = ("Open monitor alerts (1 each), by tenant, feature and signal.",
                                            await self.review.monitor_alerts())  # fmt: skip
        text = self.service.metrics.render(gauges, series)
        return Response(text, media_type="text/plain; version=0.0.4")


def _send(chunk: ChatChunk, wants_usage: bool) -> bool:
    """Usage-only chunks go to clients that asked for them (Keel always asks upstream, for cost)."""
    return wants_usage or bool(chunk.body.get("choices")) or chunk.usage is None


def _trace_headers(ctx: CallContext | None) -> dict[str, str]:
    if ctx is None:
        return {}
    headers = {"x-keel-trace-id": ctx.trace_id}
    rec = ctx.record
    if rec is not None:
        if rec.cost_usd is not None:
            headers["x-keel-cost-usd"] = f"{rec.cost_usd:.8f}"
        if rec.deployment:
            headers["x-keel-deployment"] = rec.deployment
    return headers
