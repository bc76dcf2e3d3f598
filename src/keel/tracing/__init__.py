"""Tracing: a two-method tracer interface, the OTel adapter, and capture redaction."""

from keel.tracing.otel import OTelTracer
from keel.tracing.tracer import NullTracer, Span, Tracer

__all__ = ["NullTracer", "OTelTracer", "Span", "Tracer"]
