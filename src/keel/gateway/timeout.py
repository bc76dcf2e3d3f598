"""Deadlines: time to first token and total. (Connect timeouts live in the HTTP client.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from keel.errors import UpstreamTimeout
from keel.providers.base import Provider
from keel.types import ChatChunk, ChatRequest, ChatResponse


class Timeout:
    def __init__(self, wrapped: Provider, *, first_token: float, total: float) -> None:
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

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        start = time.monotonic()
        first = True
        async with aclosing(self.wrapped.stream(req)) as upstream:  # type: ignore[type-var]
            iterator = aiter(upstream)
            while True:
                remaining = self.total - (time.monotonic() - start)
                if first:
                    remaining = min(remaining, self.first_token)
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = "first token" if first else "end of stream"
                    raise self._error(what, self.first_token if first else self.total) from None
                first = False
                yield chunk
