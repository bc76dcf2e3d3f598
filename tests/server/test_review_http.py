"""The review queue over HTTP against `keel serve`'s app on loopback: a held run answers 202 with a
job awaiting review, a reviewer claims and decides it, and the job ends with the approved, edited or
fallback answer; `after` runs are served and queued; claims and decisions race safely; another
tenant's reviewer sees nothing; bad requests get the OpenAI error shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.sdk import Client
from tests.conftest import new_key
from tests.server.conftest import greet_server
from tests.server.test_jobs_http import Api as JobsApi


def config(root: Path, url: str) -> str:
    (root / "features" / "careful.yaml").write_text(
        "prompt: greet\nmodel: up\n"
        "review: {when: [{type: contains, value: Hold}], mode: hold, queue: support, sla_minutes: 30,\n"
        "         message: 'A person checks this first', fallback: 'Sorry, ask again later.'}\n"
    )
    (root / "features" / "relaxed.yaml").write_text(
        "prompt: greet\nmodel: up\nreview: {sample: 1.0, mode: after, queue: support}\n"
    )
    (root / "features" / "quick.yaml").write_text(
        "prompt: greet\nmodel: up\nreview: {when: [{type: contains, value: Hold}], mode: hold, queue: fast,\n"
        "         sla_minutes: 0.001, on_timeout: fallback}\n"
    )
    return (
        f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{url}'}}\n"
        "models:\n  up: {deployments: [up]}\njobs: {workers: 2, lease_s: 5}\n"
        "review: {sweep_s: 0.2, claim_minutes: 0.05, queues: {support: {webhook: 'https://hooks.example.com/review'}}}\n"
    )


class Api(JobsApi):
    def held(self, name: str = "Hold Ada", feature: str = "careful") -> dict[str, Any]:
        r = self.call("POST", f"/features/{feature}/run", json={"inputs": {"name": name}})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def item_of(self, job: dict[str, Any], who: str = "reviewer") -> dict[str, Any]:
        item_id = job["result"]["review"]["item"]
        r = self.call("GET", f"/review/items/{item_id}", who)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with greet_server(tmp_path_factory.mktemp("review"), config) as (server, home, _):
        keys = {
            "acme": new_key(home, "acme")[0],
            "reviewer": new_key(home, "acme", role="reviewer")[0],
            "second": new_key(home, "acme", role="reviewer")[0],
            "globex": new_key(home, "globex", role="reviewer")[0],
            "ingest": new_key(home, "acme", role="ingest")[0],
            "admin": new_key(home, "acme", role="admin")[0],
        }
        yield Api(server, keys)


def test_a_held_answer_waits_for_a_person_and_is_served_once_approved(api: Api) -> None:
    job = api.held()
    assert job["status"] == "awaiting_review" and job["message"] == "A person checks this first"
    assert "answer" not in json.dumps(job["result"]) or job["result"].get("answer") is None  # nothing served yet
    item = api.item_of(job)
    assert item["status"] == "pending" and item["mode"] == "hold" and item["queue"] == "support"
    assert "Hold Ada" in item["item"]["answer"] and item["reason"] == "contains" and item["job_id"] == job["id"]
    assert item["item"]["prompt_version"] >= 1 and item["item"]["model"] == "up"
    claimed = api.call("POST", f"/review/items/{item['id']}/claim", "reviewer")
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed", claimed.text
    decided = api.call("POST", f"/review/items/{item['id']}/decision", "reviewer", json={"action": "approve"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided" and decided.json()["decision"]["action"] == "approve"
    done = api.call("GET", f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded" and "Hold Ada" in done["result"]["answer"], done
    assert any("approved by" in n for n in done["result"]["notes"])
    assert api.server.app.service.writer.flush()
    feedback = api.server.app.store.feedback.for_trace(job["trace_id"], tenant="acme")
    assert [(f.name, f.label, f.value) for f in feedback] == [("review", "approve", 1.0)]
    assert feedback[0].correction is not None and "Hold Ada" in feedback[0].correction


def test_an_edit_is_served_and_a_reject_serves_the_fallback(api: Api) -> None:
    edited, rejected = api.held("Hold Bo"), api.held("Hold Cy")
    for job, body in ((edited, {"action": "edit", "output": "Hello Bo, welcome."}), (rejected, {"action": "reject"})):
        item = api.item_of(job)
        assert api.call("POST", f"/review/items/{item['id']}/claim", "reviewer").status_code == 200
        r = api.call("POST", f"/review/items/{item['id']}/decision", "reviewer", json={**body, "reason": "why not"})
        assert r.status_code == 200, r.text
    assert api.call("GET", f"/jobs/{edited['id']}").json()["result"]["answer"] == "Hello Bo, welcome."
    assert api.call("GET", f"/jobs/{rejected['id']}").json()["result"]["answer"] == "Sorry, ask again later."


def test_the_sdk_waits_through_the_review(api: Api) -> None:
    client = Client(api.base, api_key=api.keys["acme"])
    result = client.run("careful", name="Hold Di")
    assert result.held and result.job_id and result.answer == "A person checks this first"
    job = client.job(result.job_id)
    assert job.status == "awaiting_review"
    item = api.item_of(job.data)
    api.call("POST", f"/review/items/{item['id']}/claim", "reviewer")
    api.call("POST", f"/review/items/{item['id']}/decision", "reviewer", json={"action": "edit", "output": "Hi Di"})
    assert job.wait(timeout=10).answer == "Hi Di"


def test_an_answer_reviewed_after_is_served_at_once_and_queued(api: Api) -> None:
    r = api.call("POST", "/features/relaxed/run", json={"inputs": {"name": "Eve"}})
    assert r.status_code == 200 and "Eve" in r.json()["answer"], r.text
    assert r.json()["review"]["mode"] == "after" and r.json()["review"]["sampled"] is True
    listed = api.call("GET", "/review/items?queue=support&status=pending", "reviewer").json()["data"]
    mine = [i for i in listed if i["trace_id"] == r.json()["trace_id"]]
    assert len(mine) == 1 and mine[0]["mode"] == "after" and mine[0]["job_id"] is None


def test_a_feature_job_is_held_too(api: Api) -> None:
    queued = api.call("POST", "/features/careful/jobs", json={"inputs": {"name": "Hold Fay"}}).json()
    deadline = time.time() + 15
    while (job := api.call("GET", f"/jobs/{queued['id']}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "awaiting_review" and job["progress"]["stage"] == "awaiting review", job
    item = api.item_of(job)
    assert item["trace_id"] == queued["trace_id"]
    api.call("POST", f"/review/items/{item['id']}/claim", "reviewer")
    api.call("POST", f"/review/items/{item['id']}/decision", "reviewer", json={"action": "approve"})
    assert api.call("GET", f"/jobs/{queued['id']}").json()["status"] == "succeeded"


def test_two_reviewers_never_hold_one_item_and_one_decision_wins(api: Api) -> None:
    item = api.item_of(api.held("Hold Gus"))
    path = f"/review/items/{item['id']}"
    assert api.call("POST", f"{path}/claim", "reviewer").status_code == 200
    taken = api.call("POST", f"{path}/claim", "second")
    assert taken.status_code == 409 and "claimed by" in taken.json()["error"]["message"]
    other = api.call("POST", f"{path}/decision", "second", json={"action": "reject"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "review_conflict"
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: api.call("POST", f"{path}/decision", "reviewer", json={"action": "approve"}), range(8))
        )
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7
    again = api.call("POST", f"{path}/claim", "second")
    assert again.status_code == 409 and "already decided" in again.json()["error"]["message"]


def test_a_claim_runs_out_and_a_decision_on_it_is_refused(api: Api) -> None:
    item = api.item_of(api.held("Hold Hal"))
    path = f"/review/items/{item['id']}"
    assert api.call("POST", f"{path}/claim", "reviewer").status_code == 200
    time.sleep(3.2)  # review.claim_minutes is 0.05 here
    late = api.call("POST", f"{path}/decision", "reviewer", json={"action": "approve"})
    assert late.status_code == 409 and "ran out" in late.json()["error"]["message"], late.text
    assert api.call("POST", f"{path}/claim", "second").status_code == 200  # free for the next reviewer


def test_a_held_answer_past_its_sla_is_served_as_on_timeout_says(api: Api) -> None:
    job = api.held("Hold Ivy", feature="quick")  # sla_minutes 0.001, on_timeout: fallback
    deadline = time.time() + 10
    while (now := api.call("GET", f"/jobs/{job['id']}").json())["status"] == "awaiting_review":
        assert time.time() < deadline, now
        time.sleep(0.1)
    assert now["status"] == "succeeded" and "Hold Ivy" not in now["result"]["answer"], now
    item = api.item_of(job)
    assert item["status"] == "expired" and item["breached"] is True
    stats = api.call("GET", "/review/stats?queue=fast", "reviewer").json()["data"][0]
    assert stats["sla_breaches"] >= 1 and stats["expired"] >= 1


def test_cancelling_a_held_job_takes_its_item_out_of_the_queue(api: Api) -> None:
    job = api.held("Hold Jo")
    cancelled = api.call("POST", f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    item = api.item_of(job)
    assert item["status"] == "expired"
    refused = api.call("POST", f"/review/items/{item['id']}/claim", "reviewer")
    assert refused.status_code == 409


def test_a_reviewer_of_another_tenant_sees_nothing(api: Api) -> None:
    item = api.item_of(api.held("Hold Kai"))
    for method, path in (
        ("GET", f"/review/items/{item['id']}"),
        ("POST", f"/review/items/{item['id']}/claim"),
        ("POST", f"/review/items/{item['id']}/decision"),
    ):
        r = api.call(method, path, "globex", json={"action": "approve"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "review_item_not_found", r.text
    assert all(i["id"] != item["id"] for i in api.call("GET", "/review/items", "globex").json()["data"])
    assert api.call("GET", "/review/items", "ingest").status_code == 403
    assert api.call("GET", f"/traces/{item['trace_id']}", "reviewer").status_code == 403  # no trace access needed


def test_bad_review_requests_are_refused_clearly(api: Api) -> None:
    item = api.item_of(api.held("Hold Lu"))
    path = f"/review/items/{item['id']}"
    assert api.call("POST", f"{path}/claim", "reviewer").status_code == 200
    cases = [
        ({"action": "maybe"}, "action"),
        ({"action": "edit"}, "output"),
        ({"action": "approve", "output": "x"}, "output"),
        ({"action": "approve", "labels": ["x"]}, "labels"),
        ({"action": "approve", "colour": "red"}, "colour"),
    ]
    for body, param in cases:
        r = api.call("POST", f"{path}/decision", "reviewer", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    r = api.call("POST", f"{path}/decision", "reviewer", content=b"[1, 2")
    assert r.status_code == 400
    assert api.call("GET", "/review/items?queue=nope", "reviewer").status_code == 404
    assert api.call("GET", "/review/items?status=done", "reviewer").status_code == 400
    assert api.call("GET", "/review/items?cursor=zzz", "reviewer").status_code == 400
    assert api.call("GET", "/review/items/rev_missing", "reviewer").status_code == 404
    added = api.call("POST", "/review/items", json={"trace_id": "0" * 32, "queue": "support"})
    assert added.status_code == 404
    assert api.call("POST", "/review/items", json={"trace_id": item["trace_id"], "queue": "nope"}).status_code == 404


def test_a_run_is_sent_to_review_by_hand_once(api: Api) -> None:
    run = api.call("POST", "/features/greet/run", json={"inputs": {"name": "Mo"}}).json()
    assert api.server.app.service.writer.flush()
    first = api.call("POST", "/review/items", json={"trace_id": run["trace_id"], "queue": "support"})
    assert first.status_code == 201 and first.json()["reason"] == "sent by hand", first.text
    again = api.call("POST", "/review/items", json={"trace_id": run["trace_id"], "queue": "support"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # never re-added
    assert api.call("POST", "/review/items", "reviewer", json={"trace_id": run["trace_id"]}).status_code == 403


def test_the_next_item_of_a_queue_is_claimed_oldest_first(api: Api) -> None:
    api.held("Hold Ned")
    r = api.call("POST", "/review/queues/support/claim", "second")
    assert r.status_code == 200 and r.json()["status"] == "claimed", r.text
    assert r.json()["claimed_by"] == r.json()["claimed_by"]
    first_open = api.call("GET", "/review/items?queue=support&status=pending&limit=1", "second").json()["data"]
    assert not first_open or first_open[0]["created"] >= r.json()["created"]


def test_review_metrics_are_on_metrics(api: Api) -> None:
    text = httpx.get(api.base.removesuffix("/v1") + "/metrics").text
    values = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("keel_review_"))
    assert float(values["keel_review_decisions"]) >= 1 and "keel_review_open" in values


def test_open_monitor_alerts_are_labelled_series_on_metrics(api: Api) -> None:
    monitors = api.server.app.store.monitors
    assert monitors.open_alert("acme", "greet", 'quality/guard:"grounded"', "greet: grounded 0.91 → 0.78", {})
    text = httpx.get(api.base.removesuffix("/v1") + "/metrics").text
    assert "# TYPE keel_monitor_alert gauge" in text
    assert 'keel_monitor_alert{tenant="acme",feature="greet",signal="quality/guard:\\"grounded\\""} 1' in text
    monitors.close_alert("acme", "greet", 'quality/guard:"grounded"')
    assert "keel_monitor_alert{" not in httpx.get(api.base.removesuffix("/v1") + "/metrics").text


def test_a_queue_webhook_hears_of_new_items_in_the_outbox(api: Api) -> None:
    item = api.item_of(api.held("Hold Ozzy"))
    found = api.server.app.store.webhooks.find(tenant="acme", subject=item["id"])
    assert [d.event for d in found] == ["review.item.created"]
    assert found[0].url == "https://hooks.example.com/review" and found[0].payload["data"]["queue"] == "support"
    quick = api.item_of(api.held("Hold Pam", feature="quick"))  # queue "fast" has no webhook
    assert api.server.app.store.webhooks.find(tenant="acme", subject=quick["id"]) == []


def test_a_reviewer_sees_the_answer_as_traces_keep_it_and_an_admin_raw(api: Api) -> None:
    job = api.held("Hold ada@example.com")
    seen = api.item_of(job)
    assert "ada@example.com" not in json.dumps(seen) and "[EMAIL]" in seen["item"]["answer"]
    raw = api.item_of(job, who="admin")  # review.raw_roles: [admin] by default
    assert "ada@example.com" in raw["item"]["answer"] and raw["item"]["raw"] is True


def test_a_held_stream_ends_with_its_job_and_no_answer(api: Api) -> None:
    auth = {"authorization": f"Bearer {api.keys['acme']}"}
    body = {"inputs": {"name": "Hold Quin"}, "stream": True}
    with httpx.stream("POST", f"{api.base}/features/careful/run", headers=auth, json=body, timeout=30) as r:
        assert r.status_code == 200
        events = [line.removeprefix("event: ") for line in r.iter_lines() if line.startswith("event: ")]
    assert events == ["started", "held"]


def test_a_cancelled_held_job_retried_by_hand_is_served_not_queued_again(api: Api) -> None:
    queued = api.call("POST", "/features/careful/jobs", json={"inputs": {"name": "Hold Ray"}}).json()
    deadline = time.time() + 15
    while api.call("GET", f"/jobs/{queued['id']}").json()["status"] != "awaiting_review":
        assert time.time() < deadline
        time.sleep(0.05)
    assert api.call("POST", f"/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    api.server.app.store.jobs.retry(queued["id"], tenant="acme")
    api.server.app.jobs.nudge()
    while (job := api.call("GET", f"/jobs/{queued['id']}").json())["status"] in ("queued", "running"):
        assert time.time() < deadline + 15, job
        time.sleep(0.05)
    assert job["status"] == "succeeded" and "Hold Ray" in job["result"]["answer"], job  # its trace was reviewed once
    items = api.call("GET", "/review/items?status=expired&limit=200", "reviewer").json()["data"]
    assert [i["status"] for i in items if i["trace_id"] == queued["trace_id"]] == ["expired"]
