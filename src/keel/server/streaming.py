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

log = logging.getLogger("keel.server")
GRACE_S = 1.0


class ReadingStream(StreamingResponse):
    def __init__(self, events: AsyncGenerator[bytes, None], *, deadline_s: float, headers: dict[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.events = events
        self.deadline_s = deadline_s

    async def stream_response(self, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + self.deadline_s + GRACE_S
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.events:
                try:
                    async with asyncio.timeout_at(deadline):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    log.warning("a client stopped reading its stream; cut at %.0f s", self.deadline_s + GRACE_S)
                    return  # the connection is closed with the response unfinished
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self.events.aclose()  # the upstream stream and its slot, released now
