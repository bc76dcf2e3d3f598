"""One call, end to end at the gateway: the routed gateway inside three wrappers, each one file.

    DataPolicy(Admitted(Recorded(Gateway)))

- ``DataPolicy`` (data_policy.py) redacts, reroutes or refuses before anything is sent, and puts the
  redacted values back into the answer;
- ``Admitted`` (admitted.py) admits a chat call against budgets and limits, and settles it at its
  traced cost;
- ``Recorded`` (recording.py) leaves a trace row, a span and metrics for every call;
- ``Gateway`` (router.py) routes by alias through retry, fallback, breaker, limits and timeouts.

This class only composes them and keeps their parts reachable for the server and the CLI.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import cast

from keel.cost.prices import PriceTable
from keel.gateway.admission import Admission
from keel.gateway.admitted import Admitted
from keel.gateway.data_policy import DataPolicy
from keel.gateway.recording import Recorded
from keel.gateway.recovery import Recovered
from keel.gateway.router import Gateway
from keel.gateway.wrapper import Endpoint
from keel.store.traces import TraceRecord
from keel.store.writer import BatchWriter
from keel.tracing.metrics import Metrics
from keel.tracing.tracer import Tracer
from keel.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse


class GatewayService:
    def __init__(self, recorder: Recorded, *, admission: Admission | None = None) -> None:
        self.gateway: Gateway = recorder.gateway
        self.prices: PriceTable = recorder.prices
        self.admission = admission
        self.recorder = recorder
        self.recovered: Recovered | None = None  # what start-up settled from crashed processes' journals
        chain: Endpoint = recorder
        if admission is not None:
            chain = Admitted(chain, admission, recorder.journal)
        self.chain: Endpoint = DataPolicy(chain, self.gateway)

    # -- calls -----------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest) -> ChatResponse:
        return await self.chain.complete(req)

    def chat_stream(self, req: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        return cast(AsyncGenerator[ChatChunk, None], self.chain.stream(req))  # every wrapper's is one

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        return await self.chain.embed(req)

    def record(self, rec: TraceRecord) -> None:
        """Queue a row that did not come from a call through here (a feature run's parent trace,
        which is also the parent span of its calls)."""
        self.recorder.record(rec)
        if rec.operation == "feature" and self.recorder.spans:
            self.recorder.span(rec)

    # -- the recorder's parts, for the server's /metrics and health, and tests -------------------
    @property
    def writer(self) -> BatchWriter | None:
        return self.recorder.writer

    @property
    def tracer(self) -> Tracer:
        return self.recorder.tracer

    @property
    def metrics(self) -> Metrics:
        return self.recorder.metrics

    @property
    def capture_policy(self) -> str:
        return self.recorder.capture_policy

    @capture_policy.setter
    def capture_policy(self, value: str) -> None:
        self.recorder.capture_policy = value
