"""The delegating base under the gateway's cross-cutting wrappers (data policy, admission, recording).

Like pydantic-ai's ``WrapperModel``: a wrapper holds ``wrapped`` and passes every call through, so a
subclass overrides only the calls it changes. What it wraps is the routed gateway (or another
wrapper), which speaks the ``Provider`` contract plus ``embed``: model aliases in, answers out.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Protocol, cast

from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


class Endpoint(Protocol):
    """What the gateway answers, per model alias: the Provider contract, and embeddings."""

    async def complete(self, req: ChatRequest) -> ChatResponse: ...

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse: ...


class WrapperProvider:
    """Passes every call to ``wrapped``; subclasses override what they change."""

    def __init__(self, wrapped: Endpoint) -> None:
        self.wrapped = wrapped

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self.wrapped.complete(req)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        async with inner(self.wrapped.stream(req)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self.wrapped.embed(req)


def inner(stream: AsyncIterator[ChatChunk]) -> aclosing[AsyncGenerator[ChatChunk, None]]:
    """A wrapped stream, closed when its wrapper is: a client that goes away reaches the innermost
    wrapper at once (the recording sees the cancel), not when the garbage collector gets round to it."""
    return aclosing(cast(AsyncGenerator[ChatChunk, None], stream))
