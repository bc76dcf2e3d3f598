"""Durable feature jobs over HTTP against `keel serve`'s app on loopback: queued with 202, run by the
embedded worker pool under the job's trace id, read and cancelled within the caller's tenant, and
every bad request refused with the OpenAI error shape."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, new_key
from tests.server.conftest import greet_server


def config(root: Path, url: str) -> str:
    return (
        f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{url}'}}\n"
        "models:\n  up: {deployments: [up]}\njobs: {workers: 2, lease_s: 5}\n"
    )


class Api:
    def __init__(self, server: RunningServer, keys: dict[str, str]) -> None:
        self.server = server
        self.base = server.base_url
        self.keys = keys

    def call(self, method: str, path: str, who: str = "acme", **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kw)

    def wait(self, job_id: str, who: str = "acme", timeout: float = 15) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.call("GET", f"/jobs/{job_id}", who).json()
            if job["status"] not in ("queued", "running"):
                return dict(job)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with greet_server(tmp_path_factory.mktemp("jobs"), config) as (server, home, _):
        yield Api(server, {"acme": new_key(home, "acme")[0], "globex": new_key(home, "globex")[0]})


def test_a_feature_job_is_queued_run_and_read_back_with_its_trace(api: Api) -> None:
    queued = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Ada"}, "user": "u1"})
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["object"] == "job" and body["status"] == "queued" and body["links"]["self"] == f"/v1/jobs/{body['id']}"
    assert queued.headers["location"] == f"/v1/jobs/{body['id']}"
    done = api.wait(body["id"])
    assert done["status"] == "succeeded" and "Ada" in done["result"]["answer"], done
    assert done["progress"] == {"done": 1, "total": 1, "stage": "done"} and done["attempts"] == 1
    assert done["result"]["trace_id"] == body["trace_id"] == queued.headers["x-keel-trace-id"]
    assert api.server.app.service.writer.flush()  # the run's row is written behind the answer
    trace = api.call("GET", f"/traces/{body['trace_id']}")
    assert trace.status_code == 200 and trace.json()["operation"] == "feature"  # the run's row, under the job's id
    assert done["cost_usd"] is not None and done["started"] <= done["finished"]
    metrics = httpx.get(api.base.removesuffix("/v1") + "/metrics").text
    values = dict(line.split(" ", 1) for line in metrics.splitlines() if line.startswith("keel_jobs_"))
    assert float(values["keel_jobs_run"]) >= 1 and "keel_jobs_queued" in values


def test_a_jobs_events_stream_its_progress_until_it_is_done(api: Api) -> None:
    job = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Flo"}}).json()
    events: list[tuple[str, dict[str, Any]]] = []
    auth = {"authorization": f"Bearer {api.keys['acme']}"}
    with httpx.stream("GET", f"{api.base}/jobs/{job['id']}/events", headers=auth, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events and events[-1][0] == "done" and events[-1][1]["status"] == "succeeded"
    assert all(k == "progress" for k, _ in events[:-1]) and len({json.dumps(e) for _, e in events}) == len(events)
    assert "Flo" in events[-1][1]["result"]["answer"]
    assert api.call("GET", "/jobs/job_nope/events").status_code == 404


def test_idempotency_keys_return_the_same_job_or_a_409(api: Api) -> None:
    key = {"idempotency-key": "order-42"}
    first = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Bo"}}, headers=key)
    again = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Bo"}}, headers=key)
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Cy"}}, headers=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    assert "different request" in other.json()["error"]["message"]
    theirs = api.call("POST", "/features/greet/jobs", "globex", json={"inputs": {"name": "Bo"}}, headers=key)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]  # keys are per tenant


def test_jobs_are_their_tenants_and_finished_ones_cannot_be_cancelled(api: Api) -> None:
    job = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Di"}}).json()
    api.wait(job["id"])
    assert api.call("GET", f"/jobs/{job['id']}", "globex").status_code == 404
    assert api.call("POST", f"/jobs/{job['id']}/cancel", "globex").status_code == 404
    late = api.call("POST", f"/jobs/{job['id']}/cancel")
    assert late.status_code == 409 and "already succeeded" in late.json()["error"]["message"]
    mine = api.call("GET", "/jobs?status=succeeded&limit=1").json()
    assert len(mine["data"]) == 1 and mine["next_cursor"] is not None
    rest = api.call("GET", f"/jobs?status=succeeded&cursor={mine['next_cursor']}").json()["data"]
    assert mine["data"][0]["id"] not in {j["id"] for j in rest} and rest
    assert all(j["feature"] == "greet" for j in rest)
    assert api.call("GET", "/jobs", "globex").json()["data"][0]["id"] != job["id"]


def test_a_job_whose_inputs_are_wrong_fails_at_once_with_the_reason(api: Api) -> None:
    job = api.call("POST", "/features/greet/jobs", json={"inputs": {"nom": "Ada"}}).json()
    done = api.wait(job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1 and "name" in done["error"]  # a 4xx: no retry


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "says"),
    [
        ("/features/nope/jobs", {"inputs": {}}, {}, 404, "no feature 'nope'"),
        ("/features/greet/jobs", {"inputs": {}, "stream": True}, {}, 400, "stream"),
        ("/features/greet/jobs", {"inputs": "Ada"}, {}, 400, "inputs"),
        ("/features/greet/jobs", {"inputs": {}}, {"idempotency-key": "k" * 300}, 400, "Idempotency-Key"),
        ("/jobs?limit=0", None, {}, 400, "limit must be 1 to 200"),
        ("/jobs?colour=red", None, {}, 400, "unknown query parameter 'colour'"),
        ("/jobs?status=done", None, {}, 400, "status must be one of"),
        ("/jobs?cursor=%%%", None, {}, 400, "cursor"),
        ("/jobs/job_nope", None, {}, 404, "no job"),
    ],
)
def test_bad_requests_are_precise_errors(
    api: Api, path: str, body: Any, headers: dict[str, str], status: int, says: str
) -> None:
    got = api.call("POST" if body is not None else "GET", path, json=body, headers=headers)
    assert got.status_code == status, got.text
    assert says in got.json()["error"]["message"]


def test_keel_worker_runs_what_a_server_without_workers_queued(tmp_path: Path) -> None:
    """`keel serve` with jobs.workers: 0 only queues; `keel worker`, another process on the same
    store, runs the job; `keel jobs` lists, shows and refuses to cancel it once it is done."""
    import signal
    import subprocess
    import sys

    from tests.cli.test_cli import keel

    def idle(root: Path, url: str) -> str:
        text = config(root, url).replace("jobs: {workers: 2, lease_s: 5}", "jobs: {workers: 0, lease_s: 5}")
        (root / "keel.yaml").write_text(text)
        return text

    with greet_server(tmp_path, idle) as (server, home, _):
        api = Api(server, {"acme": new_key(home, "acme")[0]})
        job = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "Eve"}}).json()
        time.sleep(0.6)
        assert api.call("GET", f"/jobs/{job['id']}").json()["status"] == "queued"  # nobody here runs it
        cfg = str(tmp_path / "project" / "keel.yaml")
        env = {**os.environ, "KEEL_HOME": str(home)}
        worker = subprocess.Popen([sys.executable, "-m", "keel", "worker", "-c", cfg], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            done = api.wait(job["id"], timeout=60)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=30)
        assert done["status"] == "succeeded" and "Eve" in done["result"]["answer"], out
        assert worker.returncode == 0 and "stopped: 1 job(s) run" in out, out
        listed = keel(home, "jobs", "list", "--tenant", "acme", "-c", cfg)
        assert listed.returncode == 0 and job["id"] in listed.stdout and "succeeded" in listed.stdout
        shown = keel(home, "jobs", "show", job["id"], "--tenant", "acme", "-c", cfg)
        assert shown.returncode == 0 and '"status": "succeeded"' in shown.stdout
        refused = keel(home, "jobs", "cancel", job["id"], "--tenant", "acme", "-c", cfg)
        assert refused.returncode != 0 and "already succeeded" in refused.stdout + refused.stderr
        assert keel(home, "jobs", "show", job["id"], "--tenant", "globex", "-c", cfg).returncode != 0


def test_the_cli_queues_runs_and_evals_follows_them_and_retries_a_dead_letter(tmp_path: Path) -> None:
    """`keel run --async --wait` and `keel eval --async` queue into the store `keel serve` runs jobs
    from; `keel jobs tail` draws the progress; `keel jobs retry` gives a failed job a second life;
    `keel webhooks` refuses a loopback endpoint here (webhooks.allow_private is off)."""
    from tests.cli.test_cli import keel

    def written(root: Path, url: str) -> str:
        text = config(root, url)
        (root / "keel.yaml").write_text(text)
        (root / "evals").mkdir()
        (root / "evals" / "greet.yaml").write_text(
            "feature: greet\ncases:\n"
            "  - {id: ada, inputs: {name: Ada}, checks: [{type: icontains, value: ada}]}\n"
            "  - {id: bo, inputs: {name: Bo}, checks: [{type: icontains, value: bo}]}\n"
        )
        return text

    with greet_server(tmp_path, written) as (server, home, _):
        api = Api(server, {"acme": new_key(home, "acme")[0]})
        root = tmp_path / "project"
        cfg = ["-c", str(root / "keel.yaml"), "--tenant", "acme"]
        ran = keel(home, "run", "greet", "-i", "name=Zed", "--async", "--wait", "--root", str(root), *cfg)
        assert ran.returncode == 0 and "queued job job_" in ran.stdout and "Zed" in ran.stdout, ran.stdout + ran.stderr
        assert "succeeded" in ran.stdout
        bad = keel(home, "run", "greet", "--async", "--root", str(root), *cfg)  # no name: the job will fail
        job_id = bad.stdout.split("queued job ")[1].split()[0]
        failed = api.wait(job_id, timeout=30)
        assert failed["status"] == "failed" and "name" in failed["error"], failed
        tailed = keel(home, "jobs", "tail", job_id, *cfg)
        assert tailed.returncode == 1 and f"job {job_id} failed" in tailed.stdout
        again = keel(home, "jobs", "retry", job_id, *cfg)
        assert again.returncode == 0 and "queued again" in again.stdout
        assert api.wait(job_id, timeout=30)["status"] == "failed"  # it fails the same way: a real second run
        assert (
            keel(
                home, "jobs", "retry", api.call("GET", "/jobs?status=succeeded").json()["data"][0]["id"], *cfg
            ).returncode
            != 0
        )
        ev = keel(home, "eval", "greet", "--async", "--root", str(root), *cfg)
        eval_job = ev.stdout.split("queued job ")[1].split()[0]
        done = api.wait(eval_job, timeout=60)
        assert done["status"] == "succeeded" and done["result"]["cases"] == 2 and done["result"]["gate_passed"], done
        assert done["progress"] == {"done": 2, "total": 2, "stage": "cases"}
        refused = keel(home, "webhooks", "secret", "http://127.0.0.1:9/hook", *cfg)
        assert refused.returncode != 0 and "allow_private" in refused.stdout + refused.stderr
        assert "no webhook deliveries" in keel(home, "webhooks", "list", *cfg).stdout
        r = api.call("POST", "/features/greet/jobs", json={"inputs": {"name": "x"}, "webhook": "http://localhost:8/x"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook" and "loopback" in r.text
