"""Tenants never see or change each other's data, on any route.

The matrix below is checked against the app's own route table: a route that is added without a
row here fails ``test_every_route_is_in_the_matrix``, so no route can skip the isolation check.
Each row sends tenant B's key at tenant A's object and says what B must get (404 for an object,
an empty view for a list); afterwards A's objects are checked unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.routing import Route

from keel.server import build_app
from keel.store import Store, db_path
from keel.testing import FaultServer
from tests.conftest import RunningServer, greet_project, make_settings, new_key


@dataclass
class World:
    base: str
    keys: dict[str, str]  # "a", "b", "a_ingest", "a_reviewer", "admin"
    trace_id: str = ""
    job_id: str = ""
    file_id: str = ""
    batch_id: str = ""
    review_id: str = ""
    routes: list[Route] = field(default_factory=list)
    home: Path = Path(".")
    app: Any = None

    def call(self, who: str, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base}{path}",
            json=body,
            headers={"authorization": f"Bearer {self.keys[who]}", **headers},
            timeout=60,
        )


@pytest.fixture
def world(tmp_path: Path, home: Path, upstream: FaultServer) -> Iterator[World]:
    root = greet_project(tmp_path / "project")
    (root / "features" / "vip.yaml").write_text("prompt: greet\nmodel: up\ntenants: [acme]\n")
    (root / "features" / "checked.yaml").write_text(
        "prompt: greet\nmodel: up\nreview: {sample: 1, mode: hold, queue: desk}\n"
    )
    settings = make_settings(
        f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, "
        f"base_url: '{upstream.base_url}'}}\nmodels:\n  up: {{deployments: [up]}}\ndefault_model: up\n"
    )
    app = build_app(settings, home)
    keys = {
        "a": new_key(home, "acme")[0],
        "b": new_key(home, "globex")[0],
        "a_ingest": new_key(home, "acme", role="ingest")[0],
        "a_reviewer": new_key(home, "acme", role="reviewer")[0],
        "admin": new_key(home, "ops", role="admin")[0],
    }
    with RunningServer(app) as server:
        routes = [r for r in app.asgi.routes if isinstance(r, Route)]
        w = World(server.base_url, keys, routes=routes, home=home, app=app)
        assert w.call("a", "POST", "/collections", {"name": "docs"}).status_code == 201
        docs = [{"id": "refunds.md", "kind": "md", "text": "# Refunds\n\nRefunds take five business days."}]
        assert w.call("a", "POST", "/collections/docs/documents", {"documents": docs}).status_code == 200
        chat = w.call(
            "a", "POST", "/chat/completions", {"model": "up", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 200
        w.trace_id = chat.headers["x-keel-trace-id"]
        assert app.service.writer.flush()
        assert (
            w.call("a", "POST", "/feedback", {"trace_id": w.trace_id, "name": "helpful", "value": True}).status_code
            == 201
        )
        job = w.call("a", "POST", "/features/greet/jobs", {"inputs": {"name": "acme"}}, **{"idempotency-key": "k1"})
        assert job.status_code == 202
        w.job_id = job.json()["id"]
        line = {
            "custom_id": "acme-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "up", "messages": MSG},
        }
        auth = {"authorization": f"Bearer {keys['a']}"}
        upload = httpx.post(
            f"{w.base}/files", headers=auth, data={"purpose": "batch"},
            files={"file": ("acme.jsonl", orjson.dumps(line) + b"\n")}, timeout=30,
        )  # fmt: skip
        assert upload.status_code == 200, upload.text
        w.file_id = upload.json()["id"]
        batch = w.call(
            "a",
            "POST",
            "/batches",
            {"input_file_id": w.file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        )
        assert batch.status_code == 200, batch.text
        w.batch_id = batch.json()["id"]
        held = w.call("a", "POST", "/features/checked/run", {"inputs": {"name": "acme"}})
        assert held.status_code == 202, held.text
        w.review_id = held.json()["result"]["review"]["item"]
        yield w


def _not_found(r: httpx.Response) -> None:
    assert r.status_code == 404, r.text
    assert "acme" not in r.text and "refunds" not in r.text.lower()


def _own_empty_view(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert "acme" not in r.text and "refunds" not in r.text.lower() and "docs" not in r.text


def _own_traces_only(w: World, r: httpx.Response) -> None:
    """B sees its own traces — its refused probes of A's objects among them, which echo only what B
    sent — and nothing of A's: no A trace, no A content."""
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    assert all(t["tenant"] == "globex" for t in rows)
    assert w.trace_id not in [t["id"] for t in rows] and "five business days" not in r.text
    for t in rows:  # A's trace id may appear only where B's own probe of it is echoed back to B
        assert w.trace_id not in orjson.dumps({k: v for k, v in t.items() if k != "error"}).decode()


