"""``POST /v1/features/{name}/run``: run a feature over HTTP — JSON, or SSE with ``"stream": true``
(events ``started``, ``delta`` / ``partial``, then ``done``; a failure after the start is an ``error``
event). A run held for review answers ``202`` with its job (a stream ends with ``held``). Routes only;
the work is the feature pipeline's."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import KeelError
from keel.features.pipeline import Done, FeatureEvent, FeaturePipeline, FeatureResult, Started, event_dict
from keel.features.prompts import DEFAULT_LABEL
from keel.gateway.service import GatewayService
from keel.rag.backends import Collections
from keel.server.auth import caller_of
from keel.server.errors import error_body
from keel.server.streaming import ReadingStream
from keel.server.validate import FEATURE_RUN
from keel.store import Store
from keel.store.keys import Caller

Routed = Callable[[FeatureResult, dict[str, Any], Caller, dict[str, Any]], Awaitable[dict[str, Any] | None]]


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
        #: A run the pipeline routed to review goes here (keel.server.review); for ``hold`` it gives
        #: the job the caller gets instead of the answer.
        self.routed: Routed | None = None

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
        payload = {"inputs": inputs, "user": user, "label": body.get("label"), "key": key, "model": model}
        if stream:
            events = pipeline.events(
                name, inputs, user=user, tenant=tenant, key=key, label=label, stream=True, model=model
            )
            return await self._stream(events, lambda result: self._routed(result, inputs, caller, payload))
        result = await pipeline.run(name, inputs, user=user, tenant=tenant, key=key, label=label, model=model)
        headers = {"x-keel-trace-id": result.trace_id, **_cache_header(result.cache)}
        held = await self._routed(result, inputs, caller, payload)
        if held is not None:
            headers["location"] = f"/v1/jobs/{held['id']}"
            return Response(orjson.dumps(held), status_code=202, media_type="application/json", headers=headers)
        return Response(orjson.dumps(result.as_dict()), media_type="application/json", headers=headers)

    async def _routed(
        self, result: FeatureResult, inputs: dict[str, Any], caller: Caller, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        if result.review is None or self.routed is None:
            return None
        return await self.routed(result, inputs, caller, payload)

    async def _stream(
        self,
        events: AsyncGenerator[FeatureEvent, None],
        routed: Callable[[FeatureResult], Awaitable[dict[str, Any] | None]],
    ) -> Response:
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
                    if isinstance(event, Done) and event.result.review is not None:
                        held = await routed(event.result)
                        if held is not None:  # the answer waits for a person: the caller gets its job
                            yield b"event: held\ndata: " + orjson.dumps({"type": "held", **held}) + b"\n\n"
                            continue
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
