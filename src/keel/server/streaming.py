"""A server-sent-events response whose client must keep reading. A client that stops reading is cut:
its upstream stream is closed (the trace records it as cancelled) and its concurrency slot is
freed, instead of being held for as long as the client likes while everyone else waits.

Two deadlines, one timer:

- ``deadline_s``, for a chat stream. Upstream, the stream is held to its deployment's
  ``timeout.total``, so each write here waits at most until that same deadline, plus a second's
  grace.
- ``write_timeout_s``, for a feature stream. A run may make many calls and last longer than any one
  deployment's ``total``, so instead each write must finish within this. The timer is armed only
  while writing: a run that is slow to produce is not a client that stopped reading."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from starlette.responses import StreamingResponse
from starlette.types import Send

from keel.gateway.timeout import Watchdog

log = logging.getLogger("keel.server")
GRACE_S = 1.0


class ReadingStream(StreamingResponse):
    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        headers: dict[str, str],
        deadline_s: float | None = None,
        write_timeout_s: float | None = None,
    ) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.events = events
        self.deadline_s = deadline_s
        self.write_timeout_s = write_timeout_s

    async def stream_response(self, send: Send) -> None:
        # one timer for the whole response, as the upstream Timeout does: a timeout scope per chunk
        # would cost a loop timer per write on the hottest path
        loop = asyncio.get_running_loop()
        dog = Watchdog(loop)
        per_write = self.write_timeout_s
        if self.deadline_s is not None:
            dog.arm(loop.time() + self.deadline_s + GRACE_S)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.events:
                if dog.fired:
                    return self._cut()
                task = asyncio.current_task()
                dog.waiter = task  # only a write blocked on the client is cancelled
                if per_write is not None:
                    dog.arm(loop.time() + per_write)
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except asyncio.CancelledError:
                    if dog.fired and task is not None and task.uncancel() == 0:
                        return self._cut()
                    raise
                finally:
                    dog.waiter = None
                    if per_write is not None:
                        dog.disarm()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            dog.disarm()
            await self.events.aclose()  # the upstream stream and its slot, released now

    def _cut(self) -> None:
        """The connection is closed with the response unfinished."""
        if self.write_timeout_s is not None:
            log.warning("a client stopped reading its stream; cut after %.0f s without a write", self.write_timeout_s)
        else:
            log.warning("a client stopped reading its stream; cut at %.0f s", (self.deadline_s or 0) + GRACE_S)
