"""Durable jobs in the store: a queue with leases, on SQLite and Postgres alike.

A job is ``queued → running → succeeded | failed | cancelled | expired`` (a feature run a person
must approve first waits ``awaiting_review`` between running and succeeded: keel.store.reviews). A worker *claims* the
best ready job (highest priority, then the longest waiting) in one statement — ``FOR UPDATE SKIP
LOCKED`` on Postgres, so replicas never block on each other's claims; under SQLite's write lock on
the embedded store — and holds it by a *lease* it renews with heartbeats. A worker that dies (even
``kill -9``) stops renewing; the *reaper* puts its jobs back in the queue once the lease has run out,
with a backoff, until their attempts are spent (then they fail: the dead letters). Every write that
finishes a job names the worker and the attempt that held it, so a worker that lost its lease can
never overwrite the result of the one that took over. Execution is at least once; the work's effects
are made idempotent by the work (each attempt knows its attempt number and the job's trace id).

Library choice: huey (SQLite or Redis) acknowledges nothing, so ``kill -9`` loses the running task;
procrastinate and pgqueuer are Postgres only; saq needs Redis or Postgres; taskiq brokers are
Redis, NATS or RabbitMQ. None keeps one semantics on both of Keel's stores, so the queue is a
repository like the others, under the same conformance suite on both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from keel.errors import InvalidRequest, JobConflict, JobNotFound
from keel.store.db import Database, Where, decode_keyset, encode_keyset

STATES = ("queued", "running", "awaiting_review", "succeeded", "failed", "cancelled", "expired")
FINISHED = ("succeeded", "failed", "cancelled", "expired")


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    tenant: str
    kind: str
    status: str
    payload: Any
    feature: str | None = None
    priority: int = 0
    result: Any = None
    error: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    run_after: float = 0.0
    lease_until: float | None = None
    worker: str | None = None
    done: int | None = None
    total: int | None = None
    stage: str | None = None
    cost_usd: float | None = None
    trace_id: str | None = None
    webhook: str | None = None
    idempotency_key: str | None = None
    body_hash: str | None = None
    cancel_requested: bool = False
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    expires: float | None = None

    @property
    def finished_state(self) -> bool:
        return self.status in FINISHED


COLUMNS = [
    "id", "tenant", "kind", "status", "payload", "feature", "priority", "result", "error", "attempts",
    "max_attempts", "run_after", "lease_until", "worker", "done", "total", "stage", "cost_usd", "trace_id",
    "webhook", "idempotency_key", "body_hash", "cancel_requested", "created", "started", "finished", "expires",
]  # fmt: skip


def _job(row: dict[str, Any]) -> Job:
    data: dict[str, Any] = {c: row.get(c) for c in COLUMNS}
    for name in ("payload", "result"):
        if data[name] is not None:
            data[name] = orjson.loads(data[name])
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Job(**data)


def encode_cursor(job: Job) -> str:
    return encode_keyset(job.created, job.id)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: Called with each job that ends and has a webhook, inside the transaction that ends it (the
        #: webhook outbox joins it: an ended job never loses its event).
        self.on_end: Callable[[Job], None] | None = None

    def ended(self, rows: Sequence[dict[str, Any]]) -> None:
        if self.on_end is None:
            return
        for row in rows:
            if row.get("webhook"):
                self.on_end(_job(row))

    # -- in ------------------------------------------------------------------------------------------
    def enqueue(
        self,
        tenant: str,
        kind: str,
        payload: Any,
        *,
        feature: str | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        expires: float | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
        run_after: float | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or — for an ``idempotency_key`` the tenant used before — that job
        (False: not created). The same key with another body is a 409."""
        now = time.time()
        job_id, trace_id = f"job_{uuid.uuid4().hex[:24]}", uuid.uuid4().hex
        with self.db.transaction():
            if idempotency_key is not None:
                self.db.lock(f"job-key:{tenant}:{idempotency_key}")
                known = self.db.one(
                    "SELECT * FROM jobs WHERE tenant = ? AND idempotency_key = ?", (tenant, idempotency_key)
                )
                if known is not None:
                    if known["body_hash"] != body_hash:
                        raise JobConflict(
                            f"Idempotency-Key '{idempotency_key[:80]}' was used for a different request (job "
                            f"{known['id']}); use a new key for a new request"
                        )
                    return _job(known), False
            row = self.db.one(
                "INSERT INTO jobs(id, tenant, kind, status, payload, feature, priority, attempts, max_attempts, "
                "run_after, trace_id, webhook, idempotency_key, body_hash, cancel_requested, created, expires) "
                "VALUES (?,?,?,'queued',?,?,?,0,?,?,?,?,?,?,0,?,?) RETURNING *",
                (job_id, tenant, kind, orjson.dumps(payload).decode(), feature, priority, max_attempts,
                 run_after if run_after is not None else now, trace_id, webhook, idempotency_key, body_hash, now,
                 expires),
            )  # fmt: skip
        assert row is not None
        return _job(row), True

    # -- a worker's ----------------------------------------------------------------------------------
    def claim(self, worker: str, lease_s: float, *, kinds: Sequence[str] | None = None) -> Job | None:
        """The best ready job, now running under ``worker``'s lease; None when none is ready."""
        now = time.time()
        pick = Where("status = 'queued'").add("run_after <= ?", now).add("(expires IS NULL OR expires > ?)", now)
        if kinds:
            pick.add(f"kind IN ({', '.join('?' * len(kinds))})", *kinds)
        if self.db.scalar(f"SELECT 1 FROM jobs WHERE {pick} LIMIT 1", pick.args) is None:
            return None  # an idle poll reads, and never takes the write lock the trace writer needs
        skip = " FOR UPDATE SKIP LOCKED" if self.db.postgres else ""
        sql = (
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = ?, worker = ?, "
            "started = coalesce(started, ?) "
            f"WHERE id = (SELECT id FROM jobs WHERE {pick} ORDER BY priority DESC, run_after, id LIMIT 1{skip}) "
            "AND status = 'queued' RETURNING *"
        )
        with self.db.transaction():
            row = self.db.one(sql, (now + lease_s, worker, now, *pick.args))
        return _job(row) if row is not None else None

    def heartbeat(self, job: Job, lease_s: float) -> str:
        """Renew the lease: ``ok``; ``cancel`` when the job was asked to stop; ``lost`` when the lease
        is no longer this worker's (it ran out and another attempt took over)."""
        with self.db.transaction():
            row = self.db.one(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running' "
                "RETURNING cancel_requested",
                (time.time() + lease_s, job.id, job.worker, job.attempts),
            )
        if row is None:
            return "lost"
        return "cancel" if row["cancel_requested"] else "ok"

    def report(self, job: Job, done: int | None, total: int | None, stage: str | None) -> bool:
        """Progress, written by the work itself (False: the lease is no longer this attempt's)."""
        return bool(
            self.db.run(
                "UPDATE jobs SET done = ?, total = ?, stage = ? WHERE id = ? AND worker = ? AND attempts = ? "
                "AND status = 'running'",
                (done, total, stage, job.id, job.worker, job.attempts),
            )
        )

    def succeed(self, job: Job, result: Any, *, cost_usd: float | None = None) -> bool:
        return self._finish(job, "succeeded", result=orjson.dumps(result).decode(), cost_usd=cost_usd)

    def fail(self, job: Job, error: str, *, retry_in: float | None = None, cost_usd: float | None = None) -> str:
        """A failed attempt: back in the queue after ``retry_in`` while attempts remain, else
        ``failed``. Returns the job's state now (``lost`` when the lease was no longer this attempt's)."""
        if retry_in is not None and job.attempts < job.max_attempts:
            with self.db.transaction():
                n = self.db.run(
                    "UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL, run_after = ?, error = ?, "
                    "cost_usd = ? WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running'",
                    (time.time() + retry_in, error[:4000], cost_usd, job.id, job.worker, job.attempts),
                )
            return "queued" if n else "lost"
        return "failed" if self._finish(job, "failed", error=error[:4000], cost_usd=cost_usd) else "lost"

    def stop(self, job: Job) -> bool:
        """The worker honoured a cancel request."""
        return self._finish(job, "cancelled", error="cancelled at the caller's request")

    def _finish(self, job: Job, status: str, **fields: Any) -> bool:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.db.transaction():
            rows = self.db.all(
                f"UPDATE jobs SET status = ?, finished = ?, lease_until = NULL, {sets} "
                "WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running' RETURNING *",
                (status, time.time(), *fields.values(), job.id, job.worker, job.attempts),
            )
            self.ended(rows)
        return bool(rows)

    # -- housekeeping --------------------------------------------------------------------------------
    def reap(self, *, backoff_s: float = 1.0) -> dict[str, int]:
        """Jobs whose lease ran out go back to the queue — at once and in their old place the first
        time (a worker died: not the job's fault), then after ``backoff_s`` × (2^(attempts-1) − 1) — or fail when their
        attempts are spent; jobs past their expiry end ``expired``. Any replica may run it; it reads
        first and writes only when something is due, each statement its own short transaction."""
        now = time.time()
        out = {"expired": 0, "failed": 0, "requeued": 0}
        due = self.db.scalar(
            "SELECT 1 FROM jobs WHERE (status = 'running' AND lease_until < ?) OR "
            "(status IN ('queued', 'running') AND expires IS NOT NULL AND expires <= ?) LIMIT 1",
            (now, now),
        )
        if due is None:
            return out  # an idle reap never takes the write lock the trace writer needs
        with self.db.transaction():
            rows = self.db.all(
                "UPDATE jobs SET status = 'expired', finished = ?, lease_until = NULL, "
                "error = coalesce(error, 'passed its expiry before it finished') "
                "WHERE status IN ('queued', 'running') AND expires IS NOT NULL AND expires <= ? RETURNING *",
                (now, now),
            )
            self.ended(rows)
            out["expired"] = len(rows)
        with self.db.transaction():
            rows = self.db.all(
                "UPDATE jobs SET status = 'failed', finished = ?, lease_until = NULL, "
                "error = 'its worker stopped renewing the lease on every attempt (' || attempts || ')' "
                "WHERE status = 'running' AND lease_until < ? AND attempts >= max_attempts RETURNING *",
                (now, now),
            )
            self.ended(rows)
            out["failed"] = len(rows)
        with self.db.transaction():
            rows = self.db.all(
                "SELECT id, attempts, run_after FROM jobs WHERE status = 'running' AND lease_until < ? "
                "AND attempts < max_attempts",
                (now,),
            )
            for row in rows:
                wait = backoff_s * (2 ** max(0, int(row["attempts"]) - 1) - 1)
                # the first time, it keeps its place in the queue; later, it waits its backoff
                after = float(row["run_after"]) if wait == 0 else now + wait
                self.db.run(
                    "UPDATE jobs SET status = 'queued', worker = NULL, lease_until = NULL, run_after = ?, "
                    "error = 'its worker stopped renewing the lease; retried' "
                    "WHERE id = ? AND status = 'running' AND lease_until < ?",
                    (after, row["id"], now),
                )
            out["requeued"] = len(rows)
        return out

    # -- reads and the caller's requests -------------------------------------------------------------
    def get(self, job_id: str, *, tenant: str | None) -> Job | None:
        where = Where().eq("id", job_id).eq("tenant", tenant)
        row = self.db.one(f"SELECT * FROM jobs WHERE {where}", where.args)
        return _job(row) if row is not None else None

    def cancel(self, job_id: str, *, tenant: str | None) -> Job:
        """Cancel a queued job at once; ask a running one to stop (its worker sees it at its next
        heartbeat). A finished job cannot be cancelled (409)."""
        with self.db.transaction():
            job = self.get(job_id, tenant=tenant)
            if job is None:
                raise JobNotFound(f"no job '{job_id[:80]}'")
            if job.finished_state:
                raise JobConflict(f"job {job.id} already {job.status}; there is nothing to cancel")
            row = None
            if job.status in ("queued", "awaiting_review"):
                said = "cancelled before it started" if job.status == "queued" else "cancelled while awaiting review"
                row = self.db.one(
                    "UPDATE jobs SET status = 'cancelled', finished = ?, error = ? WHERE id = ? AND status = ? "
                    "RETURNING *",
                    (time.time(), said, job.id, job.status),
                )
                if row is not None and job.status == "awaiting_review":
                    self.db.run(
                        "UPDATE review_items SET status = 'expired', held = NULL, comment = 'the job was cancelled', "
                        "decided = ? WHERE job_id = ? AND status IN ('pending', 'claimed')",
                        (time.time(), job.id),
                    )
                self.ended([row] if row is not None else [])
            if row is None:  # running — or claimed by a worker since it was read
                row = self.db.one("UPDATE jobs SET cancel_requested = 1 WHERE id = ? RETURNING *", (job.id,))
        assert row is not None
        return _job(row)

    def retry(self, job_id: str, *, tenant: str | None) -> Job:
        """Queue a failed, cancelled or expired job again (a dead letter's second life): a fresh set
        of attempts, the same id and trace id; a job still queued, running or succeeded is a 409."""
        with self.db.transaction():
            job = self.get(job_id, tenant=tenant)
            if job is None:
                raise JobNotFound(f"no job '{job_id[:80]}'")
            if job.status not in ("failed", "cancelled", "expired"):
                raise JobConflict(f"job {job.id} is {job.status}; only a failed, cancelled or expired job is retried")
            row = self.db.one(
                "UPDATE jobs SET status = 'queued', attempts = 0, run_after = ?, worker = NULL, lease_until = NULL, "
                "finished = NULL, cancel_requested = 0, expires = NULL, "
                "error = 'retried by hand after: ' || coalesce(error, status) WHERE id = ? RETURNING *",
                (time.time(), job.id),
            )
        assert row is not None
        return _job(row)

    def find(
        self,
        *,
        tenant: str | None,
        status: str | None = None,
        feature: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first, within a tenant (None: every tenant's), paged by a keyset cursor."""
        if status is not None and status not in STATES:
            raise InvalidRequest(f"status must be one of {', '.join(STATES)}", param="status")
        where = Where().eq("tenant", tenant).eq("status", status).eq("feature", feature).eq("kind", kind)
        if cursor is not None:
            created, job_id = decode_keyset(cursor)
            where.add("(created < ? OR (created = ? AND id < ?))", created, created, job_id)
        rows = self.db.all(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created DESC, id DESC LIMIT ?", (*where.args, limit)
        )
        return [_job(r) for r in rows]

    def depth(self) -> tuple[int, float | None]:
        """Jobs waiting to run, and how long the oldest has waited (s) — for ``/metrics``."""
        row = self.db.one("SELECT count(*) AS n, min(run_after) AS oldest FROM jobs WHERE status = 'queued'")
        assert row is not None
        oldest = row["oldest"]
        return int(row["n"]), (max(0.0, time.time() - float(oldest)) if oldest is not None else None)
