"""OpenTelemetry adapter with the GenAI semantic conventions. Depends on ``opentelemetry-api``
only: spans are no-ops until the application installs an SDK and exporter (``keel[otel]``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as otel_trace

from keel.tracing.tracer import Span


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
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
    def __init__(self, tracer: otel_trace.Tracer | None = None) -> None:
        self._tracer = tracer or otel_trace.get_tracer("keel")

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
