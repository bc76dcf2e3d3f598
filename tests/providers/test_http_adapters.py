"""Both HTTP adapters against the fault-injecting server on loopback."""

from __future__ import annotations

import pytest

from keel.config.settings import DeploymentSettings
from keel.errors import BadUpstreamResponse, ContextWindowExceeded, RateLimited, UpstreamUnavailable
from keel.providers.anthropic_http import AnthropicProvider
from keel.providers.openai_http import OpenAIHTTPProvider
from keel.testing import Fault, FaultServer
from keel.types import ChatRequest, EmbeddingRequest


def openai_provider(server: FaultServer) -> OpenAIHTTPProvider:
    return OpenAIHTTPProvider(
        "up", DeploymentSettings(provider="openai", model="gpt-4o-mini", base_url=server.base_url)
    )


def anthropic_provider(server: FaultServer) -> AnthropicProvider:
    return AnthropicProvider(
        "claude", DeploymentSettings(provider="anthropic", model="claude-x", base_url=server.base_url)
    )


def ask(text: str, stream: bool = False) -> ChatRequest:
    return ChatRequest(model="alias", messages=[{"role": "user", "content": text}], stream=stream)


async def test_openai_chat_stream_and_embeddings(upstream: FaultServer) -> None:
    provider = openai_provider(upstream)
    response = await provider.complete(ask("ping"))
    assert response.text == "You said: ping" and response.usage.output_tokens == 3
    sent = upstream.requests[-1][1]
    assert sent["model"] == "gpt-4o-mini"  # the deployment's upstream name, not the alias
    chunks = [c async for c in provider.stream(ask("stream this", stream=True))]
    assert "".join(c.text for c in chunks) == "You said: stream this"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 4
    assert upstream.requests[-1][1]["stream_options"] == {"include_usage": True}
    embedded = await provider.embed(EmbeddingRequest(model="e", inputs=["a", "b"]))
    assert len(embedded.vectors) == 2 and embedded.usage.input_tokens == 2
    await provider.aclose()


async def test_openai_maps_faults_to_the_error_tree(upstream: FaultServer) -> None:
    provider = openai_provider(upstream)
    upstream.inject(Fault.status_code(429, retry_after=2))
    with pytest.raises(RateLimited) as limited:
        await provider.complete(ask("x"))
    assert limited.value.retry_after == 2.0
    upstream.inject(Fault.status_code(400, body={"error": {"code": "context_length_exceeded", "message": "long"}}))
    with pytest.raises(ContextWindowExceeded):
        await provider.complete(ask("x"))
    upstream.inject(Fault.malformed())
    with pytest.raises(BadUpstreamResponse, match="malformed JSON"):
        await provider.complete(ask("x"))
    upstream.inject(Fault.content_type())
    with pytest.raises(BadUpstreamResponse, match="content type"):
        await provider.complete(ask("x"))
    upstream.inject(Fault.reset())
    with pytest.raises(UpstreamUnavailable, match="connection failed"):
        await provider.complete(ask("x"))
    upstream.inject(Fault.cut(after_chunks=1))
    seen: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for chunk in provider.stream(ask("a b c d", stream=True)):
            seen.append(chunk.text)
    assert "You" in "".join(seen)
    upstream.inject(Fault.garbage_chunk(after_chunks=1))
    with pytest.raises(BadUpstreamResponse):
        async for _ in provider.stream(ask("a b c d", stream=True)):
            pass
    assert (await provider.complete(ask("still alive"))).text == "You said: still alive"
    await provider.aclose()


async def test_connection_refused_is_unavailable() -> None:
    provider = OpenAIHTTPProvider(
        "dead", DeploymentSettings(provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    )
    with pytest.raises(UpstreamUnavailable):
        await provider.complete(ask("x"))
    await provider.aclose()


async def test_anthropic_chat_and_stream_over_http(upstream: FaultServer) -> None:
    provider = anthropic_provider(upstream)
    response = await provider.complete(ask("hola"))
    assert response.text == "You said: hola" and response.body["choices"][0]["finish_reason"] == "stop"
    path, sent = upstream.requests[-1]
    assert path == "/v1/messages" and sent["max_tokens"] > 0
    chunks = [c async for c in provider.stream(ask("uno dos", stream=True))]
    assert "".join(c.text for c in chunks) == "You said: uno dos"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 4
    upstream.inject(
        Fault.status_code(529, body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    with pytest.raises(UpstreamUnavailable, match="Overloaded"):
        await provider.complete(ask("x"))
    upstream.inject(Fault.cut(after_chunks=1))
    with pytest.raises(UpstreamUnavailable):
        async for _ in provider.stream(ask("a b c", stream=True)):
            pass
    await provider.aclose()


async def test_api_key_travels_as_header_and_never_in_body(
    upstream: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_KEY", "sk-canary-0123456789abcdef")
    settings = DeploymentSettings.model_validate(
        {"provider": "openai", "model": "m", "base_url": upstream.base_url, "api_key": {"$env": "UP_KEY"}}
    )
    provider = OpenAIHTTPProvider("up", settings)
    await provider.complete(ask("x"))
    assert "sk-canary" not in str(upstream.requests[-1][1])
    assert "sk-canary" not in repr(settings)
    await provider.aclose()
