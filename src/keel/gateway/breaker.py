"""A circuit breaker per endpoint: closed → open after N consecutive faults → half-open probes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Literal, TypeVar

from keel.config.settings import BreakerSettings
from keel.errors import BadUpstreamResponse, CircuitOpen, ProviderError, UpstreamTimeout, UpstreamUnavailable
from keel.gateway.streams import prime
from keel.providers.base import Adapter
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

T = TypeVar("T")
R = TypeVar("R")
State = Literal["closed", "open", "half_open"]
#: Faults that say the endpoint is unhealthy. Rate limits and request errors do not.
TRIPS_ON: tuple[type[ProviderError], ...] = (UpstreamUnavailable, UpstreamTimeout, BadUpstreamResponse)


class CircuitBreaker:
    def __init__(
        self, wrapped: Adapter, policy: BreakerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info
        self.policy = policy
        self.clock = clock
        self.state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probes_in_flight = 0
        self.probe_successes = 0

    def _admit(self) -> bool:
        """Let a call through, or raise CircuitOpen. Returns True when the call is a probe."""
        if self.state == "open":
            waited = self.clock() - self.opened_at
            if waited < self.policy.cooldown_s:
                raise CircuitOpen(
                    f"{self.info.deployment}: circuit open after {self.failures} consecutive faults",
                    retry_after=self.policy.cooldown_s - waited,
                    provider=self.info.deployment,
                )
            self.state, self.probe_successes = "half_open", 0
        if self.state == "half_open":
            if self.probes_in_flight >= self.policy.probes:
                raise CircuitOpen(
                    f"{self.info.deployment}: circuit half-open, probe in flight", provider=self.info.deployment
                )
            self.probes_in_flight += 1
            return True
        return False

    def _record(self, probe: bool, error: BaseException | None) -> None:
        if probe:
            self.probes_in_flight -= 1
        if error is None or not isinstance(error, TRIPS_ON):
            if probe and error is None:
                self.probe_successes += 1
                if self.probe_successes >= self.policy.probes:
                    self.state, self.failures = "closed", 0
            elif error is None:
                self.failures = 0
            return
        self.failures += 1
        if probe or self.failures >= self.policy.failures:
            self.state, self.opened_at = "open", self.clock()

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self._call(self.wrapped.complete, req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self._call(self.wrapped.embed, req)

    async def _call(self, call: Callable[[T], Awaitable[R]], req: T) -> R:
        probe = self._admit()
        try:
            response = await call(req)
        except BaseException as exc:
            self._record(probe, exc)
            raise
        self._record(probe, None)
        return response

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        probe = self._admit()
        upstream = self.wrapped.stream(req)
        try:
            head = await prime(upstream)
        except BaseException as exc:
            self._record(probe, exc)
            raise
        self._record(probe, None)  # the endpoint answered: health is about reaching the first token
        async with aclosing(upstream):  # type: ignore[type-var]
            for chunk in head:
                yield chunk
            async for chunk in upstream:
                yield chunk
