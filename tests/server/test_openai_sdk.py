"""The official openai SDK, unmodified, against `keel serve` semantics over real HTTP."""

from __future__ import annotations

import httpx
import numpy as np

from keel.testing import FaultServer
from tests.conftest import read_trace
from tests.server.conftest import Gateway


def test_chat_with_trace_and_cost_headers(gateway: Gateway, upstream: FaultServer) -> None:
    raw = gateway.client.chat.completions.with_raw_response.create(
        model="main",
        messages=[{"role": "user", "content": "hello keel"}],
        user="u-42",
        extra_headers={"x-keel-feature": "support_answer"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "You said: hello keel"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    trace_id = raw.headers["x-keel-trace-id"]
    assert float(raw.headers["x-keel-cost-usd"]) > 0 and raw.headers["x-keel-deployment"] == "primary"
    assert upstream.requests[-1][1]["model"] == "gpt-4o-mini"
    gateway.server.app.service.writer.flush()
    rec = read_trace(gateway.home, trace_id)
    assert rec is not None and (rec.tenant, rec.user, rec.feature) == ("acme", "u-42", "support_answer")


def test_streaming_matches_openai_semantics(gateway: Gateway) -> None:
    stream = gateway.client.chat.completions.create(
        model="main", messages=[{"role": "user", "content": "stream please"}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: stream please"
    assert all(c.usage is None for c in chunks)  # not asked for: not sent
    with_usage = list(
        gateway.client.chat.completions.create(
            model="main",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None and with_usage[-1].usage.total_tokens > 0


def test_sse_wire_format_ends_with_done(gateway: Gateway) -> None:
    body = {"model": "main", "stream": True, "messages": [{"role": "user", "content": "wire"}]}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=gateway.headers()) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert any(line.startswith(": keel trace_id=") and "cost_usd=" in line for line in lines)


def test_embeddings_float_and_base64(gateway: Gateway) -> None:
    result = gateway.client.embeddings.create(model="main", input=["alpha", "beta"])  # SDK default: base64
    assert len(result.data) == 2 and len(result.data[0].embedding) == 16
    assert np.isclose(np.linalg.norm(result.data[0].embedding), 1.0, atol=1e-5)
    floats = httpx.post(
        f"{gateway.base_url}/embeddings",
        headers=gateway.headers(),
        json={"model": "main", "input": "alpha", "encoding_format": "float"},
    ).json()
    assert np.allclose(floats["data"][0]["embedding"], result.data[0].embedding, atol=1e-6)


def test_models_list(gateway: Gateway) -> None:
    ids = {m.id for m in gateway.client.models.list()}
    assert {"main", "solo", "local", "fast", "accurate"} <= ids


def test_health_and_metrics(gateway: Gateway) -> None:
    gateway.client.chat.completions.create(model="main", messages=[{"role": "user", "content": "x"}])
    assert httpx.get(f"{gateway.base_url[:-3]}/healthz").json() == {"status": "ok"}
    text = httpx.get(f"{gateway.base_url[:-3]}/metrics").text
    assert 'keel_requests_total{operation="chat",model="main",status="ok"} 1' in text
    assert "keel_trace_rows_dropped 0" in text and "keel_request_latency_ms_bucket" in text
