"""Adapter for any OpenAI-compatible HTTP endpoint: OpenAI, vLLM, Ollama, llama.cpp server, …"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from keel.config.settings import DeploymentSettings
from keel.errors import BadUpstreamResponse, ConfigError, UpstreamUnavailable
from keel.providers import openai_wire as wire
from keel.providers.base import ProviderEnv, ProviderInfo
from keel.providers.http import Upstream, require_content_type, sse_events
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Usage


class OpenAIHTTPProvider:
    """Chat, SSE streaming and embeddings over the OpenAI wire format."""

    def __init__(self, name: str, settings: DeploymentSettings, env: ProviderEnv | None = None) -> None:
        if not settings.base_url:
            raise ConfigError(f"deployments.{name}: the openai provider needs base_url")
        self.info = ProviderInfo.remote(name, "openai", settings)
        self._settings = settings
        self._upstream: Upstream | None = None

    def _http(self) -> Upstream:
        if self._upstream is None:
            headers = {"content-type": "application/json", **self._settings.headers}
            if self._settings.api_key is not None:
                headers["authorization"] = f"Bearer {self._settings.api_key.resolve()}"
            self._upstream = Upstream(
                self._settings.base_url or "",
                name=self.info.deployment,
                connect_timeout=self._settings.timeout.connect,
                headers=headers,
            )
        return self._upstream

    def _body(self, req: ChatRequest) -> bytes:
        return orjson.dumps(req.to_openai(model=self.info.model))

    async def complete(self, req: ChatRequest) -> ChatResponse:
        name = self.info.deployment
        answer = await self._http().post("/chat/completions", self._body(req))
        if answer.status >= 400:
            raise wire.error_from_body(answer.status, wire.error_payload(answer.body), name, answer.headers)
        require_content_type(answer, "json", name)
        return wire.parse_response(wire.decode_json(answer.body, name), name)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        name = self.info.deployment
        async with self._http().stream("/chat/completions", self._body(req)) as (answer, chunks):
            if answer.status >= 400:
                raise wire.error_from_body(answer.status, wire.error_payload(answer.body), name, answer.headers)
            require_content_type(answer, "text/event-stream", name)
            finished = False
            try:
                async for _event, data in sse_events(chunks):
                    if data == b"[DONE]":
                        finished = True
                        break
                    chunk = wire.parse_chunk(wire.decode_json(data, name), name)
                    if any(c.get("finish_reason") for c in chunk.body.get("choices") or []):
                        finished = True
                    yield chunk
            except BadUpstreamResponse as exc:
                exc.provider = exc.provider or name
                raise
            if not finished:
                raise UpstreamUnavailable(f"{name}: the stream ended before it finished", provider=name)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        name = self.info.deployment
        payload = orjson.dumps({"model": self.info.model, "input": req.inputs})
        answer = await self._http().post("/embeddings", payload)
        if answer.status >= 400:
            raise wire.error_from_body(answer.status, wire.error_payload(answer.body), name, answer.headers)
        data = wire.decode_json(answer.body, name)
        try:
            items = sorted(data["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError):
            raise BadUpstreamResponse(f"{name} answered embeddings in an unknown shape", provider=name) from None
        tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        return EmbeddingResponse(vectors=vectors, usage=Usage(input_tokens=tokens), model=self.info.model)

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
