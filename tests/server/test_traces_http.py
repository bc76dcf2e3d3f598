"""GET /v1/traces and /v1/traces/{id}: filters, cursor pagination, precise errors."""

from __future__ import annotations

import httpx

from tests.server.conftest import Gateway

MSG = [{"role": "user", "content": "hello"}]


def test_traces_page_by_cursor_and_filter(gateway: Gateway) -> None:
    ids = []
    for i in range(23):
        r = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "main", "messages": MSG},
                       headers=gateway.headers(**{"x-keel-user": f"u{i % 2}"}))  # fmt: skip
        ids.append(r.headers["x-keel-trace-id"])
    assert gateway.server.app.service.writer.flush()
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = httpx.get(f"{gateway.base_url}/traces?{query}", headers=gateway.headers()).json()
        seen += [t["id"] for t in page["data"]]
        assert all("request" not in t and "response" not in t for t in page["data"])  # lists stay light
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(ids)
    u1 = httpx.get(f"{gateway.base_url}/traces?user=u1&limit=200", headers=gateway.headers()).json()["data"]
    assert len(u1) == 11 and {t["user"] for t in u1} == {"u1"}
    one = httpx.get(f"{gateway.base_url}/traces/{ids[0]}", headers=gateway.headers()).json()
    assert one["id"] == ids[0] and one["spans"] == [] and one["feedback"] == [] and "attempts" in one


def test_bad_trace_queries_are_refused_precisely(gateway: Gateway) -> None:
    for query, param in [("limit=0", "limit"), ("limit=abc", "limit"), ("colour=red", "colour"),
                         ("since=yesterday", "since"), ("cursor=%21%21", "cursor")]:  # fmt: skip
        r = httpx.get(f"{gateway.base_url}/traces?{query}", headers=gateway.headers())
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (query, r.text)
    missing = httpx.get(f"{gateway.base_url}/traces/000000000000", headers=gateway.headers())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "trace_not_found"
    short = httpx.get(f"{gateway.base_url}/traces/abc", headers=gateway.headers())
    assert short.status_code == 400 and "6 characters" in short.json()["error"]["message"]
