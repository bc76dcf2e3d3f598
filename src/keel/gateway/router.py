"""The gateway: model aliases → fallback chains of wrapped deployments.

Per deployment (shared by every alias that uses it):
    RecordAttempts → CircuitBreaker → ConcurrencyLimit → Timeout → adapter
Per alias:
    Fallback([Retry(deployment₁), Retry(deployment₂), …]) and, on a context-window error,
    the alias's ``context_fallback``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.config.settings import AliasSettings, KeelSettings
from keel.errors import (
    BadUpstreamResponse,
    CircuitOpen,
    ContextWindowExceeded,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from keel.gateway.attempts import RecordAttempts
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.fallback import Fallback
from keel.gateway.limit import ConcurrencyLimit
from keel.gateway.resume import PREFILL, Resumable
from keel.gateway.retry import Retry, Sleep
from keel.gateway.timeout import Timeout
from keel.providers.base import Adapter, Embedder, Provider, ProviderEnv, ProviderFactory, ProviderInfo
from keel.providers.registry import factory, provider_factories
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

FALLBACK_CLASSES: dict[str, tuple[type[ProviderError], ...]] = {
    "rate_limit": (RateLimited,),
    "server_error": (UpstreamUnavailable, BadUpstreamResponse),
    "timeout": (UpstreamTimeout,),
    "context_window": (ContextWindowExceeded,),
    "circuit_open": (CircuitOpen,),
    "overloaded": (Overloaded,),
}


@dataclass(frozen=True, slots=True)
class Route:
    alias: str
    settings: AliasSettings
    chat: Provider | None
    embed: Embedder | None  # the same wrappers as chat: retry, fallback, breaker, limits, timeout
    info: ProviderInfo  # the first deployment's profile


class Gateway:
    """Routes requests by model alias. Construct once per process; ``aclose`` releases adapters."""

    def __init__(
        self,
        settings: KeelSettings,
        home: Path,
        *,
        factories: dict[str, ProviderFactory] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        env = ProviderEnv(home=home, local_models=settings.local_models)
        known = provider_factories() if factories is None else factories
        self.adapters: dict[str, Any] = {
            name: factory(dep.provider, known)(name, dep, env) for name, dep in settings.deployments.items()
        }
        self.wrapped: dict[str, Adapter] = {}  # every deployment, chat or embeddings, behind the same wrappers
        for name, adapter in self.adapters.items():
            dep = settings.deployments[name]
            chain: Adapter = Timeout(adapter, first_token=dep.timeout.first_token, total=dep.timeout.total)
            chain = ConcurrencyLimit(
                chain,
                max_concurrency=dep.max_concurrency,
                max_queue=dep.max_queue,
                queue_timeout=dep.queue_timeout_s,
                batch_concurrency=dep.batch.max_concurrency,
            )
            chain = CircuitBreaker(chain, dep.breaker)
            self.wrapped[name] = RecordAttempts(chain)
        self.routes = {alias: self._route(alias, cfg, sleep) for alias, cfg in _aliases(settings).items()}

    def _route(self, alias: str, cfg: AliasSettings, sleep: Sleep) -> Route:
        on = tuple(cls for key in cfg.fallback_on for cls in FALLBACK_CLASSES[key])

        def chain(capability: str) -> Fallback | None:
            able = [d for d in cfg.deployments if hasattr(self.adapters[d], capability)]
            tries = [Retry(self.wrapped[d], cfg.retry, sleep=sleep) for d in able]
            return Fallback(tries, on=on) if tries else None

        first = self.adapters[cfg.deployments[0]]
        chat: Provider | None = chain("complete")
        if chat is not None and cfg.retry.resume_streams:
            prefill = first.info.provider in PREFILL
            chat = Resumable(chat, attempts=cfg.retry.resume_attempts, prefill=prefill)
        return Route(alias, cfg, chat, chain("embed"), first.info)

    def route(self, model: str) -> Route:
        found = self.routes.get(model)
        if found is None:
            raise ModelNotFound(model, list(self.routes))
        return found

    def chat_route(self, req: ChatRequest) -> Route:
        """The route that will serve ``req``, or the error a malformed call gets (unknown model, an
        embeddings model, max_tokens over the window): raised before anything is reserved or sent."""
        route = self.route(req.model)
        if route.chat is None:
            raise InvalidRequest(f"the model '{req.model}' serves embeddings, not chat", param="model")
        window = route.info.context_window
        if req.max_tokens is not None and window is not None and req.max_tokens > window:
            raise InvalidRequest(
                f"max_tokens is {req.max_tokens}, but '{req.model}' has a context window of {window} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return route

    async def complete(self, req: ChatRequest) -> ChatResponse:
        route = self.chat_route(req)
        assert route.chat is not None
        try:
            return await route.chat.complete(req)
        except ContextWindowExceeded:
            bigger = route.settings.context_fallback
            if not bigger:
                raise
            return await self.complete(_with_model(req, bigger))

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        route = self.chat_route(req)
        assert route.chat is not None
        bigger = route.settings.context_fallback
        try:
            async for chunk in route.chat.stream(req):
                yield chunk
            return
        except ContextWindowExceeded:  # raised before any token, by construction
            if not bigger:
                raise
        async for chunk in self.stream(_with_model(req, bigger)):
            yield chunk

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        route = self.route(req.model)
        if route.embed is None:
            raise InvalidRequest(f"the model '{req.model}' does not serve embeddings", param="model")
        return await route.embed.embed(req)

    def batch_discount(self, deployment: str) -> float:
        """The share off a batch line's price on ``deployment`` (its ``batch.discount``)."""
        dep = self.settings.deployments.get(deployment)
        return dep.batch.discount if dep is not None else 0.0

    def price_key(self, deployment: str) -> str:
        adapter = self.adapters.get(deployment)
        if adapter is None:
            return deployment
        info: ProviderInfo = adapter.info
        return info.price_model or info.model

    async def aclose(self) -> None:
        for adapter in self.adapters.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()


def _with_model(req: ChatRequest, model: str) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=req.messages,
        stream=req.stream,
        max_tokens=req.max_tokens,
        params=req.params,
        ctx=req.ctx,
    )


def _aliases(settings: KeelSettings) -> dict[str, AliasSettings]:
    """keel.yaml's aliases, and one for ``retrieval.embedder`` when it names a bare deployment: retrieval
    embeds through the gateway, by alias, like every other call."""
    aliases = dict(settings.models)
    embedder = settings.retrieval.embedder
    if embedder is not None and embedder not in aliases:
        aliases[embedder] = AliasSettings(deployments=[embedder], description="retrieval.embedder")
    return aliases
