"""Records every try against a deployment on the call's context, whatever its outcome."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

from keel.errors import KeelError
from keel.providers.base import Adapter
from keel.types import Attempt, ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse

T = TypeVar("T", ChatRequest, EmbeddingRequest)
R = TypeVar("R")


def _fail(attempt: Attempt, exc: BaseException) -> None:
    attempt.ended = time.time()
    attempt.error_type = type(exc).__name__
    attempt.error = exc.message if isinstance(exc, KeelError) else str(exc) or type(exc).__name__
    attempt.status = getattr(exc, "upstream_status", None)


class RecordAttempts:
    def __init__(self, wrapped: Adapter) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info

    def _start(self, req: ChatRequest | EmbeddingRequest) -> Attempt:
        attempt = Attempt(
            deployment=self.info.deployment, provider=self.info.provider, model=self.info.model, started=time.time()
        )
        req.ctx.attempts.append(attempt)
        return attempt

    async def complete(self, req: ChatRequest) -> ChatResponse:
        return await self._call(self.wrapped.complete, req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self._call(self.wrapped.embed, req)

    async def _call(self, call: Callable[[T], Awaitable[R]], req: T) -> R:
        attempt = self._start(req)
        try:
            response = await call(req)
        except BaseException as exc:
            _fail(attempt, exc)
            raise
        attempt.ended = time.time()
        attempt.ttft_ms = (attempt.ended - attempt.started) * 1000
        return response

    async def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        attempt = self._start(req)
        try:
            async with aclosing(self.wrapped.stream(req)) as upstream:  # type: ignore[type-var]
                async for chunk in upstream:
                    if attempt.ttft_ms is None and chunk.has_content:
                        attempt.ttft_ms = (time.time() - attempt.started) * 1000
                    yield chunk
        except GeneratorExit:
            _fail(attempt, ConnectionAbortedError("client went away"))
            raise
        except BaseException as exc:
            _fail(attempt, exc)
            raise
        attempt.ended = time.time()
