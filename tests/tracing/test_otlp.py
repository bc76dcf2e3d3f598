"""OpenTelemetry export for real: Keel's own SDK providers send OTLP/HTTP protobuf to a receiver on
loopback (keel.testing.otlp) that decodes it. GenAI spans and metrics, feature runs as the parent of
their calls under Keel's own trace id, content only when asked for, and a collector that is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


async def test_an_eval_run_is_one_trace_of_its_cases_runs_steps_and_calls(
    tmp_path: Path, home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    from keel.evals.runner import run_suite
    from keel.evals.suite import load_suite

    root = greet_project(tmp_path / "project")
    (root / "features" / "greet.yaml").write_text("prompt: greet\nmodel: up\nguards: {input: [injection]}\n")
    (root / "evals").mkdir()
    (root / "evals" / "greet.yaml").write_text(
        "feature: greet\ncases:\n  - {id: ada, inputs: {name: Ada}, checks: [{type: icontains, value: ada}]}\n"
        "  - {id: bo, inputs: {name: Bo}, checks: [{type: icontains, value: bo}]}\n"
    )
    settings = make_settings(config(upstream, collector).replace("fast: {", "up: {") + f"project_root: '{root}'\n")
    service = build_service(settings, home)
    with open_store(settings, home) as store:
        run = await run_suite(FeaturePipeline(service, root, store), load_suite(root / "evals" / "greet.yaml"))
    await close_service(service)
    (top,) = collector.spans_named("eval greet")
    assert (
        top.parent_id == "" and top.attributes["keel.eval.pass_rate"] == 1.0 and top.attributes["keel.eval.cases"] == 2
    )
    runs, calls = collector.spans_named("feature greet"), collector.spans_named("chat up")
    guards, prompts = collector.spans_named("input guards greet"), collector.spans_named("prompt greet")
    assert len(runs) == len(calls) == len(guards) == len(prompts) == 2
    everything = [*runs, *calls, *guards, *prompts]
    assert {s.trace_id for s in everything} == {top.trace_id}  # one trace for the whole run
    assert all(r.parent_id == top.span_id for r in runs)
    by_run = {r.span_id for r in runs}
    assert all(s.parent_id in by_run for s in [*calls, *guards, *prompts])  # each under its case's run
    assert (
        all(s.kind == "INTERNAL" for s in [*guards, *prompts]) and guards[0].attributes["keel.step"] == "input guards"
    )
    assert prompts[0].attributes["keel.prompt.version"] == 1
    assert run.id == top.attributes["keel.eval.run_id"]


# What Langfuse's OTLP ingestion reads off a span, as its source does it (langfuse/langfuse,
# packages/shared/src/server/otel/OtelIngestionProcessor.ts: extractInputAndOutput takes the first
# of these sources present — its own attributes, GenAI message events, framework attributes — before
# gen_ai.input.messages / gen_ai.output.messages; extractUsageDetails maps gen_ai.usage.* by name).
SHADOWING_KEYS = {
    "langfuse.observation.input", "langfuse.observation.output", "ai.prompt.messages", "ai.prompt",
    "gcp.vertex.agent.llm_request", "prompt", "all_messages_events", "events", "lk.input_text",
    "mlflow.spanInputs", "traceloop.entity.input", "input.value", "output.value", "input", "output",
    "tool_arguments", "tool_response",
}  # fmt: skip
SHADOWING_EVENTS = {"gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.choice",
                    "gen_ai.tool.message", "gen_ai.content.prompt", "gen_ai.content.completion"}  # fmt: skip
USAGE_NAMES = {"input_tokens": "input", "output_tokens": "output", "prompt_tokens": "input"}


def langfuse_view(span: Any) -> dict[str, Any]:
    attrs = span.attributes
    shadowed = SHADOWING_KEYS & set(attrs) or SHADOWING_EVENTS & {name for name, *_ in span.events}
    shadowed = shadowed or {k for k in attrs if k.startswith(("gen_ai.prompt", "gen_ai.completion", "llm.input_"))}
    usage = {
        USAGE_NAMES.get(k.removeprefix("gen_ai.usage."), k.removeprefix("gen_ai.usage.")): v
        for k, v in attrs.items()
        if k.startswith("gen_ai.usage.") and k != "gen_ai.usage.cost"
    }
    return {
        "shadowed": shadowed,
        "input": attrs.get("gen_ai.input.messages"),
        "output": attrs.get("gen_ai.output.messages"),
        "usage": usage,
        "model": attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model"),
        "user": attrs.get("user.id"),
    }


async def test_langfuse_ingestion_would_map_usage_input_and_output(
    home: Path, upstream: FaultServer, collector: OTLPReceiver
) -> None:
    service = build_service(make_settings(config(upstream, collector, ", capture_content: true")), home)
    request = ChatRequest(model="fast", messages=[{"role": "user", "content": "how long do refunds take"}])
    request.ctx.user = "u-42"
    await service.chat(request)
    await close_service(service)
    (span,) = collector.spans_named("chat fast")
    view = langfuse_view(span)
    assert not view["shadowed"]  # nothing Langfuse reads first hides the GenAI messages
    assert json.loads(view["input"])[0]["parts"][0]["content"] == "how long do refunds take"
    assert json.loads(view["output"])[0]["parts"][0]["content"].startswith("You said")
    assert view["usage"]["input"] > 0 and view["usage"]["output"] > 0 and "input_tokens" not in view["usage"]
    assert view["model"] == "gpt-4o-mini" and view["user"] == "u-42"
