"""Retries: explicit classes, exponential backoff with full jitter, Retry-After honoured,
bounded by attempts *and* a deadline. ``sleep`` is injectable so tests need not wait."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from keel.config.settings import RetrySettings
from keel.errors import (
    BadUpstreamResponse,
    CircuitOpen,
    Overloaded,
    ProviderError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from keel.gateway.streams import prime, relay
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
R = TypeVar("R")
#: Faults worth another try: rate limits, 5xx/resets, timeouts, garbage (often a proxy page), local queue full.
RETRY_ON: tuple[type[ProviderError], ...] = (
    RateLimited,
    UpstreamUnavailable,
    UpstreamTimeout,
    BadUpstreamResponse,
    Overloaded,
)


class Retry:
    def __init__(
        self,
        wrapped: Adapter,
        policy: RetrySettings,
        *,
        on: tuple[type[ProviderError], ...] = RETRY_ON,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.policy = policy
        self.on = on
        self.sleep = sleep
        self.rng = rng or random.Random()

    def delay(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait before try ``attempt + 1``; Retry-After wins over backoff."""
        hinted = getattr(error, "retry_after", None)
        if hinted is not None:
            return float(hinted)
        cap = min(self.policy.max_delay_s, self.policy.base_delay_s * (2 ** (attempt - 1)))
        return self.rng.uniform(0, cap)

    def _plan(self, attempt: int, error: ProviderError, started: float) -> float | None:
        """The wait before the next try, or None when the error must propagate."""
        if isinstance(error, CircuitOpen) or not error.retryable or not isinstance(error, self.on):
            return None
        if attempt >= self.policy.attempts:
            return None
        wait = self.delay(attempt, error)
        if wait > self.policy.max_retry_after_s:
            return None
        if time.monotonic() - started + wait > self.policy.deadline_s:
            return None
        return wait

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self._call(self.wrapped.complete, req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self._call(self.wrapped.embed, req)

    async def _call(self, call: Callable[[T], Awaitable[R]], req: T) -> R:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(req)
            except ProviderError as exc:
                wait = self._plan(attempt, exc, started)
                if wait is None:
                    raise
            await self.sleep(wait)

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            upstream = self.wrapped.stream(req)
            try:
                head = await prime(upstream)
            except ProviderError as exc:
                wait = self._plan(attempt, exc, started)
                if wait is None:
                    raise
                await self.sleep(wait)
                continue
            async for chunk in relay(head, upstream):
                yield chunk
            return