MSG = [{"role": "user", "content": "hello"}]
Row = Callable[[World], None]


def _chat(w: World) -> None:  # no tenant object to reach: B's call is B's trace (checked below), not A's
    r = w.call("b", "POST", "/chat/completions", {"model": "up", "messages": MSG})
    assert r.status_code == 200 and r.headers["x-keel-trace-id"] != w.trace_id


def _embeddings(w: World) -> None:
    r = w.call("b", "POST", "/embeddings", {"model": "all-minilm-l6-v2", "input": ["x"]})
    assert r.status_code == 200 and r.headers["x-keel-trace-id"] != w.trace_id, r.text


def _models(w: World) -> None:
    assert w.call("b", "GET", "/models").status_code == 200


MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/v1/collections"): lambda w: _own_empty_view(w.call("b", "GET", "/collections")),
    ("POST", "/v1/collections"): lambda w: None,  # checked in test_creating_a_same_named_collection_is_separate
    ("GET", "/v1/collections/{name}/documents"): lambda w: _not_found(
        w.call("b", "GET", "/collections/docs/documents")
    ),
    ("POST", "/v1/collections/{name}/documents"): lambda w: _not_found(
        w.call("b", "POST", "/collections/docs/documents", {"documents": [{"id": "refunds.md", "text": "pwned"}]})
    ),
    ("DELETE", "/v1/collections/{name}/documents/{doc_id:path}"): lambda w: _not_found(
        w.call("b", "DELETE", "/collections/docs/documents/refunds.md")
    ),
    ("POST", "/v1/collections/{name}/search"): lambda w: _not_found(
        w.call("b", "POST", "/collections/docs/search", {"query": "refunds"})
    ),
    ("POST", "/v1/feedback"): lambda w: _not_found(
        w.call("b", "POST", "/feedback", {"trace_id": w.trace_id, "name": "helpful", "value": False})
    ),
    ("GET", "/v1/traces"): lambda w: _own_traces_only(w, w.call("b", "GET", "/traces?feature=&limit=200")),
    ("GET", "/v1/traces/{trace_id}"): lambda w: _not_found(w.call("b", "GET", f"/traces/{w.trace_id}")),
    ("POST", "/v1/features/{name}/run"): lambda w: _not_found(
        w.call("b", "POST", "/features/vip/run", {"inputs": {"name": "x"}})
    ),
    ("POST", "/v1/features/{name}/jobs"): lambda w: _not_found(
        w.call("b", "POST", "/features/vip/jobs", {"inputs": {"name": "x"}})
    ),
    ("GET", "/v1/jobs"): lambda w: _own_empty_view(w.call("b", "GET", "/jobs")),
    ("GET", "/v1/jobs/{job_id}"): lambda w: _not_found(w.call("b", "GET", f"/jobs/{w.job_id}")),
    ("GET", "/v1/jobs/{job_id}/events"): lambda w: _not_found(w.call("b", "GET", f"/jobs/{w.job_id}/events")),
    ("POST", "/v1/jobs/{job_id}/cancel"): lambda w: _not_found(w.call("b", "POST", f"/jobs/{w.job_id}/cancel")),
    ("GET", "/v1/files"): lambda w: _own_empty_view(w.call("b", "GET", "/files")),
    ("POST", "/v1/files"): lambda w: None,  # B's upload is B's file: test_batches_http checks B cannot read A's
    ("GET", "/v1/files/{file_id}"): lambda w: _not_found(w.call("b", "GET", f"/files/{w.file_id}")),
    ("DELETE", "/v1/files/{file_id}"): lambda w: _not_found(w.call("b", "DELETE", f"/files/{w.file_id}")),
    ("GET", "/v1/files/{file_id}/content"): lambda w: _not_found(w.call("b", "GET", f"/files/{w.file_id}/content")),
    ("GET", "/v1/batches"): lambda w: _own_empty_view(w.call("b", "GET", "/batches")),
    ("POST", "/v1/batches"): lambda w: _not_found(
        w.call(
            "b",
            "POST",
            "/batches",
            {"input_file_id": w.file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        )
    ),
    ("GET", "/v1/batches/{batch_id}"): lambda w: _not_found(w.call("b", "GET", f"/batches/{w.batch_id}")),
    ("POST", "/v1/batches/{batch_id}/cancel"): lambda w: _not_found(
        w.call("b", "POST", f"/batches/{w.batch_id}/cancel")
    ),
    ("GET", "/v1/review/items"): lambda w: _own_empty_view(w.call("b", "GET", "/review/items")),
    ("POST", "/v1/review/items"): lambda w: _not_found(
        w.call("b", "POST", "/review/items", {"trace_id": w.trace_id, "queue": "desk"})
    ),
    ("GET", "/v1/review/items/{item_id}"): lambda w: _not_found(w.call("b", "GET", f"/review/items/{w.review_id}")),
    ("POST", "/v1/review/items/{item_id}/claim"): lambda w: _not_found(
        w.call("b", "POST", f"/review/items/{w.review_id}/claim")
    ),
    ("POST", "/v1/review/items/{item_id}/release"): lambda w: _not_found(
        w.call("b", "POST", f"/review/items/{w.review_id}/release")
    ),
    ("POST", "/v1/review/items/{item_id}/decision"): lambda w: _not_found(
        w.call("b", "POST", f"/review/items/{w.review_id}/decision", {"action": "reject"})
    ),
    ("POST", "/v1/review/queues/{queue}/claim"): lambda w: _not_found(w.call("b", "POST", "/review/queues/desk/claim")),
    ("GET", "/v1/review/stats"): lambda w: _own_empty_view(w.call("b", "GET", "/review/stats")),
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/v1/embeddings"): _embeddings,
    ("GET", "/v1/models"): _models,
}
TENANT_FREE = {  # routes that hold no tenant data, with the reason
    ("GET", "/healthz"): "liveness only",
    ("GET", "/metrics"): "process counters, no tenant data",
    ("GET", "/openapi.json"): "the API contract: routes and body schemas, no tenant data",
}


