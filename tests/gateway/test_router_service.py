from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import ContextWindowExceeded, InvalidRequest, ModelNotFound, StreamInterrupted, UpstreamUnavailable
from keel.gateway.runtime import build_service, close_service
from keel.gateway.service import GatewayService
from keel.testing import Reply, ScriptedProvider, SpanCapture
from keel.types import CallContext, ChatRequest, EmbeddingRequest, Usage
from tests.conftest import make_settings, no_sleep, read_trace, scripted_service

CONFIG = """
deployments:
  small: {provider: scripted, model: gpt-4o-mini, context_window: 1000}
  big: {provider: scripted, model: gpt-4.1, context_window: 100000}
  backup: {provider: scripted, model: claude-haiku-4-5}
models:
  fast: {deployments: [small, backup], context_fallback: long, retry: {attempts: 2, base_delay_s: 0}}
  long: {deployments: [big]}
"""


@pytest.fixture
async def service(home: Path) -> GatewayService:
    svc = build_service(make_settings(CONFIG), home, sleep=no_sleep, tracer=SpanCapture())
    yield svc  # type: ignore[misc]
    await close_service(svc)


def scripted(svc: GatewayService, name: str) -> ScriptedProvider:
    adapter = svc.gateway.adapters[name]
    assert isinstance(adapter, ScriptedProvider)
    return adapter


def ask(model: str = "fast", **kw: object) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=[{"role": "user", "content": "hello there"}],
        ctx=CallContext(tenant="acme", user="u1", feature="support"),
        **kw,
    )  # type: ignore[arg-type]


async def test_unknown_model_and_oversized_max_tokens(service: GatewayService) -> None:
    with pytest.raises(ModelNotFound, match="Available: accurate, all-minilm-l6-v2, fast, local, long"):
        await service.chat(ask("gpt-9"))
    with pytest.raises(InvalidRequest) as info:
        await service.chat(ask(max_tokens=5000))
    assert info.value.param == "max_tokens"


async def test_context_window_errors_move_to_the_larger_model(service: GatewayService) -> None:
    scripted(service, "small").enqueue(ContextWindowExceeded("too long", provider="small"))
    scripted(service, "big").enqueue("answered by the big model")
    req = ask()
    response = await service.chat(req)
    assert response.text == "answered by the big model"
    assert [a.deployment for a in req.ctx.attempts] == ["small", "big"]


async def test_a_call_is_traced_with_attempts_usage_and_cost(service: GatewayService, home: Path) -> None:
    scripted(service, "small").enqueue(UpstreamUnavailable("boom", provider="small"), UpstreamUnavailable("boom"))
    scripted(service, "backup").enqueue(
        Reply("from backup", usage=Usage(2_000_000, 1_000_000, cached_input_tokens=1_000_000))
    )
    req = ask()
    await service.chat(req)
    assert service.writer is not None and service.writer.flush()
    rec = read_trace(home, req.ctx.trace_id)
    assert rec is not None
    assert (rec.tenant, rec.user, rec.feature, rec.alias, rec.deployment) == ("acme", "u1", "support", "fast", "backup")
    assert [a["deployment"] for a in rec.attempts] == ["small", "small", "backup"]
    assert [a["error_type"] for a in rec.attempts] == ["UpstreamUnavailable", "UpstreamUnavailable", None]
    # claude-haiku-4-5: 1M uncached in × $1 + 1M cached × $0.10 + 1M out × $5
    assert rec.cost_usd == pytest.approx(1.0 + 0.10 + 5.0)
    assert "price table" in (rec.cost_source or "") and rec.usage_source == "provider"
    assert rec.request == [{"role": "user", "content": "hello there"}] and rec.response == "from backup"


async def test_errors_are_traced_too(service: GatewayService, home: Path) -> None:
    for _ in range(2):
        scripted(service, "small").enqueue(UpstreamUnavailable("down"))
    scripted(service, "backup").enqueue(UpstreamUnavailable("down too"), UpstreamUnavailable("down too"))
    req = ask()
    with pytest.raises(UpstreamUnavailable):
        await service.chat(req)
    assert service.writer is not None and service.writer.flush()
    rec = read_trace(home, req.ctx.trace_id)
    assert rec is not None and rec.status == "error" and rec.http_status == 502 and len(rec.attempts) == 4


