from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from keel.gateway.runtime import build_service, close_service
from keel.tracing import OTelTracer
from keel.tracing.metrics import Metrics
from keel.tracing.redact import capture, redact_text
from keel.types import ChatRequest
from tests.conftest import make_settings


async def test_otel_spans_carry_gen_ai_semantic_conventions(home: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OTelTracer(provider.get_tracer("keel-test"))
    settings = make_settings(
        "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  fast: {deployments: [d]}\n"
    )
    service = build_service(settings, home, tracer=tracer)
    await service.chat(ChatRequest(model="fast", messages=[{"role": "user", "content": "one two"}]))
    await close_service(service)
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert span.name == "chat fast"
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "scripted"
    assert attrs["gen_ai.request.model"] == "fast" and attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == 2 and attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["keel.cost_usd"] > 0
    assert span.events[0].name == "keel.attempt" and span.end_time > span.start_time


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("token sk-proj-AbCdEf0123456789xyz ok", "[API_KEY]"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "[BEARER]"),
        ("AKIAIOSFODNN7EXAMPLE", "[API_KEY]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "[PRIVATE_KEY]"),
        ("write to ana.lopez+x@mail.example.org", "[EMAIL]"),
        ("card 4111 1111 1111 1111 thanks", "[CARD]"),
        ("call +44 20 7946 0958", "[PHONE]"),
    ],
)
def test_redaction_floor(text: str, label: str) -> None:
    assert label in redact_text(text)


def test_redaction_leaves_ordinary_text_and_versions() -> None:
    text = "Upgrade to v2.14.1 on 2026-11-01; error code 504 at 10:42."
    assert redact_text(text) == text


def test_capture_policies() -> None:
    value = [{"content": "mail jo@example.com"}]
    assert capture(value, "off") is None
    assert capture(value, "full") == value
    assert capture(value, "redacted") == [{"content": "mail [EMAIL]"}]


def test_prometheus_rendering() -> None:
    metrics = Metrics()
    metrics.observe("chat", "fast", "ok", 12.0, 10, 5, 0.002)
    metrics.observe("chat", "fast", "error", 700.0, 0, 0, None)
    text = metrics.render({"keel_trace_rows_dropped": ("dropped rows", 3)})
    assert 'keel_requests_total{operation="chat",model="fast",status="ok"} 1' in text
    assert 'keel_request_latency_ms_bucket{model="fast",le="25"} 1' in text
    assert 'keel_request_latency_ms_bucket{model="fast",le="+Inf"} 2' in text
    assert "keel_trace_rows_dropped 3" in text
