"""OpenTelemetry with the GenAI semantic conventions: spans and the two GenAI client metrics.

There are two ways in.

- **Keel exports.** Set ``tracing: {otlp: {endpoint: …}}``, or ``tracing: {otel: true}`` with the
  standard ``OTEL_EXPORTER_OTLP_*`` or ``OTEL_TRACES_EXPORTER`` variables. Keel then builds its own SDK
  ``TracerProvider`` and ``MeterProvider`` with batch OTLP/HTTP exporters (``keel[otel]``), flushed
  when the service closes. Export runs on the SDK's own thread. A collector that is down costs
  nothing but the spans, which are counted in ``dropped``.
- **The application exports.** ``OTelTracer(tracer)`` wraps an application's own tracer, with its
  provider and its exporters.

A span is made from a call's trace row when the call ends, backdated to its start, and its ids are
Keel's. A feature run's trace id is the OTel trace id of the run and of every call in it. Each row's
id gives its span id, and the run's id gives the parent span id. So the span tree in a collector is
Keel's trace tree, and a Keel trace id finds its OTel trace. Under an application's provider, which
makes its own ids, calls still join their run's trace.

Attribute names are Keel's own constants below, since the upstream conventions are still moving.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import random
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from keel.tracing.tracer import Span, SpanData

log = logging.getLogger("keel.tracing")

# -- the GenAI semantic conventions (as of semconv 1.37), as Keel spells them --------------------
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TEMPERATURE = "gen_ai.request.temperature"
MAX_TOKENS = "gen_ai.request.max_tokens"
TOP_P = "gen_ai.request.top_p"
SEED = "gen_ai.request.seed"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
TOKEN_TYPE = "gen_ai.token.type"
METRIC_KEYS = (OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL, ERROR_TYPE, SERVER_ADDRESS)

_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("keel_otel_ids", default=None)


def otel_id(keel_id: str, bits: int) -> int:
    """Keel's id as an OTel trace id (128 bits) or span id (64): its own hex digits when it is a hex
    uuid, else a hash of it."""
    digits = bits // 4
    try:
        value = int(keel_id[:digits], 16) if len(keel_id) >= digits else 0
    except ValueError:
        value = 0
    if value == 0:
        value = int(hashlib.sha256(keel_id.encode()).hexdigest()[:digits], 16) or 1
    return value


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class _OtelSpan:
    def __init__(self, span: otel_trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: dict[str, Any]) -> None:
        self._span.add_event(name, _clean(attributes))


class OTelTracer:
    def __init__(
        self,
        tracer: otel_trace.Tracer | None = None,
        *,
        meter: Any = None,
        capture_content: bool = False,
        providers: Sequence[Any] = (),
    ) -> None:
        self._tracer = tracer or otel_trace.get_tracer("keel")
        self.capture_content = capture_content  # gen_ai.input/output.messages, as the capture policy left them
        self._providers = list(providers)  # Keel's own, shut down (flushed) with the service
        self._exporters: list[_Counted] = []
        self._finished: Any = None  # with Keel's own provider: (span processor, resource, scope)
        self._duration = self._tokens = None
        self._measured: deque[tuple[float, int, int, dict[str, Any]]] = deque(maxlen=100_000)
        self._wake = threading.Event()
        self._stopping = False
        self._meter_thread: threading.Thread | None = None
        if meter is not None:
            self._duration = meter.create_histogram(DURATION, unit="s", description="GenAI operation duration")
            self._tokens = meter.create_histogram(TOKEN_USAGE, unit="{token}", description="GenAI tokens used")
            self._meter_thread = threading.Thread(target=self._measure, name="keel-otel-metrics", daemon=True)
            self._meter_thread.start()

    @classmethod
    def exporting(
        cls,
        endpoint: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        capture_content: bool = False,
        timeout_s: float = 10.0,
        metrics_interval_s: float = 10.0,
    ) -> OTelTracer:
        """Keel's own providers, exporting over OTLP/HTTP to ``endpoint`` (None: the standard
        ``OTEL_EXPORTER_OTLP_*`` variables; ``OTEL_TRACES_EXPORTER=console`` prints spans)."""
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        except ImportError as exc:
            from keel.errors import ConfigError

            raise ConfigError(f"tracing.otlp needs the OpenTelemetry SDK: pip install 'keel[otel]' ({exc})") from None
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "keel")})
        provider = TracerProvider(resource=resource, id_generator=_KeelIds())  # type: ignore[arg-type]  # duck-typed: the SDK is optional
        base = endpoint.rstrip("/") if endpoint else None
        span_exporter: Any
        metric_exporter: Any
        if endpoint is None and os.environ.get("OTEL_TRACES_EXPORTER", "").strip() == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
        else:
            span_exporter = OTLPSpanExporter(
                endpoint=f"{base}/v1/traces" if base else None, headers=dict(headers or {}), timeout=timeout_s
            )
            metric_exporter = OTLPMetricExporter(
                endpoint=f"{base}/v1/metrics" if base else None, headers=dict(headers or {}), timeout=timeout_s
            )
        counted = _Counted(span_exporter)
        batches = BatchSpanProcessor(counted, schedule_delay_millis=1000, max_queue_size=8192)  # type: ignore[arg-type]
        provider.add_span_processor(batches)
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=int(metrics_interval_s * 1000))
        meters = MeterProvider(resource=resource, metric_readers=[reader])
        tracer = cls(
            provider.get_tracer("keel"),
            meter=meters.get_meter("keel"),
            capture_content=capture_content,
            providers=[provider, meters],
        )
        tracer._exporters.append(counted)
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from keel import __version__

        tracer._finished = (provider._active_span_processor, resource, InstrumentationScope("keel", __version__))
        return tracer

    @property
    def dropped(self) -> int:
        """Spans a collector did not take (down, refusing, too slow)."""
        return sum(e.dropped for e in self._exporters)

    # -- finished spans --------------------------------------------------------------------------
    def emit(self, span: SpanData) -> None:
        trace_id, span_id = otel_id(span.root, 128), otel_id(span.keel_id, 64)
        if self._finished is not None:
            self._finish(span, trace_id, span_id)
        else:
            self._start_and_end(span, trace_id, span_id)
        if span.metrics is not None and self._duration is not None:
            keys = {k: span.attributes[k] for k in METRIC_KEYS if span.attributes.get(k) is not None}
            m = span.metrics
            self._measured.append(
                (m["duration_s"], int(m.get("input_tokens", 0)), int(m.get("output_tokens", 0)), keys)
            )

    def _finish(self, span: SpanData, trace_id: int, span_id: int) -> None:
        """Keel's own provider: the finished span straight to the batch processor (a span that is
        over needs none of the SDK's live-span machinery, which cost most of the export's time)."""
        from opentelemetry.sdk.trace import Event, ReadableSpan

        processor, resource, scope = self._finished
        flags = TraceFlags(TraceFlags.SAMPLED)
        parent = SpanContext(trace_id, otel_id(span.parent, 64), True, flags) if span.parent is not None else None
        readable = ReadableSpan(
            span.name,
            context=SpanContext(trace_id, span_id, False, flags),
            parent=parent,
            resource=resource,
            attributes=_clean(span.attributes),
            events=[Event(name, _clean(attrs), span.end_ns) for name, attrs in span.events],
            kind=SpanKind.CLIENT if span.kind == "client" else SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, span.error) if span.error is not None else Status(StatusCode.UNSET),
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=scope,
        )
        processor.on_end(readable)

    def _start_and_end(self, span: SpanData, trace_id: int, span_id: int) -> None:
        """An application's provider: a span through its tracer, backdated, under Keel's trace id."""
        context = None
        if span.parent is not None:
            parent = SpanContext(trace_id, otel_id(span.parent, 64), True, TraceFlags(TraceFlags.SAMPLED))
            context = otel_trace.set_span_in_context(NonRecordingSpan(parent))
        kind = SpanKind.CLIENT if span.kind == "client" else SpanKind.INTERNAL
        token = _IDS.set((trace_id, span_id))
        try:
            made = self._tracer.start_span(
                span.name, context=context, kind=kind, attributes=_clean(span.attributes), start_time=span.start_ns
            )
        finally:
            _IDS.reset(token)
        for name, attrs in span.events:
            made.add_event(name, _clean(attrs))
        if span.error is not None:
            made.set_status(Status(StatusCode.ERROR, span.error))
        made.end(end_time=span.end_ns)

    def _measure(self) -> None:
        """The GenAI metrics, recorded off the call's path (the SDK's record is ~40 µs a value)."""
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while self._measured:
                duration, input_tokens, output_tokens, keys = self._measured.popleft()
                assert self._duration is not None and self._tokens is not None
                self._duration.record(duration, keys)
                if input_tokens:
                    self._tokens.record(input_tokens, {**keys, TOKEN_TYPE: "input"})
                if output_tokens:
                    self._tokens.record(output_tokens, {**keys, TOKEN_TYPE: "output"})
            if self._stopping:
                return

    # -- live spans (retrieval) --------------------------------------------------------------------
    @contextmanager
    def trace(
        self, name: str, attributes: dict[str, Any] | None = None, *, start_ns: int | None = None
    ) -> Iterator[Span]:
        kind = otel_trace.SpanKind.CLIENT
        attrs = _clean(attributes or {})
        with self._tracer.start_as_current_span(name, kind=kind, attributes=attrs, start_time=start_ns) as span:
            yield _OtelSpan(span)

    def current_span(self) -> Span | None:
        span = otel_trace.get_current_span()
        return _OtelSpan(span) if span.is_recording() else None

    def shutdown(self) -> None:
        if self._meter_thread is not None:
            self._stopping = True
            self._wake.set()
            self._meter_thread.join(10)
        for provider in self._providers:
            try:
                provider.shutdown()  # flushes what is queued, within the exporter's timeout
            except Exception as exc:  # a collector that is down must not stop a shutdown
                log.warning("OpenTelemetry shutdown: %s", exc)


class _KeelIds:
    """The SDK's id generator, handing out Keel's ids for the span being made (else random ones)."""

    def generate_span_id(self) -> int:
        ids = _IDS.get()
        return ids[1] if ids is not None else random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        ids = _IDS.get()
        return ids[0] if ids is not None else random.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return False  # Keel's ids are uuid4s: six of their bits are fixed


class _Counted:
    """A span exporter that counts what it could not deliver."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dropped = 0
        self._warned = False

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            if not self._warned:
                log.warning("OpenTelemetry export failed (%s); spans are dropped and counted", exc)
        if result != SpanExportResult.SUCCESS:
            self.dropped += len(spans)
            if not self._warned:
                self._warned = True
                log.warning("the OpenTelemetry collector did not take %d span(s); counting the drops", len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))
