"""Records every try against a deployment on the call's context, whatever its outcome."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from keel.errors import KeelError
from keel.providers.base import Provider
from keel.types import Attempt, ChatChunk, ChatRequest, ChatResponse


def _fail(attempt: Attempt, exc: BaseException) -> None:
    attempt.ended = time.time()
    attempt.error_type = type(exc).__name__
    attempt.error = exc.message if isinstance(exc, KeelError) else str(exc) or type(exc).__name__
    attempt.status = getattr(exc, "upstream_status", None)


class RecordAttempts:
    def __init__(self, wrapped: Provider) -> None:
        self.wrapped = wrapped
        self.info = wrapped.info

    def _start(self, req: ChatRequest) -> Attempt:
        attempt = Attempt(
            deployment=self.info.deployment, provider=self.info.provider, model=self.info.model, started=time.time()
        )
        req.ctx.attempts.append(attempt)
        return attempt

    async def complete(self, req: ChatRequest) -> ChatResponse:
        attempt = self._start(req)
        try:
            response = await self.wrapped.complete(req)
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