def test_every_route_is_in_the_matrix(world: World) -> None:
    served = {(m, r.path) for r in world.routes for m in (r.methods or set()) if m != "HEAD"}
    served = {(m, p) for m, p in served if not p.startswith("/ui")}  # the dashboard: tests/server/test_dashboard.py
    missing = served - set(MATRIX) - set(TENANT_FREE)
    assert not missing, f"routes without a cross-tenant check: {sorted(missing)}"
    assert set(MATRIX) <= served, f"matrix rows for routes that no longer exist: {sorted(set(MATRIX) - served)}"


def test_tenant_b_reaches_nothing_of_tenant_a(world: World) -> None:
    for (method, path), row in MATRIX.items():
        try:
            row(world)
        except AssertionError as exc:
            raise AssertionError(f"{method} {path}: {exc}") from None
    # …and A's objects are exactly as they were
    listed = world.call("a", "GET", "/collections/docs/documents").json()["data"]
    assert [d["doc_id"] for d in listed] == ["refunds.md"]
    hits = world.call("a", "POST", "/collections/docs/search", {"query": "how long do refunds take"}).json()["data"]
    assert "five business days" in hits[0]["text"]
    shown = world.call("a", "GET", f"/traces/{world.trace_id}").json()
    assert shown["tenant"] == "acme" and [f["value"] for f in shown["feedback"]] == [1.0]
    assert world.call("a", "POST", "/features/vip/run", {"inputs": {"name": "x"}}).status_code == 200
    job = world.call("a", "GET", f"/jobs/{world.job_id}").json()
    assert job["status"] != "cancelled" and not job["cancel_requested"]  # B's cancel reached nothing
    item = world.call("a_reviewer", "GET", f"/review/items/{world.review_id}").json()
    assert item["status"] == "pending" and item["decision"] is None  # B's claims and decisions reached nothing
    assert world.app.service.writer.flush()
    with Store.at(db_path(world.home)) as store:
        by_tenant = {(t.tenant, t.operation) for t in store.traces.find(tenant=None, limit=100)}
    assert {("globex", "chat"), ("globex", "embeddings")} <= by_tenant  # B's calls are B's, counted for B
    assert ("acme", "embeddings") not in by_tenant


