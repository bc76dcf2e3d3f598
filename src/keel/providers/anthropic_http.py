"""Adapter for the Anthropic Messages API (stream and non-stream), mapped to OpenAI shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from keel.config.settings import DeploymentSettings
from keel.errors import UpstreamUnavailable
from keel.providers import anthropic_wire as wire
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.http import Upstream, require_content_type, sse_events
from keel.providers.openai_wire import decode_json, error_from_body, error_payload
from keel.types import ChatChunk, ChatRequest, ChatResponse

API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv | None = None) -> None:
        self.info = ProviderInfo.remote(name, "anthropic", settings)
        self._settings = settings
        self._upstream: Upstream | None = None

    def _http(self) -> Upstream:
        if self._upstream is None:
            headers = {"content-type": "application/json", "anthropic-version": API_VERSION, **self._settings.headers}
            if self._settings.api_key is not None:
                headers["x-api-key"] = self._settings.api_key.resolve()
            self._upstream = Upstream(
                self._settings.base_url or "https://api.anthropic.com/v1",
                name=self.info.deployment,
                connect_timeout=self._settings.timeout.connect,
                headers=headers,
            )
        return self._upstream

    async def complete(self, req: ChatRequest) -> ChatResponse:
        name = self.info.deployment
        answer = await self._http().post("/messages", orjson.dumps(wire.to_request(req, self.info.model)))
        if answer.status >= 400:
            raise error_from_body(answer.status, error_payload(answer.body), name, answer.headers)
        require_content_type(answer, "json", name)
        return wire.from_response(decode_json(answer.body, name), name)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        name = self.info.deployment
        mapper = wire.StreamMapper(name)
        payload = orjson.dumps(wire.to_request(req, self.info.model))
        async with self._http().stream("/messages", payload) as (answer, chunks):
            if answer.status >= 400:
                raise error_from_body(answer.status, error_payload(answer.body), name, answer.headers)
            require_content_type(answer, "text/event-stream", name)
            async for _event, data in sse_events(chunks):
                event = decode_json(data, name)
                if event.get("type") == "error":
                    raise error_from_body(529, event, name)
                chunk = mapper.feed(event)
                if chunk is not None:
                    yield chunk
                if mapper.finished:
                    return
        raise UpstreamUnavailable(f"{name}: the stream ended before message_stop", provider=name)

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
