"""A server-sent-events response whose client must keep reading. Upstream, a stream is held to its
deployment's ``timeout.total``; here each write waits at most until that same deadline (plus a
second's grace). A client that stops reading is cut there: its upstream stream is closed (the
trace records it as cancelled) and its concurrency slot is freed, instead of being held for as long
as the client likes while everyone else waits."""

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
    def __init__(self, events: AsyncGenerator[bytes, None], *, deadline_s: float, headers: dict[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.events = events
        self.deadline_s = deadline_s

    async def stream_response(self, send: Send) -> None:
        # one timer for the whole response, as the upstream Timeout does: a timeout scope per chunk
        # would cost a loop timer per write on the hottest path
        loop = asyncio.get_running_loop()
        dog = Watchdog(loop)
        dog.arm(loop.time() + self.deadline_s + GRACE_S)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.events:
                if dog.fired:
                    return self._cut()
                task = asyncio.current_task()
                dog.waiter = task  # only a write blocked on the client is cancelled
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except asyncio.CancelledError:
                    if dog.fired and task is not None and task.uncancel() == 0:
                        return self._cut()
                    raise
                finally:
                    dog.waiter = None
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            dog.disarm()
            await self.events.aclose()  # the upstream stream and its slot, released now

    def _cut(self) -> None:
        """The connection is closed with the response unfinished."""
        log.warning("a client stopped reading its stream; cut at %.0f s", self.deadline_s + GRACE_S)