async def test_unpriced_models_are_labelled_not_guessed(home: Path) -> None:
    svc = build_service(
        make_settings(
            "deployments:\n  x: {provider: scripted, model: mystery-model}\nmodels:\n  x: {deployments: [x]}\n"
        ),
        home,
    )
    req = ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}])
    await svc.chat(req)
    assert req.ctx.record.cost_usd is None and "unpriced" in req.ctx.record.cost_source
    await close_service(svc)


async def test_streams_record_ttft_usage_and_gen_ai_span(service: GatewayService) -> None:
    req = ask(stream=True)
    text = "".join([c.text async for c in service.chat_stream(req)])
    assert text == "echo: hello there"
    rec = req.ctx.record
    assert rec.stream and rec.ttft_ms is not None and rec.output_tokens == 3
    tracer = service.tracer
    assert isinstance(tracer, SpanCapture)
    span = tracer.spans[-1]
    assert span.name == "chat fast"
    assert span.attributes["gen_ai.operation.name"] == "chat"
    assert span.attributes["gen_ai.request.model"] == "fast"
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert span.attributes["gen_ai.provider.name"] == "scripted"
    assert span.attributes["gen_ai.usage.output_tokens"] == 3
    assert span.events and span.events[0][0] == "keel.attempt"


async def test_abandoned_streams_are_recorded_as_cancelled(service: GatewayService) -> None:
    scripted(service, "small").enqueue(Reply("one two three four five"))
    req = ask(stream=True)
    stream = service.chat_stream(req)
    async for chunk in stream:
        if chunk.text:
            break
    await stream.aclose()
    assert req.ctx.record.status == "cancelled"


async def test_capture_redacts_secrets(home: Path) -> None:
    svc = build_service(make_settings(CONFIG), home)
    req = ChatRequest(
        model="fast",
        messages=[{"role": "user", "content": "my key is sk-proj-abcdefghijklmnop1234 mail me at jo@example.com"}],
    )
    await svc.chat(req)
    captured = str(req.ctx.record.request) + str(req.ctx.record.response)
    assert "sk-proj-abcdefghijklmnop1234" not in captured and "jo@example.com" not in captured
    # the data policy wraps the recording: the trace keeps what the model saw and said (placeholders)
    assert "<SECRET_1>" in captured and "<EMAIL_1>" in captured
    assert req.ctx.record.response.endswith("<EMAIL_1>")
    await close_service(svc)


async def test_trace_overflow_is_counted_and_never_fails_a_call(home: Path) -> None:
    settings = make_settings(CONFIG + "tracing: {queue_size: 1, flush_interval_s: 5, batch_size: 1000}\n")
    svc = build_service(settings, home)
    assert svc.writer is not None
    results = [await svc.chat(ask()) for _ in range(50)]
    assert len(results) == 50
    assert svc.writer.dropped > 0
    await close_service(svc)


async def test_embeddings_route_and_trace(service: GatewayService) -> None:
    req = EmbeddingRequest(model="fast", inputs=["a b", "c"])
    response = await service.embed(req)
    assert len(response.vectors) == 2 and req.ctx.record.operation == "embeddings"
    with pytest.raises(InvalidRequest, match="does not serve embeddings"):
        await service.embed(EmbeddingRequest(model="local", inputs=["x"]))


async def test_a_stream_cut_mid_way_is_charged_for_what_it_produced(home: Path) -> None:
    service, provider = scripted_service(home)
    provider.enqueue(Reply("one two three four five six", fail_after=3, error=UpstreamUnavailable("cut")))
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "count"}], stream=True)
    got = []
    with pytest.raises(StreamInterrupted):
        async for chunk in service.chat_stream(req):
            got.append(chunk.text)
    rec = req.ctx.record
    assert "".join(got) == "one two three " and rec.status == "error"
    assert rec.usage_source == "estimated" and rec.output_tokens == len("one two three ") // 4 + 1
    assert rec.cost_usd is not None and rec.cost_usd > 0 and "estimated" in rec.cost_source
    await close_service(service)
