"""``POST /v1/features/{name}/run``: run a feature over HTTP — JSON, or SSE with ``"stream": true``
(events ``started``, ``delta`` / ``partial``, then ``done``; a failure after the start is an ``error``
event). Routes only; the work is the feature pipeline's."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import KeelError
from keel.features.pipeline import FeatureEvent, FeaturePipeline, Started, event_dict
from keel.features.prompts import DEFAULT_LABEL
from keel.gateway.service import GatewayService
from keel.rag.backends import Collections
from keel.server.auth import caller_of
from keel.server.errors import error_body
from keel.server.streaming import ReadingStream
from keel.server.validate import FEATURE_RUN
from keel.store import Store


class FeatureRoutes:
    def __init__(
        self,
        service: GatewayService,
        collections: Collections,
        root: Path,
        store: Store,
        guard: Any,
        parse_body: Any,
    ) -> None:
        self.service = service
        self.collections = collections
        self.root = root
        self.store = store
        self.guard = guard
        self.parse_body = parse_body
        self._pipeline: FeaturePipeline | None = None

    def pipeline(self) -> FeaturePipeline:
        """One pipeline for the app's life: its prompt cache and open collections are reused by every
        request (label moves from other processes and hosts are seen on the next run)."""
        if self._pipeline is None:
            self._pipeline = FeaturePipeline(self.service, self.root, self.store, collections=self.collections)
        return self._pipeline

    def routes(self) -> list[Route]:
        return [Route("/v1/features/{name}/run", self.guard(self.run), methods=["POST"])]

    async def run(self, request: Request) -> Response:
        caller = caller_of(request)
        tenant, key = caller.tenant, caller.key
        body = await self.parse_body(request)
        FEATURE_RUN.check(body)
        inputs = body.get("inputs") or {}
        user = body.get("user") or request.headers.get("x-keel-user")
        label = body.get("label") or DEFAULT_LABEL
        stream = bool(body.get("stream"))
        mode = body.get("mode") or request.headers.get("x-keel-mode")
        model = None if mode is None else self.service.gateway.settings.model_for_mode(mode)
        pipeline = self.pipeline()
        name = request.path_params["name"]
        if stream:
            return await self._stream(
                pipeline.events(name, inputs, user=user, tenant=tenant, key=key, label=label, stream=True, model=model)
            )
        result = await pipeline.run(name, inputs, user=user, tenant=tenant, key=key, label=label, model=model)
        headers = {"x-keel-trace-id": result.trace_id, **_cache_header(result.cache)}
        return Response(orjson.dumps(result.as_dict()), media_type="application/json", headers=headers)

    async def _stream(self, events: AsyncGenerator[FeatureEvent, None]) -> Response:
        try:
            first = await anext(events)  # a mistake before the run starts gets a real HTTP status
        except BaseException:
            await events.aclose()
            raise
        assert isinstance(first, Started)

        async def body() -> AsyncGenerator[bytes, None]:
            try:
                yield _sse(first)
                async for event in events:
                    yield _sse(event)
            except KeelError as exc:
                yield b"event: error\ndata: " + orjson.dumps(error_body(exc)) + b"\n\n"
            finally:
                await events.aclose()

        headers = {
            "x-keel-trace-id": first.result.trace_id,
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **_cache_header(first.result.cache),
        }
        write_timeout = self.service.gateway.settings.server.stream_write_timeout_s
        return ReadingStream(body(), headers=headers, write_timeout_s=write_timeout)


def _cache_header(cache: str | None) -> dict[str, str]:
    """``x-keel-cache: hit-exact | hit-semantic | miss`` for features that cache."""
    if cache is None:
        return {}
    return {"x-keel-cache": cache if cache == "miss" else f"hit-{cache}"}


def _sse(event: FeatureEvent) -> bytes:
    data = event_dict(event)
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"
