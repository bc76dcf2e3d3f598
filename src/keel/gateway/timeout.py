"""Deadlines: time to first token and total. (Connect timeouts live in the HTTP client.)

Streams arm two timers per stream — one for the first token, one for the total — rather than a
timeout scope per chunk (which cost ~10% of the gateway's CPU on the streaming path). A timer
cancels the task only while it waits on the upstream, then the cancellation is turned into an
``UpstreamTimeout``; a cancellation from anyone else passes through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

from keel.errors import UpstreamTimeout
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


class Watchdog:
    """Cancels the waiting task when the current deadline passes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Task[object] | None = None
        self.fired = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.fired = True
        if self.waiter is not None:
            self.waiter.cancel()

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Timeout:
    def __init__(self, wrapped: Adapter, *, first_token: float, total: float) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.first_token = first_token
        self.total = total

    def _error(self, what: str, seconds: float) -> UpstreamTimeout:
        name = self.info.deployment
        return UpstreamTimeout(f"{name}: no {what} within {seconds:g}s", provider=name)

    async def complete(self, req: ChatRequest) -> ChatResponse:
        try:
            async with asyncio.timeout(self.total):
                return await self.wrapped.complete(req)
        except TimeoutError:
            raise self._error("answer", self.total) from None

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        try:
            async with asyncio.timeout(self.total):
                return await self.wrapped.embed(req)
        except TimeoutError:
            raise self._error("embeddings", self.total) from None

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        dog = Watchdog(loop)
        dog.arm(start + min(self.first_token, self.total))
        first = True
        try:
            async with aclosing(self.wrapped.stream(req)) as upstream:  # type: ignore[type-var]
                iterator = aiter(upstream)
                while True:
                    if dog.fired:
                        raise self._timed_out(first)
                    task = asyncio.current_task()
                    dog.waiter = task
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        if dog.fired and task is not None and task.uncancel() == 0:
                            raise self._timed_out(first) from None
                        raise
                    finally:
                        dog.waiter = None
                    if first:
                        first = False
                        dog.arm(start + self.total)
                    yield chunk
        finally:
            dog.disarm()

    def _timed_out(self, first: bool) -> UpstreamTimeout:
        return self._error("first token", self.first_token) if first else self._error("end of stream", self.total)
