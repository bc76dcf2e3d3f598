"""The conformance suite of what the Batch API and webhooks keep in the store — files, batches and
their lines, the webhook outbox and endpoint secrets — and of the job queue's hand retry and its
end-of-job hook. ``tests/store/test_batches.py`` runs it on SQLite and on a real Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from keel.errors import JobConflict, JobNotFound
from keel.store import Store
from keel.store.batches import Line
from keel.store.jobs import Job
from keel.testing.jobs_conformance import Opener
from keel.testing.store_conformance import in_threads


class BatchStoreConformance:
    @pytest.fixture
    def store(self, opener: Opener) -> Iterator[Store]:
        with Store(opener()) as store:
            yield store

    def test_files_keep_their_bytes_per_tenant_and_expire(self, store: Store) -> None:
        files = store.files
        data = bytes(range(256)) * 10  # binary-safe, not just text
        made = files.create("acme", "batch", "in.jsonl", data, keep_s=60)
        assert files.content(made.id, tenant="acme") == data and made.bytes == len(data)
        assert files.get(made.id, tenant="globex") is None and files.content(made.id, tenant="globex") is None
        old = files.create("acme", "batch_output", "old.jsonl", b"x", keep_s=-1)
        assert [f.id for f in files.find(tenant="acme")] == [old.id, made.id]
        assert [f.id for f in files.find(tenant="acme", purpose="batch")] == [made.id]
        assert files.prune() == 1 and files.get(old.id, tenant="acme") is None
        assert not files.delete(made.id, tenant="globex") and files.delete(made.id, tenant="acme")

    def test_a_batch_moves_only_from_the_states_named_and_keeps_a_line_once(self, store: Store) -> None:
        b = store.batches.create(
            "acme", endpoint="/v1/chat/completions", input_file_id="file-1", completion_window="24h",
            window_s=86400, total=3, metadata={"team": "ops"}, key="k1", reserved_usd=0.5,
        )  # fmt: skip
        assert b.status == "validating" and b.metadata == {"team": "ops"} and b.expires > b.created
        assert store.batches.move(b.id, ["in_progress"], "finalizing") is None  # not in progress yet
        running = store.batches.move(b.id, ["validating"], "in_progress")
        assert running is not None and running.in_progress_at is not None
        line = Line(1, "a", True, 200, {"ok": 1}, None, 0.001, "t1")
        assert store.batches.record(b.id, line)
        assert not store.batches.record(b.id, Line(1, "a", False, 500, None, {"code": "x"}, None, "t2"))  # once
        store.batches.record(b.id, Line(2, "b", False, 400, {"error": {}}, {"code": "bad"}, None, "t3"))
        assert store.batches.counts(b.id) == (1, 1, 0.001)
        assert [x.line for x in store.batches.lines(b.id, page=1)] == [1, 2]  # paged reads see every line
        assert store.batches.finished_lines(b.id) == {1, 2}
        ended = store.batches.move(b.id, ["in_progress"], "expired", output_file_id="f-out", errors=[{"code": "x"}])
        assert ended is not None and ended.status == "expired" and ended.errors == [{"code": "x"}]
        assert store.batches.get(b.id, tenant="globex") is None
        assert [x.id for x in store.batches.find(tenant="acme")] == [b.id]

    def test_racing_writers_keep_one_result_per_line(self, store: Store, opener: Opener) -> None:
        b = store.batches.create(
            "acme", endpoint="/v1/chat/completions", input_file_id="f", completion_window="24h",
            window_s=60, total=1, metadata=None, key=None, reserved_usd=None,
        )  # fmt: skip
        wins: list[bool] = []

        def write(w: int) -> None:
            with Store(opener()) as mine:
                wins.append(mine.batches.record(b.id, Line(1, "a", True, 200, {"w": w}, None, 0.01, f"t{w}")))

        in_threads(6, write)
        assert wins.count(True) == 1 and store.batches.counts(b.id) == (1, 0, 0.01)

    def test_the_outbox_claims_a_delivery_once_retries_it_and_gives_up(self, store: Store) -> None:
        hooks = store.webhooks
        secret = hooks.secret("acme", "https://hooks.example.com/a")
        assert secret.startswith("whsec_") and hooks.secret("acme", "https://hooks.example.com/a") == secret
        assert hooks.secret("globex", "https://hooks.example.com/a") != secret  # per tenant, per endpoint
        msg = hooks.enqueue("acme", "job_1", "https://hooks.example.com/a", "job.succeeded", {"n": 1}, give_up_s=60)
        first = hooks.claim()
        assert [d.id for d in first] == [msg] and hooks.claim() == []  # held while it is being sent
        assert hooks.attempted(first[0], status=503, error="HTTP 503", retry_at=time.time() - 1) == "pending"
        again = hooks.claim()
        assert len(again) == 1 and again[0].attempts == 1 and again[0].log[0]["status"] == 503
        assert hooks.attempted(again[0], status=200, error=None, retry_at=None) == "delivered"
        done = hooks.find(tenant="acme", subject="job_1")[0]
        assert done.status == "delivered" and done.delivered is not None and len(done.log) == 2
        late = hooks.enqueue("acme", "job_2", "https://x.example", "job.failed", {}, give_up_s=0.5)
        d = hooks.claim()[0]
        assert hooks.attempted(d, status=None, error="refused", retry_at=time.time() + 5) == "failed"  # past give-up
        assert hooks.redeliver(late, tenant="globex", give_up_s=60) is None
        back = hooks.redeliver(late, tenant="acme", give_up_s=60)
        assert back is not None and back.status == "pending" and [x.id for x in hooks.claim()] == [late]

    def test_an_ended_job_announces_itself_and_a_dead_letter_can_be_retried(self, store: Store) -> None:
        jobs = store.jobs
        told: list[Job] = []
        jobs.on_end = told.append
        quiet, _ = jobs.enqueue("acme", "feature", {}, max_attempts=1)
        hooked, _ = jobs.enqueue("acme", "feature", {}, max_attempts=1, webhook="https://x.example/h")
        for _ in range(2):
            job = jobs.claim("w", 30)
            assert job is not None
            jobs.fail(job, "boom")
        assert [j.id for j in told] == [hooked.id] and told[0].status == "failed"  # only the one with a webhook
        with pytest.raises(JobConflict):
            jobs.retry(jobs.enqueue("acme", "feature", {})[0].id, tenant="acme")  # queued: nothing to retry
        with pytest.raises(JobNotFound):
            jobs.retry(quiet.id, tenant="globex")
        again = jobs.retry(quiet.id, tenant="acme")
        assert again.status == "queued" and again.attempts == 0 and "retried by hand" in (again.error or "")
        jobs.on_end = None
