"""OpenTelemetry export for real: Keel's own SDK providers send OTLP/HTTP protobuf to a receiver on
loopback (keel.testing.otlp) that decodes it. GenAI spans and metrics, feature runs as the parent of
their calls under Keel's own trace id, content only when asked for, and a collector that is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.features.pipeline import FeaturePipeline
from keel.gateway.runtime import build_service, close_service
from keel.store import open_store
from keel.testing import FaultServer
from keel.testing.otlp import OTLPReceiver
from keel.types import CallContext, ChatRequest
from tests.conftest import greet_project, make_settings


@pytest.fixture
def collector() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


def config(upstream: FaultServer, collector: OTLPReceiver, extra: str = "") -> str:
    return (
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
        "models:\n  fast: {deployments: [up]}\n"
        f"tracing: {{otlp: {{endpoint: '{collector.endpoint}'{extra}}}}}\n"
    )


async def test_calls_are_gen_ai_client_spans_with_metrics(
    home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    service = build_service(make_settings(config(upstream, collector)), home)
    plain = ChatRequest(
        model="fast", messages=[{"role": "user", "content": "one two"}], max_tokens=50, params={"temperature": 0.2}
    )
    streamed = ChatRequest(model="fast", messages=[{"role": "user", "content": "three"}], stream=True)
    await service.chat(plain)
    _ = [c async for c in service.chat_stream(streamed)]
    await close_service(service)  # flushes the batch exporters
    spans = collector.spans_named("chat fast")
    assert len(spans) == 2
    span = next(s for s in spans if s.attributes["keel.trace_id"] == plain.ctx.trace_id)
    attrs = span.attributes
    assert span.kind == "CLIENT" and span.parent_id == "" and span.status == "UNSET"
    assert span.trace_id == plain.ctx.trace_id  # Keel's trace id is the OTel trace id
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "fast" and attrs["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.response.id"].startswith("chatcmpl-") and attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.request.max_tokens"] == 50 and attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == upstream.port
    assert "gen_ai.input.messages" not in attrs  # content is opt-in
    assert "gen_ai.prompt" not in attrs and "gen_ai.completion" not in attrs  # never the deprecated names
    assert span.end_ns > span.start_ns and span.resource["service.name"] == "keel"
    assert "user.id" not in attrs  # no user on this call: nothing made up
    stream_span = next(s for s in spans if s is not span)
    assert stream_span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    duration = collector.metric("gen_ai.client.operation.duration")
    assert duration and duration[0].unit == "s" and sum(p.count for p in duration) == 2
    tokens = collector.metric("gen_ai.client.token.usage")
    assert {p.attributes["gen_ai.token.type"] for p in tokens} == {"input", "output"}
    assert all(p.attributes["gen_ai.request.model"] == "fast" for p in tokens)


async def test_a_feature_run_is_the_parent_of_its_calls(
    tmp_path: Path, home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    root = greet_project(tmp_path / "project")
    text = config(upstream, collector).replace("fast: {", "up: {") + f"project_root: '{root}'\n"
    settings = make_settings(text)
    service = build_service(settings, home)
    with open_store(settings, home) as store:
        result = await FeaturePipeline(service, root, store).run("greet", {"name": "Ada"})
    await close_service(service)
    (run,) = collector.spans_named("feature greet")
    (call,) = collector.spans_named("chat up")
    assert run.kind == "INTERNAL" and run.parent_id == "" and run.trace_id == result.trace_id
    assert call.trace_id == run.trace_id and call.parent_id == run.span_id  # one trace, nested
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["keel.prompt"] == "greet" and run.attributes["keel.prompt_version"] == 1


async def test_content_is_exported_only_when_asked_and_as_redacted(
    home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    service = build_service(make_settings(config(upstream, collector, ", capture_content: true")), home)
    question = "mail me at ana.lopez@example.com please"
    await service.chat(ChatRequest(model="fast", messages=[{"role": "user", "content": question}]))
    await close_service(service)
    (span,) = collector.spans_named("chat fast")
    messages = json.loads(span.attributes["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and messages[0]["parts"][0]["type"] == "text"
    assert "ana.lopez@example.com" not in span.attributes["gen_ai.input.messages"]  # tracing.capture: redacted
    assert json.loads(span.attributes["gen_ai.output.messages"])[0]["role"] == "assistant"


async def test_a_collector_that_is_down_costs_spans_not_calls(
    home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    collector.fail(503)
    service = build_service(make_settings(config(upstream, collector, ", timeout_s: 1")), home)
    started = time.perf_counter()
    for i in range(5):
        ctx = CallContext(user=f"u{i}")  # user.id on the span
        response = await service.chat(ChatRequest(model="fast", messages=[{"role": "user", "content": "hi"}], ctx=ctx))
        assert response.text
    took = time.perf_counter() - started
    tracer = service.tracer
    await close_service(service)
    assert took < 2  # exporting is the SDK thread's work, never the call's
    assert getattr(tracer, "dropped", 0) == 5 and collector.requests >= 1
    assert collector.spans == []


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    from keel.errors import ConfigError

    with pytest.raises(ConfigError, match="must be an http"):
        make_settings("tracing: {otlp: {endpoint: 'collector:4318'}}\n")
