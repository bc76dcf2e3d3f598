"""The Provider contract: two methods for chat, one optional for embeddings.

Reliability (retry, timeout, breaker, fallback, limits, tracing) is never inside an adapter:
each is a wrapper in ``keel.gateway`` that holds ``wrapped: Provider`` and is one itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from keel.config.settings import DeploymentSettings, LocalModelSettings
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the gateway needs to know about a deployment (its profile)."""

    deployment: str  # the name in keel.yaml
    provider: str  # adapter name: openai, anthropic, local, onnx-embed…
    model: str  # upstream model name
    context_window: int | None = None
    price_model: str | None = None  # price-table key, defaults to ``model``
    local: bool = False  # runs on this machine: costs nothing, data never leaves

    @classmethod
    def remote(cls, deployment: str, provider: str, settings: DeploymentSettings) -> ProviderInfo:
        """The profile of an HTTP deployment, from its settings."""
        return cls(deployment, provider, settings.model, settings.context_window, settings.price_model)


@runtime_checkable
class Provider(Protocol):
    info: ProviderInfo

    async def complete(self, req: ChatRequest) -> ChatResponse: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]: ...


@runtime_checkable
class Embedder(Protocol):
    info: ProviderInfo

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse: ...


@runtime_checkable
class Adapter(Provider, Embedder, Protocol):
    """A deployment as the gateway's wrappers see it: chat, embeddings, or both. An adapter may lack
    one half (a chat model, an embedding model); the router never asks it for what it lacks."""


class Closeable(Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProviderEnv:
    """What an adapter may need beyond its own deployment settings."""

    home: Path
    local_models: Mapping[str, LocalModelSettings]


class ProviderFactory(Protocol):
    """How adapters are registered (entry point group ``keel.providers``): a class or function."""

    def __call__(self, name: str, settings: DeploymentSettings, env: ProviderEnv) -> Provider | Embedder: ...
