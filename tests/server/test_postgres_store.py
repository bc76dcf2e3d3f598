"""The whole gateway on the Postgres store, by configuration alone: keys, traces, feedback,
collections (retrieval follows the store), features — and what happens when Postgres goes away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.errors import ConfigError
from keel.server import build_app
from keel.store import Store
from keel.store.engines import open_postgres
from keel.testing import FaultServer
from tests.conftest import RunningServer, make_settings

MSG = [{"role": "user", "content": "hello"}]


def pg_settings(upstream: FaultServer) -> Any:
    return make_settings(
        'store: {backend: postgres, url: {"$env": "KEEL_TEST_PG"}}\n'
        f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{upstream.base_url}'}}\n"
        "models:\n  up: {deployments: [up]}\ndefault_model: up\n"
        # no embedded job pool: its idle polls would meet the dropped connection first and heal it,
        # and this test is of what a request sees (the pool on a lost store: tests/store/test_jobs.py)
        "jobs: {workers: 0}\n"
    )


@pytest.fixture
def served(pg_url: str, home: Path, upstream: FaultServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("KEEL_TEST_PG", pg_url)
    app = build_app(pg_settings(upstream), home)
    with Store(open_postgres(pg_url)) as admin:
        key, _ = admin.keys.create("acme")
        with RunningServer(app) as server:
            yield server, key, admin, app


def test_everything_lives_in_postgres(served: Any, home: Path) -> None:
    server, key, admin, app = served
    auth = {"authorization": f"Bearer {key}"}
    base = server.base_url
    chat = httpx.post(f"{base}/chat/completions", json={"model": "up", "messages": MSG}, headers=auth, timeout=30)
    assert chat.status_code == 200, chat.text
    trace_id = chat.headers["x-keel-trace-id"]
    assert app.service.writer.flush()
    assert admin.traces.get(trace_id, tenant="acme") is not None  # in Postgres, not in a file under KEEL_HOME
    assert not (home / "keel.db").exists()
    r = httpx.post(f"{base}/feedback", json={"trace_id": trace_id, "name": "helpful", "value": True}, headers=auth)
    assert r.status_code == 201 and len(admin.feedback.for_trace(trace_id, tenant="acme")) == 1
    assert httpx.post(f"{base}/collections", json={"name": "docs"}, headers=auth).status_code == 201
    docs = [{"id": "refunds.md", "kind": "md", "text": "# Refunds\n\nRefunds take five business days."}]
    assert httpx.post(
        f"{base}/collections/docs/documents", json={"documents": docs}, headers=auth, timeout=60
    ).is_success
    hits = httpx.post(f"{base}/collections/docs/search", json={"query": "refund time"}, headers=auth, timeout=60)
    assert hits.json()["data"][0]["doc_id"] == "refunds.md"
    assert admin.db.scalar("SELECT count(*) FROM keel_rag_collections WHERE tenant = 'acme'") == 1
    listed = httpx.get(f"{base}/traces", headers=auth).json()
    assert trace_id in [t["id"] for t in listed["data"]]


def test_postgres_going_away_is_a_503_then_recovers(served: Any) -> None:
    server, key, admin, app = served
    auth = {"authorization": f"Bearer {key}"}
    base = server.base_url
    chat = httpx.post(f"{base}/chat/completions", json={"model": "up", "messages": MSG}, headers=auth, timeout=30)
    trace_id = chat.headers["x-keel-trace-id"]
    assert httpx.post(f"{base}/collections", json={"name": "docs"}, headers=auth).status_code == 201
    docs = [{"id": "refunds.md", "kind": "md", "text": "# Refunds\n\nRefunds take five business days."}]
    assert httpx.post(
        f"{base}/collections/docs/documents", json={"documents": docs}, headers=auth, timeout=60
    ).is_success
    assert app.service.writer.flush()
    admin.db.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
    body = {"trace_id": trace_id, "name": "helpful", "value": True}
    down = httpx.post(f"{base}/feedback", json=body, headers=auth)
    assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"
    assert "password" not in down.text and "Traceback" not in down.text
    search = {"query": "refunds"}
    lost = httpx.post(f"{base}/collections/docs/search", json=search, headers=auth, timeout=30)
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "store_unavailable"
    time.sleep(0.6)
    found = httpx.post(f"{base}/collections/docs/search", json=search, headers=auth, timeout=30)
    assert found.status_code == 200 and found.json()["data"][0]["doc_id"] == "refunds.md"
    again = httpx.post(f"{base}/feedback", json=body, headers=auth)
    assert again.status_code == 201, again.text  # reconnected
    assert httpx.post(f"{base}/chat/completions", json={"model": "up", "messages": MSG}, headers=auth).is_success
    assert app.service.writer.flush(10)
    assert len(admin.traces.find(tenant="acme", operation="chat")) == 2
    # the 2 refusals are traced too: under acme when the key was still cached, under no tenant when the
    # store went away during the key lookup itself (then nobody knows whose the request was)
    refusals = [r for r in admin.traces.find(tenant=None, operation="http", limit=50) if r.http_status == 503]
    assert len(refusals) == 2 and {r.tenant for r in refusals} <= {"acme", "default"}


def test_a_postgres_that_is_down_at_start_stops_the_server_with_a_clear_error(
    home: Path, upstream: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_TEST_PG", "postgresql://keel:s3cret@127.0.0.1:9/keel")
    with pytest.raises(ConfigError) as info:
        build_app(pg_settings(upstream), home)
    message = info.value.message
    assert "127.0.0.1" in message and "store.url" in message and "s3cret" not in message and "***" in message
