"""Budget admission as a wrapper: a chat call is admitted against its worst case before it is sent,
then settled at its traced cost (``keel.gateway.admission`` holds the rules and the ledger).

It wraps the recording wrapper, so by the time it settles, the call's trace row is on its context.
With a crash journal, the hold is journaled before the call is sent and marked settled after, so
a hold a crash leaves behind is settled at the next start (``keel.gateway.recovery``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict

from keel.gateway.admission import Admission, Ticket
from keel.gateway.wrapper import Endpoint, WrapperProvider, inner
from keel.store.journal import Journal
from keel.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("keel.gateway")


class Admitted(WrapperProvider):
    def __init__(self, wrapped: Endpoint, admission: Admission, journal: Journal | None = None) -> None:
        super().__init__(wrapped)
        self.admission = admission
        self.journal = journal

    async def complete(self, req: ChatRequest) -> ChatResponse:
        if not self.admission.applies(req):
            return await self.wrapped.complete(req)
        ticket = await self._admit(req)
        try:
            return await self.wrapped.complete(req)
        finally:
            await self._settle(ticket, req)

    def stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        """A call no budget or limit applies to is the wrapped stream itself (no step per chunk)."""
        if not self.admission.applies(req):
            return self.wrapped.stream(req)
        return self._admitted(req)

    async def _admitted(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        ticket = await self._admit(req)
        try:
            async with inner(self.wrapped.stream(req)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await self._settle(ticket, req)

    async def _admit(self, req: ChatRequest) -> Ticket | None:
        ticket = await self.admission.admit(req)
        if ticket is not None and ticket.counted and ticket.claims and self.journal is not None:
            held = {"res": ticket.reservation, "claims": [asdict(c) for c in ticket.claims], "worst": ticket.worst_nusd}
            self.journal.hold(req.ctx.trace_id, held)
        return ticket

    async def _settle(self, ticket: Ticket | None, req: ChatRequest) -> None:
        if ticket is None:
            return
        try:
            landed = await self.admission.settle(ticket, req.ctx.record)
        except asyncio.CancelledError:
            raise
        except Exception:  # settling must never turn a served call into an error
            log.exception("budget settlement failed for trace %s", req.ctx.trace_id)
            landed = False
        if landed and self.journal is not None and ticket.counted and ticket.claims:
            self.journal.settled(req.ctx.trace_id)  # unlanded: the journal keeps it for the next start
