"""Adapter for any OpenAI-compatible HTTP endpoint: OpenAI, vLLM, Ollama, llama.cpp server, …"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson

from keel.config.settings import DeploymentSettings
from keel.errors import BadUpstreamResponse, ConfigError, UpstreamUnavailable
from keel.providers import openai_wire as wire
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.http import make_client, require_content_type, sse_events, transport_error
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Usage


class OpenAIHTTPProvider:
    """Chat, SSE streaming and embeddings over the OpenAI wire format."""

    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv | None = None) -> None:
        if not settings.base_url:
            raise ConfigError(f"deployments.{name}: the openai provider needs base_url")
        self.info = ProviderInfo(
            deployment=name,
            provider="openai",
            model=settings.model,
            context_window=settings.context_window,
            price_model=settings.price_model,
        )
        self._settings = settings
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"content-type": "application/json", **self._settings.headers}
            if self._settings.api_key is not None:
                headers["authorization"] = f"Bearer {self._settings.api_key.resolve()}"
            self._client = make_client(
                self._settings.base_url or "", connect_timeout=self._settings.timeout.connect, headers=headers
            )
        return self._client

    def _body(self, req: ChatRequest) -> bytes:
        return orjson.dumps(req.to_openai(model=self.info.model))

    async def complete(self, req: ChatRequest) -> ChatResponse:
        name = self.info.deployment
        try:
            response = await self._http().post("/chat/completions", content=self._body(req))
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise transport_error(exc, name) from None
        if response.status_code >= 400:
            body = wire.error_payload(raw)
            raise wire.error_from_body(response.status_code, body, name, response.headers)
        require_content_type(response, "json", name)
        return wire.parse_response(wire.decode_json(raw, name), name)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        name = self.info.deployment
        client = self._http()
        try:
            async with client.stream("POST", "/chat/completions", content=self._body(req)) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise wire.error_from_body(response.status_code, wire.error_payload(raw), name, response.headers)
                require_content_type(response, "text/event-stream", name)
                finished = False
                async for _event, data in sse_events(response):
                    if data == b"[DONE]":
                        finished = True
                        break
                    chunk = wire.parse_chunk(wire.decode_json(data, name), name)
                    if any(c.get("finish_reason") for c in chunk.body.get("choices") or []):
                        finished = True
                    yield chunk
                if not finished:
                    raise UpstreamUnavailable(f"{name}: the stream ended before it finished", provider=name)
        except httpx.HTTPError as exc:
            raise transport_error(exc, name) from None
        except BadUpstreamResponse as exc:
            exc.provider = exc.provider or name
            raise

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        name = self.info.deployment
        payload = orjson.dumps({"model": self.info.model, "input": req.inputs})
        try:
            response = await self._http().post("/embeddings", content=payload)
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise transport_error(exc, name) from None
        if response.status_code >= 400:
            raise wire.error_from_body(response.status_code, wire.error_payload(raw), name, response.headers)
        data = wire.decode_json(raw, name)
        try:
            items = sorted(data["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError):
            raise BadUpstreamResponse(f"{name} answered embeddings in an unknown shape", provider=name) from None
        tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        return EmbeddingResponse(vectors=vectors, usage=Usage(input_tokens=tokens), model=self.info.model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
