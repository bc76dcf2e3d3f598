"""Every request is validated before anything is reserved or sent, and every error response names
a trace that exists and is counted (issue 14's "validation before money")."""

from __future__ import annotations

from pathlib import Path

import httpx

from keel.server import build_app
from keel.store import Store, db_path
from keel.testing import FaultServer, Reply
from tests.conftest import SCRIPTED_MODEL, RunningServer, make_settings, new_key, read_trace

BUDGETED = """
deployments:
  up: {{provider: openai, model: gpt-4o-mini, base_url: "{url}", context_window: 8000}}
models:
  up: {{deployments: [up], retry: {{attempts: 1}}}}
budgets:
  daily-tokens: {{match: {{tenant: acme}}, tokens: 1000000}}
"""


def post(server: RunningServer, key: str, body: object, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.base_url + path.removeprefix("/v1"), json=body, headers={"authorization": f"Bearer {key}"})


def flushed(server: RunningServer) -> None:
    writer = server.app.service.writer
    assert writer is not None and writer.flush()


def test_a_role_of_the_wrong_type_is_a_400_naming_it(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(BUDGETED.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    with RunningServer(app) as server:
        for role in ([], {"a": 1}, 7, None):
            got = post(server, key, {"model": "up", "messages": [{"role": role, "content": "hi"}]})
            error = got.json()["error"]
            assert got.status_code == 400 and error["param"] == "messages[0].role", (role, got.text)


def test_deep_nesting_is_refused_before_anything_serialises_it(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(BUDGETED.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    deep: object = "x"
    for _ in range(600):
        deep = [deep]
    with RunningServer(app) as server:
        for body in (
            {"model": "up", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": deep}},
            {"model": "up", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": deep}]}]},
            {"model": "up", "input": deep},
        ):
            path = "/v1/embeddings" if "input" in body else "/v1/chat/completions"
            got = post(server, key, body, path)
            assert got.status_code == 400 and "nests deeper than 32 levels" in got.json()["error"]["message"]
        assert upstream.requests == []  # nothing was sent
        with Store.at(db_path(home)) as store:
            assert store.budgets.buckets("daily-tokens") == []  # and nothing was reserved


def test_max_tokens_over_the_window_is_a_400_not_a_budget_refusal(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(BUDGETED.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    with RunningServer(app) as server:
        body = {"model": "up", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9_999_999}
        got = post(server, key, body)
        assert got.status_code == 400, got.text
        assert got.json()["error"]["code"] == "context_length_exceeded" and "context window of 8000" in got.text
        assert upstream.requests == []
        with Store.at(db_path(home)) as store:
            assert store.budgets.buckets("daily-tokens") == []


def test_every_error_response_names_a_trace_that_exists_and_is_counted(home: Path, upstream: FaultServer) -> None:
    app = build_app(make_settings(BUDGETED.format(url=upstream.base_url)), home)
    key, _ = new_key(home, "acme")
    with RunningServer(app) as server:
        refusals = [
            post(server, key, {"model": "up", "messages": []}),  # 400 from validation
            post(server, key, {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),  # 404
            post(server, "sk-wrong", {"model": "up", "messages": [{"role": "user", "content": "hi"}]}),  # 401
            httpx.get(server.base_url + "/no/such/route"),  # 404 outside every route
            post(server, key, {"name": 3}, "/v1/collections"),  # 400 from another route
        ]
        flushed(server)
        for got in refusals:
            assert got.status_code >= 400 and set(got.json()["error"]) >= {"message", "type", "param", "code"}
            trace_id = got.headers["x-keel-trace-id"]
            row = read_trace(home, trace_id)
            assert row is not None and row.status == "error" and row.http_status == got.status_code, got.text
        assert read_trace(home, refusals[0].headers["x-keel-trace-id"]).tenant == "acme"
        metrics = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
        assert 'keel_http_errors_total{operation="chat",status="400"} 1' in metrics
        assert 'keel_http_errors_total{operation="http",status="401"} 1' in metrics


def test_a_bug_is_a_500_with_a_trace_id_that_exists(home: Path) -> None:
    app = build_app(make_settings(SCRIPTED_MODEL), home, auth=False)
    app.service.gateway.adapters["d"].enqueue(Reply("never", error=RuntimeError("a bug")))  # type: ignore[arg-type]
    with RunningServer(app) as server:
        got = httpx.post(
            server.base_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert got.status_code == 500 and got.json()["error"]["code"] == "internal_error"
        flushed(server)
        row = read_trace(home, got.headers["x-keel-trace-id"])
        assert row is not None and row.status == "error" and row.error_type == "RuntimeError"
