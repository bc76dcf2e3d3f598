"""Fault injection through the whole stack: upstream misbehaves, the SDK sees the right thing."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from keel.testing import Fault, FaultServer
from tests.conftest import read_trace
from tests.server.conftest import Gateway

MSG = [{"role": "user", "content": "are you there"}]


def trace_of(gateway: Gateway, trace_id: str):  # type: ignore[no-untyped-def]
    gateway.server.app.service.writer.flush()
    return read_trace(gateway.home, trace_id)


def test_transient_503_and_reset_are_retried(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.status_code(503))
    first = gateway.client.chat.completions.with_raw_response.create(model="solo", messages=MSG)
    assert first.parse().choices[0].message.content == "You said: are you there"
    upstream.inject(Fault.reset())
    second = gateway.client.chat.completions.create(model="solo", messages=MSG)
    assert second.choices[0].message.content.startswith("You said")
    rec = trace_of(gateway, first.headers["x-keel-trace-id"])
    assert [a["error_type"] for a in rec.attempts] == ["UpstreamUnavailable", None]
    assert upstream.chat_calls == 4


def test_rate_limits_exhausted_become_429_with_retry_after(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.status_code(429, retry_after=7), Fault.status_code(429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client.chat.completions.create(model="solo", messages=MSG)
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


def test_rate_limited_primary_falls_back_to_the_anthropic_deployment(
    gateway: Gateway, upstream: FaultServer, upstream2: FaultServer
) -> None:
    upstream.inject(Fault.status_code(429), Fault.status_code(429))
    raw = gateway.client.chat.completions.with_raw_response.create(model="main", messages=MSG)
    assert raw.parse().choices[0].message.content == "answer from the second upstream"
    assert raw.headers["x-keel-deployment"] == "secondary"
    assert upstream2.requests[-1][0] == "/v1/messages"


def test_stalled_first_token_times_out_then_falls_back(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.stall(2), Fault.stall(2))
    with gateway.client.chat.completions.with_streaming_response.create(model="main", messages=MSG, stream=True) as r:
        assert r.headers["x-keel-deployment"] == "secondary"  # streams name their deployment too
        lines = list(r.iter_lines())
    text = "".join(
        orjson.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
        for line in lines
        if line.startswith("data: {") and orjson.loads(line.removeprefix("data: ")).get("choices")
    )
    assert text == "answer from the second upstream"
    trailer = next(line for line in lines if line.startswith(": keel trace_id="))
    assert "fallback_from=primary:" in trailer  # the fallback, said in the closing comment


def test_a_stream_cut_after_the_first_token_ends_with_an_error(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.cut(after_chunks=2))
    received: list[str] = []
    with pytest.raises(openai.APIError, match="the stream failed after it started"):
        for chunk in gateway.client.chat.completions.create(model="main", messages=MSG, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "You said:"  # two tokens, then a clear error, never a splice
    body = {"model": "main", "stream": True, "messages": MSG}
    upstream.inject(Fault.cut(after_chunks=1))
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=gateway.headers()) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and "data: [DONE]" not in lines  # never a clean-looking truncated answer
    assert '"code":"stream_interrupted"' in lines[-1]


def test_garbage_upstream_is_a_502_and_the_attempt_is_traced(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.malformed(), Fault.content_type())
    r = httpx.post(
        f"{gateway.base_url}/chat/completions", json={"model": "solo", "messages": MSG}, headers=gateway.headers()
    )
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_upstream_response"
    rec = trace_of(gateway, r.headers["x-keel-trace-id"])
    assert rec.status == "error" and len(rec.attempts) == 2 and rec.error_type == "BadUpstreamResponse"


def test_breaker_opens_and_the_chain_routes_around_it(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(*[Fault.status_code(500) for _ in range(4)])
    for _ in range(2):  # 2 attempts each: the third failure opens the breaker
        with pytest.raises(openai.APIStatusError):
            gateway.client.chat.completions.create(model="solo", messages=MSG)
    calls = upstream.chat_calls
    with pytest.raises(openai.APIStatusError) as info:
        gateway.client.chat.completions.create(model="solo", messages=MSG)
    assert info.value.status_code == 503 and info.value.body["code"] == "circuit_open"  # type: ignore[index]
    assert upstream.chat_calls == calls  # failing fast: the sick upstream is left alone
    fallback = gateway.client.chat.completions.create(model="main", messages=MSG)
    assert fallback.choices[0].message.content == "answer from the second upstream"


def test_upstream_rejecting_the_request_is_not_retried(gateway: Gateway, upstream: FaultServer) -> None:
    upstream.inject(Fault.status_code(400, body={"error": {"message": "tools[0] is invalid"}}))
    with pytest.raises(openai.BadRequestError, match="tools"):
        gateway.client.chat.completions.create(model="main", messages=MSG)
    assert upstream.chat_calls == 1
