"""The Batch API against `keel serve`'s app on loopback, driven by the official `openai` SDK: files
uploaded and read back, batches run by the embedded worker pool through the gateway at the
deployment's batch discount, broken lines and duplicates, cancel and expiry keeping what finished,
and another tenant seeing none of it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import RunningServer, new_key
from tests.server.conftest import greet_server

PRICE = "gpt-4o-mini"


def config(root: Path, url: str) -> str:
    return (
        f"project_root: '{root}'\ndeployments:\n"
        f"  up: {{provider: openai, model: {PRICE}, base_url: '{url}', batch: {{discount: 0.5, max_concurrency: 2}}}}\n"
        "models:\n  up: {deployments: [up]}\njobs: {workers: 2, lease_s: 5}\n"
        "batches: {max_lines: 200, max_file_bytes: 65536}\nwebhooks: {allow_private: true, first_retry_s: 0.2}\n"
    )


class Api:
    def __init__(self, server: RunningServer, keys: dict[str, str]) -> None:
        self.server = server
        self.base = server.base_url
        self.keys = keys

    def sdk(self, who: str = "acme") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base, api_key=self.keys[who], max_retries=0)

    def call(self, method: str, path: str, who: str = "acme", **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kw)

    def wait(self, batch_id: str, who: str = "acme", timeout: float = 30) -> Any:
        client = self.sdk(who)
        deadline = time.time() + timeout
        while time.time() < deadline:
            batch = client.batches.retrieve(batch_id)
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                return batch
            time.sleep(0.05)
        raise AssertionError(f"batch {batch_id} did not end: {batch}")


def lines(n: int, *, start: int = 0, model: str = "up") -> bytes:
    rows = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 20},
        }
        for i in range(start, start + n)
    ]
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def create(api: Api, file_id: str, **extra: Any) -> httpx.Response:
    """POST /v1/batches as plain HTTP, with Keel's extra fields (a webhook) the SDK does not type."""
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra}
    return api.call("POST", "/batches", json=body)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with greet_server(tmp_path_factory.mktemp("batches"), config) as (server, home, upstream):
        api = Api(server, {"acme": new_key(home, "acme")[0], "globex": new_key(home, "globex")[0]})
        api.upstream = upstream  # type: ignore[attr-defined]
        yield api


