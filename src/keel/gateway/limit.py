"""A concurrency limit per endpoint with a bounded wait queue; beyond it, fail fast (Overloaded).

Batch lines (``ctx.batch`` set) come second: at most ``batch_concurrency`` of them hold slots at
once, and one takes a free slot only while no interactive call waits for one, so a batch never
makes an interactive request queue behind it. They wait without a deadline: a batch has hours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from keel.errors import Overloaded
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


class ConcurrencyLimit:
    def __init__(
        self,
        wrapped: Adapter,
        *,
        max_concurrency: int,
        max_queue: int,
        queue_timeout: float,
        batch_concurrency: int | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self._slots = asyncio.Semaphore(max_concurrency)
        self._batch = asyncio.Semaphore(min(batch_concurrency or max_concurrency, max_concurrency))
        self.waiting = 0
        self._freed = asyncio.Event()  # a slot was released, or an interactive waiter left

    async def _acquire(self, req: Any) -> bool:
        """Take a slot; True when it is a batch line's (it holds a batch slot too)."""
        if getattr(getattr(req, "ctx", None), "batch", None) is not None:
            await self._batch.acquire()
            try:
                while self._slots.locked() or self.waiting:  # interactive calls first
                    self._freed.clear()
                    await self._freed.wait()
                await self._slots.acquire()  # free, and nothing ran since the check: no wait
            except BaseException:  # cancelled while waiting (its job stopped): give the batch slot back
                self._batch.release()
                raise
            return True
        await self._interactive()
        return False

    def _release(self, batch: bool) -> None:
        self._slots.release()
        self._freed.set()
        if batch:
            self._batch.release()

    async def _interactive(self) -> None:
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
            self._freed.set()

    async def complete(self, req: ChatRequest) -> ChatResponse:
        batch = await self._acquire(req)
        try:
            return await self.wrapped.complete(req)
        finally:
            self._release(batch)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        batch = await self._acquire(req)
        try:
            return await self.wrapped.embed(req)
        finally:
            self._release(batch)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        batch = await self._acquire(req)
        try:
            async with aclosing(self.wrapped.stream(req)) as upstream:  # type: ignore[type-var]
                async for chunk in upstream:
                    yield chunk
        finally:
            self._release(batch)
