"""A concurrency limit per endpoint with a bounded wait queue; beyond it, fail fast (Overloaded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from keel.errors import Overloaded
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


class ConcurrencyLimit:
    def __init__(self, wrapped: Adapter, *, max_concurrency: int, max_queue: int, queue_timeout: float) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._slots = asyncio.Semaphore(max_concurrency)
        self.waiting = 0

    async def _acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self.waiting >= self.max_queue:
            raise Overloaded(
                f"{self.info.deployment}: {self.waiting} calls already waiting for a free slot",
                provider=self.info.deployment,
            )
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                f"{self.info.deployment}: no free slot within {self.queue_timeout:g}s",
                provider=self.info.deployment,
            ) from None
        finally:
            self.waiting -= 1

    async def complete(self, req: ChatRequest) -> ChatResponse:
        await self._acquire()
        try:
            return await self.wrapped.complete(req)
        finally:
            self._slots.release()

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        await self._acquire()
        try:
            return await self.wrapped.embed(req)
        finally:
            self._slots.release()

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self._acquire()
        try:
            async with aclosing(self.wrapped.stream(req)) as upstream:  # type: ignore[type-var]
                async for chunk in upstream:
                    yield chunk
        finally:
            self._slots.release()
