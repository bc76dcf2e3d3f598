"""One conformance suite for every Provider — the built-in adapters, the scripted fake, a third
party's. Subclass it in a test module and give it one fixture, ``provider``; an adapter that talks
HTTP also sets ``upstream_faults = True`` and builds its provider against the ``upstream`` fixture
(a FaultServer on loopback), so the suite can check how it maps an upstream's faults:

    class TestMyProvider(ProviderConformance):
        upstream_faults = True

        @pytest.fixture
        async def provider(self, upstream):
            adapter = MyProvider("dep", DeploymentSettings(provider="mine", model="m", base_url=upstream.base_url))
            yield adapter
            await adapter.aclose()

What every provider must do: a profile; answers with text, usage and an OpenAI-shaped body; streams
that carry the same answer, end with a finish reason and can be abandoned; concurrent calls kept
apart; and, over HTTP, the error tree (429 → RateLimited with its Retry-After, 5xx and resets →
UpstreamUnavailable, garbage → BadUpstreamResponse), never a bare exception.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from keel.errors import BadUpstreamResponse, KeelError, ProviderError, RateLimited, UpstreamUnavailable
from keel.providers.base import Provider, ProviderInfo
from keel.testing.fault_server import Fault, FaultServer
from keel.types import ChatRequest, Usage


def ask(text: str, *, stream: bool = False, max_tokens: int | None = 32) -> ChatRequest:
    messages = [{"role": "user", "content": text}]
    return ChatRequest(model="alias", messages=messages, stream=stream, max_tokens=max_tokens)


class ProviderConformance:
    upstream_faults: ClassVar[bool] = False  # True: the provider talks to the ``upstream`` FaultServer

    @pytest.fixture
    def upstream(self) -> Any:
        with FaultServer() as server:
            yield server

    def test_it_has_a_profile(self, provider: Provider) -> None:
        assert isinstance(provider, Provider)
        info = provider.info
        assert isinstance(info, ProviderInfo)
        assert info.deployment and info.provider and info.model
        assert info.context_window is None or info.context_window > 0

    async def test_an_answer_has_text_usage_and_an_openai_body(self, provider: Provider) -> None:
        response = await provider.complete(ask("Say hello."))
        assert isinstance(response.text, str) and response.text.strip()
        assert isinstance(response.usage, Usage) and response.usage.output_tokens >= 0
        choice = response.body["choices"][0]
        assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == response.text
        assert choice.get("finish_reason") in ("stop", "length", "tool_calls", "content_filter")

    async def test_a_stream_carries_the_answer_and_ends_with_a_finish_reason(self, provider: Provider) -> None:
        chunks = [chunk async for chunk in provider.stream(ask("Say hello.", stream=True))]
        text = "".join(chunk.text for chunk in chunks)
        assert text.strip() and any(chunk.has_content for chunk in chunks)
        reasons = [c.get("finish_reason") for chunk in chunks for c in chunk.body.get("choices") or []]
        assert [r for r in reasons if r is not None][-1:] and reasons.count(None) >= 1
        usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
        assert len(usage) <= 1  # at most once, at the end

    async def test_a_stream_can_be_abandoned(self, provider: Provider) -> None:
        stream = provider.stream(ask("Count from one to twenty.", stream=True, max_tokens=48))
        async for chunk in stream:
            if chunk.has_content:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        again = await provider.complete(ask("Say hello."))  # and the provider still serves
        assert again.text.strip()

    async def test_concurrent_calls_are_kept_apart(self, provider: Provider) -> None:
        answers = await asyncio.gather(*(provider.complete(ask(f"Repeat: token{i}")) for i in range(4)))
        assert all(a.text.strip() for a in answers)

    # -- over HTTP: the upstream's faults, mapped to the error tree ------------------------------
    def _faults(self, upstream: FaultServer) -> FaultServer:
        if not self.upstream_faults:
            pytest.skip("the provider does not talk to the fault server")
        return upstream

    async def test_a_429_is_rate_limited_with_its_retry_after(self, provider: Provider, upstream: FaultServer) -> None:
        self._faults(upstream).inject(Fault.status_code(429, retry_after=3))
        with pytest.raises(RateLimited) as raised:
            await provider.complete(ask("x"))
        assert raised.value.retry_after == 3.0

    async def test_5xx_and_resets_are_upstream_unavailable(self, provider: Provider, upstream: FaultServer) -> None:
        self._faults(upstream).inject(Fault.status_code(503), Fault.reset())
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable):
                await provider.complete(ask("x"))

    async def test_garbage_is_a_bad_upstream_response(self, provider: Provider, upstream: FaultServer) -> None:
        self._faults(upstream).inject(Fault.malformed(), Fault.content_type())
        for _ in range(2):
            with pytest.raises(BadUpstreamResponse):
                await provider.complete(ask("x"))

    async def test_a_stream_fault_is_a_keel_error(self, provider: Provider, upstream: FaultServer) -> None:
        self._faults(upstream).inject(Fault.status_code(500), Fault.cut(after_chunks=1))
        with pytest.raises(ProviderError):
            _ = [c async for c in provider.stream(ask("x", stream=True))]
        with pytest.raises(KeelError):
            _ = [c async for c in provider.stream(ask("stream this please", stream=True))]
