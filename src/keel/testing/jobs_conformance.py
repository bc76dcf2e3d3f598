"""The job queue's conformance suite: every store backend passes the same tests (``tests/store/
test_jobs.py`` runs it on SQLite and on a real Postgres). Subclass it and give an ``opener`` fixture.

It covers claiming (priority, readiness, expiry, no job claimed twice by racing workers), leases
(heartbeats, a lost lease that can no longer write), retries with backoff and dead letters, the
reaper, cancelling, idempotency keys, progress, paging — and a worker process killed with SIGKILL
mid-job, whose job the reaper gives to the next worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest

from keel.errors import JobConflict, JobNotFound
from keel.store import Store
from keel.store.db import Database
from keel.store.jobs import encode_cursor
from keel.testing.store_conformance import in_threads

Opener = Callable[[], Database]


class JobQueueConformance:
    @pytest.fixture
    def store(self, opener: Opener) -> Iterator[Store]:
        with Store(opener()) as store:
            yield store

    def test_the_best_ready_job_is_claimed_once_and_finished_by_its_holder(self, store: Store) -> None:
        jobs = store.jobs
        low, _ = jobs.enqueue("acme", "feature", {"n": 1}, feature="greet")
        high, _ = jobs.enqueue("acme", "feature", {"n": 2}, priority=5)
        later, _ = jobs.enqueue("acme", "feature", {"n": 3}, priority=9, run_after=time.time() + 60)
        first = jobs.claim("w1", 30)
        assert first is not None and first.id == high.id and first.status == "running" and first.attempts == 1
        second = jobs.claim("w2", 30)
        assert second is not None and second.id == low.id and second.payload == {"n": 1}
        assert jobs.claim("w3", 30) is None  # the high-priority one is not ready for a minute
        assert jobs.succeed(first, {"answer": "hi"}, cost_usd=0.002)
        done = jobs.get(first.id, tenant="acme")
        assert done is not None and done.status == "succeeded" and done.result == {"answer": "hi"}
        assert done.cost_usd == 0.002 and done.finished is not None and done.lease_until is None
        assert not jobs.succeed(first, {"again": True})  # finished: a second write changes nothing
        assert jobs.get(later.id, tenant="globex") is None  # another tenant's job is not there

    def test_racing_workers_never_claim_one_job_twice(self, store: Store, opener: Opener) -> None:
        for i in range(30):
            store.jobs.enqueue("acme", "feature", {"i": i})
        claimed: list[str] = []

        def work(w: int) -> None:
            with Store(opener()) as mine:
                while (job := mine.jobs.claim(f"w{w}", 30)) is not None:
                    claimed.append(job.id)

        in_threads(4, work)
        assert len(claimed) == 30 and len(set(claimed)) == 30

    def test_a_lost_lease_cannot_write_and_the_next_attempt_finishes(self, store: Store) -> None:
        jobs = store.jobs
        queued, _ = jobs.enqueue("acme", "feature", {}, max_attempts=3)
        first = jobs.claim("w1", 0.05)
        assert first is not None and jobs.heartbeat(first, 0.05) == "ok"
        time.sleep(0.12)
        assert jobs.reap(backoff_s=0) == {"expired": 0, "failed": 0, "requeued": 1}
        second = jobs.claim("w2", 30)
        assert second is not None and second.id == queued.id and second.attempts == 2
        assert jobs.heartbeat(first, 30) == "lost" and not jobs.report(first, 1, 2, "late")
        assert not jobs.succeed(first, "stale") and jobs.fail(first, "stale") == "lost"
        assert jobs.report(second, 1, 2, "halfway")
        running = jobs.get(queued.id, tenant="acme")
        assert running is not None and (running.done, running.total, running.stage) == (1, 2, "halfway")
        assert jobs.succeed(second, "fresh")
        final = jobs.get(queued.id, tenant="acme")
        assert final is not None and final.result == "fresh" and final.worker == "w2"

    def test_failures_retry_with_backoff_then_dead_letter(self, store: Store) -> None:
        jobs = store.jobs
        queued, _ = jobs.enqueue("acme", "feature", {}, max_attempts=2)
        first = jobs.claim("w", 30)
        assert first is not None and jobs.fail(first, "upstream 503", retry_in=0.05) == "queued"
        assert jobs.claim("w", 30) is None  # backing off
        time.sleep(0.08)
        second = jobs.claim("w", 30)
        assert second is not None and second.attempts == 2 and second.error == "upstream 503"
        assert jobs.fail(second, "upstream 503 again", retry_in=0.05) == "failed"  # attempts spent
        dead = jobs.get(queued.id, tenant="acme")
        assert dead is not None and dead.status == "failed" and dead.error == "upstream 503 again"
        lease, _ = jobs.enqueue("acme", "feature", {}, max_attempts=1)
        held = jobs.claim("w", 0.01)
        assert held is not None
        time.sleep(0.05)
        assert jobs.reap()["failed"] == 1  # its only attempt's worker vanished
        gone = jobs.get(lease.id, tenant="acme")
        assert gone is not None and gone.status == "failed" and "stopped renewing" in (gone.error or "")

    def test_expiry_cancelling_and_idempotency_keys(self, store: Store) -> None:
        jobs = store.jobs
        stale, _ = jobs.enqueue("acme", "batch", {}, expires=time.time() + 0.05)
        time.sleep(0.08)
        assert jobs.claim("w", 30) is None  # past its expiry: never started
        assert jobs.reap()["expired"] == 1
        expired = jobs.get(stale.id, tenant="acme")
        assert expired is not None and expired.status == "expired"
        queued, _ = jobs.enqueue("acme", "feature", {})
        assert jobs.cancel(queued.id, tenant="acme").status == "cancelled"
        with pytest.raises(JobConflict, match="already cancelled"):
            jobs.cancel(queued.id, tenant="acme")
        with pytest.raises(JobNotFound):
            jobs.cancel(queued.id, tenant="globex")
        running, _ = jobs.enqueue("acme", "feature", {})
        held = jobs.claim("w", 30)
        assert held is not None and jobs.cancel(running.id, tenant="acme").cancel_requested
        assert jobs.heartbeat(held, 30) == "cancel" and jobs.stop(held)
        stopped = jobs.get(running.id, tenant="acme")
        assert stopped is not None and stopped.status == "cancelled"
        one, created = jobs.enqueue("acme", "feature", {"q": 1}, idempotency_key="k-1", body_hash="h1")
        again, created_again = jobs.enqueue("acme", "feature", {"q": 1}, idempotency_key="k-1", body_hash="h1")
        assert created and not created_again and again.id == one.id
        other, _ = jobs.enqueue("globex", "feature", {"q": 1}, idempotency_key="k-1", body_hash="h1")
        assert other.id != one.id  # keys are per tenant
        with pytest.raises(JobConflict, match="different request"):
            jobs.enqueue("acme", "feature", {"q": 2}, idempotency_key="k-1", body_hash="h2")

    def test_jobs_page_newest_first_and_the_depth_is_counted(self, store: Store) -> None:
        jobs = store.jobs
        made = [jobs.enqueue("acme", "feature", {"i": i}, feature="greet" if i % 2 else "other")[0] for i in range(5)]
        page = jobs.find(tenant="acme", limit=2)
        assert [j.id for j in page] == [made[4].id, made[3].id]
        rest = jobs.find(tenant="acme", cursor=encode_cursor(page[-1]))
        assert [j.id for j in rest] == [made[2].id, made[1].id, made[0].id]
        assert {j.id for j in jobs.find(tenant="acme", feature="greet")} == {made[1].id, made[3].id}
        assert jobs.find(tenant="globex") == [] and len(jobs.find(tenant=None)) == 5
        depth, oldest = jobs.depth()
        assert depth == 5 and oldest is not None and oldest >= 0

    def test_a_worker_killed_mid_job_loses_nothing(self, store: Store) -> None:
        """A real process claims the job, reports progress and is killed with SIGKILL; the reaper
        gives the job to the next worker once the lease runs out, and it finishes there."""
        queued, _ = store.jobs.enqueue("acme", "feature", {"long": True}, max_attempts=3)
        url = os.environ.get("KEEL_JOBS_TEST_DB", "")
        assert url, "the test module sets KEEL_JOBS_TEST_DB to the database this opener opens"
        script = textwrap.dedent(
            f"""
            import sys, time
            from keel.store import Store
            from keel.store.engines import open_postgres, open_sqlite
            from pathlib import Path
            url = {url!r}
            db = open_postgres(url) if url.startswith("postgres") else open_sqlite(Path(url))
            with Store(db) as store:
                job = store.jobs.claim("doomed", 0.5)
                assert job is not None
                store.jobs.report(job, 1, 10, "started")
                print("claimed", flush=True)
                while True:
                    time.sleep(0.1)
                    store.jobs.heartbeat(job, 0.5)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        held = store.jobs.get(queued.id, tenant="acme")
        assert held is not None and held.status == "running" and held.worker == "doomed" and held.done == 1
        deadline = time.time() + 5
        taken = None
        while taken is None and time.time() < deadline:
            store.jobs.reap(backoff_s=0)
            taken = store.jobs.claim("heir", 30)
            time.sleep(0.05)
        assert taken is not None and taken.id == queued.id and taken.attempts == 2
        assert time.time() - (held.lease_until or 0) < 2  # recovered within the lease plus 2 s
        assert store.jobs.succeed(taken, "done")
        finished = store.jobs.get(queued.id, tenant="acme")
        assert finished is not None and finished.status == "succeeded" and finished.result == "done"