def test_creating_a_same_named_collection_is_separate(world: World) -> None:
    r = world.call("b", "POST", "/collections", {"name": "docs", "rerank": "llm"})
    assert r.status_code == 201 and r.json()["name"] == "docs" and r.json()["rerank"] == "llm"
    docs = [{"id": "refunds.md", "kind": "md", "text": "# Refunds\n\nGlobex never refunds."}]
    assert world.call("b", "POST", "/collections/docs/documents", {"documents": docs}).status_code == 200
    a_hits = world.call("a", "POST", "/collections/docs/search", {"query": "refunds"}).json()["data"]
    assert [h["text"] for h in a_hits] == ["Refunds take five business days."]  # A's reranker is still none
    names = [c["name"] for c in world.call("b", "GET", "/collections").json()["data"]]
    assert names == ["docs"]


def test_roles_limit_what_a_key_may_do(world: World) -> None:
    assert world.call("a_ingest", "GET", "/collections/docs/documents").status_code == 200
    r = world.call("a_ingest", "POST", "/chat/completions", {"model": "up", "messages": MSG})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert world.call("a_ingest", "POST", "/collections/docs/search", {"query": "x"}).status_code == 403
    assert world.call("a_reviewer", "POST", "/chat/completions", {"model": "up", "messages": MSG}).status_code == 403


def test_only_admins_act_for_another_tenant(world: World) -> None:
    r = world.call("b", "GET", "/traces", **{"x-keel-tenant": "acme"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    assert world.call("b", "GET", "/traces?tenant=acme").status_code == 400
    as_acme = world.call("admin", "GET", "/traces", **{"x-keel-tenant": "acme"}).json()["data"]
    assert world.trace_id in [t["id"] for t in as_acme]
    everyone = world.call("admin", "GET", "/traces?tenant=*&limit=200").json()["data"]
    assert {"acme"} <= {t["tenant"] for t in everyone}
    assert world.call("admin", "GET", "/collections/docs/documents", **{"x-keel-tenant": "acme"}).status_code == 200


def test_a_deleted_tenants_keys_stop_working(world: World) -> None:
    with Store.at(db_path(world.home)) as store:
        assert store.keys.delete_tenant("globex") == 1
    auth = world.app.authenticate
    now = auth.clock()
    auth.clock = lambda: now + 1.1  # past the key lookup cache, without sleeping
    r = world.call("b", "GET", "/models")
    assert r.status_code == 401