def test_the_official_sdk_runs_a_batch_end_to_end_at_the_batch_discount(api: Api) -> None:
    client = api.sdk()
    uploaded = client.files.create(file=("in.jsonl", lines(12)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes > 0 and uploaded.filename == "in.jsonl"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status in ("validating", "in_progress") and batch.request_counts.total == 12
    done = api.wait(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 12 and done.request_counts.failed == 0
    assert done.finalizing_at is not None and done.completed_at >= done.in_progress_at
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(f"req-{i}" for i in range(12))
    for o in out:
        assert o["response"]["status_code"] == 200 and o["error"] is None
        assert o["custom_id"].split("-")[1] in o["response"]["body"]["choices"][0]["message"]["content"]
    assert done.error_file_id is None
    # cost at the discount: each line's trace row is priced at half the list price
    assert api.server.app.service.writer.flush()
    raw = api.call("GET", f"/batches/{batch.id}").json()
    trace = api.call("GET", f"/traces/{out[0]['response']['request_id']}").json()
    assert "batch discount" in trace["cost_source"] and trace["cost_usd"] > 0
    prices = api.server.app.service.prices
    from keel.types import Usage

    full = prices.cost(PRICE, Usage(input_tokens=trace["input_tokens"], output_tokens=trace["output_tokens"]))
    assert trace["cost_usd"] == pytest.approx(full * 0.5)
    assert raw["cost_usd"] == pytest.approx(
        sum(api.call("GET", f"/traces/{o['response']['request_id']}").json()["cost_usd"] for o in out)
    )
    listed = client.batches.list(limit=5)
    assert batch.id in [b.id for b in listed.data]


def test_a_broken_line_goes_to_the_error_file_with_its_number_and_the_rest_runs(api: Api) -> None:
    client = api.sdk()
    content = (
        lines(2)
        + b"{not json\n"
        + b'{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
        + lines(1, start=5)
    )
    f = client.files.create(file=("mixed.jsonl", content), purpose="batch")
    done = api.wait(
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h").id
    )
    assert done.status == "completed" and done.request_counts.total == 5
    assert done.request_counts.completed == 3 and done.request_counts.failed == 2
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["error"]["line"] for e in errors] == [3, 4]
    assert "not JSON" in errors[0]["error"]["message"] and "endpoint" in errors[1]["error"]["message"]


def test_bad_batches_are_refused_with_a_precise_message(api: Api) -> None:
    client = api.sdk()
    dup = lines(2) + lines(1)  # req-0 twice
    f = client.files.create(file=("dup.jsonl", dup), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert "req-0" in str(caught.value) and "lines 1, 3" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="endpoint must be one of"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/completions", completion_window="24h")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="soon")  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.APIStatusError) as big:
        client.files.create(file=("big.jsonl", lines(201)), purpose="batch")
    assert big.value.status_code == 413 and "at most 200" in str(big.value)
    with pytest.raises(openai.APIStatusError) as huge:
        client.files.create(file=("huge.jsonl", b"x" * 70_000), purpose="batch")
    assert huge.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("a.jsonl", lines(1)), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.files.create(file=("e.jsonl", b"\n"), purpose="batch")
    r = api.call("POST", "/files", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    r = create(api, f.id, webhook="ftp://x")
    assert r.status_code == 400 and r.json()["error"]["param"] == "webhook"


def test_another_tenant_sees_no_file_or_batch_and_cannot_cancel(api: Api) -> None:
    client = api.sdk()
    f = client.files.create(file=("t.jsonl", lines(1)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    other = api.sdk("globex")
    for call in (
        lambda: other.files.retrieve(f.id),
        lambda: other.files.content(f.id),
        lambda: other.batches.retrieve(b.id),
        lambda: other.batches.cancel(b.id),
        lambda: other.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert b.id not in [x.id for x in other.batches.list().data]
    done = api.wait(b.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(b.id)  # finished: nothing to cancel


def _slow(api: Api, n: int, seconds: float) -> None:
    from keel.testing import Fault

    api.upstream.inject(*[Fault.stall(seconds) for _ in range(n)])  # type: ignore[attr-defined]


def test_a_cancelled_batch_keeps_the_lines_that_finished(api: Api) -> None:
    client = api.sdk()
    _slow(api, 40, 0.15)
    f = client.files.create(file=("slow.jsonl", lines(40)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.time() + 20
    while client.batches.retrieve(b.id).request_counts.completed < 3 and time.time() < deadline:
        time.sleep(0.05)
    cancelling = client.batches.cancel(b.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = api.wait(b.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    kept = client.files.content(done.output_file_id).text.splitlines()
    rest = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert 3 <= len(kept) < 40 and len(kept) + len(rest) == 40
    assert {e["error"]["code"] for e in rest} == {"batch_cancelled"}
    api.upstream.faults.clear()  # type: ignore[attr-defined]


def test_a_batch_past_its_window_ends_expired_with_its_finished_lines_kept(api: Api) -> None:
    client = api.sdk()
    store = api.server.app.store
    _slow(api, 30, 0.15)
    f = client.files.create(file=("exp.jsonl", lines(30)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.time() + 20
    while client.batches.retrieve(b.id).request_counts.completed < 2 and time.time() < deadline:
        time.sleep(0.05)
    store.db.run("UPDATE batches SET expires = ? WHERE id = ?", (time.time(), b.id))  # the window closes now
    done = api.wait(b.id)
    assert done.status == "expired" and done.expired_at is not None
    kept = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    rest = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert kept and all(k["response"]["status_code"] == 200 for k in kept)  # the paid partial output is kept
    assert len(kept) + len(rest) == 30 and {e["error"]["code"] for e in rest} == {"batch_expired"}
    api.upstream.faults.clear()  # type: ignore[attr-defined]


def test_a_batch_no_worker_reached_before_its_window_ends_expired_when_read(api: Api) -> None:
    client = api.sdk()
    store = api.server.app.store
    f = client.files.create(file=("late.jsonl", lines(3)), purpose="batch")
    made = store.batches.create(
        "acme",
        endpoint="/v1/chat/completions",
        input_file_id=f.id,
        completion_window="1h",
        window_s=-1,
        total=3,
        metadata=None,
        key=None,
        reserved_usd=0.0,
    )  # its window already closed, and its job waits an hour: no worker will end it
    job, _ = store.jobs.enqueue("acme", "batch", {"batch_id": made.id}, run_after=time.time() + 3600)
    store.batches.attach(made.id, job.id)
    seen = client.batches.retrieve(made.id)
    assert seen.status == "expired" and seen.output_file_id is None and seen.error_file_id is not None
    rest = [json.loads(x) for x in client.files.content(seen.error_file_id).text.splitlines()]
    assert [r["custom_id"] for r in rest] == ["req-0", "req-1", "req-2"]
    assert store.jobs.get(job.id, tenant=None).status == "cancelled"  # type: ignore[union-attr]


class Receiver:
    """A webhook endpoint on loopback: records each delivery; answers the queued statuses first."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.answers.pop(0) if outer.answers else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/keel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while len(self.got) < n and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.got) >= n, f"{len(self.got)} of {n} deliveries arrived"


def test_webhooks_are_signed_retried_until_delivered_and_shown_on_the_job(api: Api) -> None:
    from standardwebhooks import Webhook

    hook = Receiver()
    hook.answers = [503, 500]  # two failures, then the default 204
    from keel import Client

    client = Client(api.base, api.keys["acme"])
    job = client.submit("greet", name="Hook", webhook=hook.url, idempotency_key="hook-1")
    assert job.wait(timeout=20).answer and "Hook" in job.wait().answer
    hook.wait(3)
    secret = api.server.app.store.webhooks.secret("acme", hook.url)
    headers, body = hook.got[-1]
    event = Webhook(secret).verify(body, headers)  # raises unless signed with the endpoint's secret
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
    assert len({h["webhook-id"] for h, _ in hook.got}) == 1  # one event, three attempts, one id
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)  # another secret does not verify
    shown = api.call("GET", f"/jobs/{job.id}").json()["webhook"]
    [delivery] = shown["deliveries"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert [a["status"] for a in delivery["log"]] == [503, 500, 204]
    metrics = httpx.get(api.base.removesuffix("/v1") + "/metrics").text
    values = dict(line.split(" ", 1) for line in metrics.splitlines() if line.startswith("keel_webhook"))
    assert float(values["keel_webhooks_delivered"]) >= 1 and float(values["keel_webhook_failures"]) >= 2
    hook.server.shutdown()


def test_a_batch_webhook_says_how_the_batch_ended(api: Api) -> None:
    from standardwebhooks import Webhook

    hook = Receiver()
    client = api.sdk()
    f = client.files.create(file=("hook.jsonl", lines(2)), purpose="batch")
    r = create(api, f.id, webhook=hook.url)
    assert r.status_code == 200, r.text
    api.wait(r.json()["id"])
    hook.wait(1)
    headers, body = hook.got[0]
    event = Webhook(api.server.app.store.webhooks.secret("acme", hook.url)).verify(body, headers)
    assert event["type"] == "batch.completed" and event["data"]["result"]["batch_id"] == r.json()["id"]
    hook.server.shutdown()


def test_the_sdk_follows_a_job_and_an_ingest_job_reports_documents(api: Api) -> None:
    from keel import Client, JobFailed

    client = Client(api.base, api.keys["acme"])
    job = client.submit("greet", inputs={"name": "Progress"})
    result = job.wait(timeout=20)
    assert "Progress" in result.answer and job.progress().done == job.progress().total == 1
    assert [e.type for e in client.job(job.id).events()][-1] == "done"
    assert client.job(job.id).status == "succeeded"
    assert api.call("POST", "/collections", json={"name": "manuals"}).status_code == 201
    docs = [{"id": f"m{i}.md", "kind": "md", "text": f"# Manual {i}\n\nPart {i} fits slot {i}."} for i in range(6)]
    queued = api.call("POST", "/collections/manuals/documents", json={"documents": docs, "async": True})
    assert queued.status_code == 202, queued.text
    ingest = client.job(queued.json()["id"])
    report = ingest.wait(timeout=20)  # an ingest job's result is its ingest report
    assert report["chunks"] >= 6 and report["skipped"] == []
    final = ingest.data
    assert final["status"] == "succeeded" and sorted(final["result"]["indexed"]) == sorted(d["id"] for d in docs)
    assert final["progress"] == {"done": 6, "total": 6, "stage": "documents"}
    found = api.call("POST", "/collections/manuals/search", json={"query": "slot 3"}).json()
    assert found["data"][0]["doc_id"] == "m3.md"
    failing = client.submit("greet", inputs={})  # a required input missing: the job fails, and says why
    with pytest.raises(JobFailed) as caught:
        failing.wait(timeout=20)
    assert caught.value.job["status"] == "failed" and "name" in str(caught.value)
