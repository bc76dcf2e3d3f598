"""The HTTP protocol at the edge: uvicorn's httptools protocol with the two limits it lacks.

- **A header deadline.** A connection must finish a request's headers within ``header_timeout_s``
  of opening, or of its last response, or it is closed. uvicorn holds a connection that sends
  nothing, or sends its headers a byte at a time, for as long as the client likes: that is
  slowloris.
- **Open connections are capped by eviction.** Past ``max_connections``, a new connection makes
  room by closing the oldest one still waiting for its headers. A flood of idle sockets therefore
  cannot shut real clients out. When every open connection is busy with a request, uvicorn's own
  ``limit_concurrency`` answers 503.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT = "KEEL_EDGE_HEADER_TIMEOUT_S"
MAX_CONNECTIONS = "KEEL_EDGE_MAX_CONNECTIONS"


def configure(header_timeout_s: float, max_connections: int) -> str:
    """Set the limits for the protocol of servers started from here (uvicorn's worker processes
    inherit them: it takes the protocol as an import string, since a class cannot cross to a spawned
    worker), and return that import string."""
    os.environ[HEADER_TIMEOUT] = repr(header_timeout_s)
    os.environ[MAX_CONNECTIONS] = str(max_connections)
    return "keel.server.protocol:EdgeProtocol"


class EdgeProtocol(HttpToolsProtocol):
    evicted = 0  # connections closed to make room, since start (per process)
    timed_out = 0  # connections closed for not sending their headers in time

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = float(os.environ.get(HEADER_TIMEOUT, "10"))
        self.max_connections = int(os.environ.get(MAX_CONNECTIONS, "1000"))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()
        if len(self.connections) > self.max_connections:
            self._evict()

    def _arm(self) -> None:
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        self._waiting_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            EdgeProtocol.timed_out += 1
            self.transport.close()
            self.connections.discard(self)

    def _evict(self) -> None:
        waiting: list[Any] = [
            c for c in self.connections if getattr(c, "_waiting_since", None) is not None and c is not self
        ]
        if not waiting:
            return  # every other connection is busy: uvicorn's limit answers 503 to the next request
        oldest = min(waiting, key=lambda c: c._waiting_since)
        oldest._disarm()
        EdgeProtocol.evicted += 1
        oldest.transport.close()
        self.connections.discard(oldest)  # now, not when the loop gets to its connection_lost

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
