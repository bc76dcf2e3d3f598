"""An ordered fallback chain: on the configured error classes, the next deployment serves.
Streams fall back only before their first token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from keel.errors import ProviderError
from keel.gateway.streams import prime, relay
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

T = TypeVar("T")
R = TypeVar("R")


class Fallback:
    def __init__(self, chain: Sequence[Adapter], *, on: tuple[type[ProviderError], ...]) -> None:
        if not chain:
            raise ValueError("a fallback chain needs at least one provider")
        self.chain = list(chain)
        self.info = self.chain[0].info
        self.on = on

    def _falls_back(self, exc: ProviderError, index: int) -> bool:
        return index < len(self.chain) - 1 and isinstance(exc, self.on)

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self._first([p.complete for p in self.chain], req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self._first([p.embed for p in self.chain], req)

    async def _first(self, calls: list[Callable[[T], Awaitable[R]]], req: T) -> R:
        for index, call in enumerate(calls):
            try:
                return await call(req)
            except ProviderError as exc:
                if not self._falls_back(exc, index):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        for index, provider in enumerate(self.chain):
            upstream = provider.stream(req)
            try:
                head = await prime(upstream)
            except ProviderError as exc:
                if not self._falls_back(exc, index):
                    raise
                continue
            async for chunk in relay(head, upstream):
                yield chunk
            return
