"""Every provider inherits keel.testing's conformance suite: the HTTP adapters against the fault
server on loopback, and the scripted fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from keel.config.settings import DeploymentSettings
from keel.providers.anthropic_http import AnthropicProvider
from keel.providers.openai_http import OpenAIHTTPProvider
from keel.testing import FaultServer, ScriptedProvider
from keel.testing.provider_conformance import ProviderConformance


class TestOpenAIProvider(ProviderConformance):
    upstream_faults = True

    @pytest.fixture
    async def provider(self, upstream: FaultServer) -> AsyncIterator[OpenAIHTTPProvider]:
        adapter = OpenAIHTTPProvider(
            "up", DeploymentSettings(provider="openai", model="gpt-4o-mini", base_url=upstream.base_url)
        )
        yield adapter
        await adapter.aclose()


class TestAnthropicProvider(ProviderConformance):
    upstream_faults = True

    @pytest.fixture
    async def provider(self, upstream: FaultServer) -> AsyncIterator[AnthropicProvider]:
        adapter = AnthropicProvider(
            "claude", DeploymentSettings(provider="anthropic", model="claude-x", base_url=upstream.base_url)
        )
        yield adapter
        await adapter.aclose()


class TestScriptedProvider(ProviderConformance):
    @pytest.fixture
    def provider(self) -> ScriptedProvider:
        fake = ScriptedProvider()
        fake.responder = lambda req: f"echo: {req.messages[-1]['content']}"
        return fake
