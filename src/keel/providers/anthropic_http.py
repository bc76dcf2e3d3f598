"""Adapter for the Anthropic Messages API (stream and non-stream), mapped to OpenAI shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson

from keel.config.settings import DeploymentSettings
from keel.errors import UpstreamUnavailable
from keel.providers import anthropic_wire as wire
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.http import make_client, require_content_type, sse_events, transport_error
from keel.providers.openai_wire import decode_json, error_from_body, error_payload
from keel.types import ChatChunk, ChatRequest, ChatResponse

API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv | None = None) -> None:
        self.info = ProviderInfo(
            deployment=name,
            provider="anthropic",
            model=settings.model,
            context_window=settings.context_window,
            price_model=settings.price_model,
        )
        self._settings = settings
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"content-type": "application/json", "anthropic-version": API_VERSION, **self._settings.headers}
            if self._settings.api_key is not None:
                headers["x-api-key"] = self._settings.api_key.resolve()
            self._client = make_client(
                self._settings.base_url or "https://api.anthropic.com/v1",
                connect_timeout=self._settings.timeout.connect,
                headers=headers,
            )
        return self._client

    async def complete(self, req: ChatRequest) -> ChatResponse:
        name = self.info.deployment
        payload = orjson.dumps(wire.to_request(req, self.info.model))
        try:
            response = await self._http().post("/messages", content=payload)
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise transport_error(exc, name) from None
        if response.status_code >= 400:
            raise error_from_body(response.status_code, error_payload(raw), name, response.headers)
        require_content_type(response, "json", name)
        return wire.from_response(decode_json(raw, name), name)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        name = self.info.deployment
        payload = orjson.dumps(wire.to_request(req, self.info.model))
        mapper = wire.StreamMapper(name)
        try:
            async with self._http().stream("POST", "/messages", content=payload) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise error_from_body(response.status_code, error_payload(raw), name, response.headers)
                require_content_type(response, "text/event-stream", name)
                async for _event, data in sse_events(response):
                    event = decode_json(data, name)
                    if event.get("type") == "error":
                        raise error_from_body(529, event, name)
                    chunk = mapper.feed(event)
                    if chunk is not None:
                        yield chunk
                    if mapper.finished:
                        return
        except httpx.HTTPError as exc:
            raise transport_error(exc, name) from None
        raise UpstreamUnavailable(f"{name}: the stream ended before message_stop", provider=name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
