"""Review items: answers routed to a person (keel.review), on SQLite and Postgres alike.

An item is ``pending → claimed → decided | expired``. A claim is a lock with a time limit: one
conditional update takes it, so two reviewers never hold one item, and a claim that ran out is
pending again. A decision is another conditional update — on an item this reviewer holds, with the
claim still running — so when decisions race, one wins and the others are told why (409). A trace
has at most one item: adding it again returns the first.

A *held* item (``mode: hold``) owns a job whose status is ``awaiting_review``: the item is written
in the transaction that holds the job (or creates it, for a run answered over HTTP), and the
decision ends the job in the transaction that decides the item — with the approved or edited
answer, or the fallback — so no decision is lost and no job is left waiting by a crash between
the two. The raw answer a held item must serve is kept only until then. Each decision is also
feedback on the trace (score ``review``: approve, edit or reject; an approved or edited answer is a
correction), written in the same transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from keel.errors import InvalidRequest, ReviewConflict, ReviewItemNotFound
from keel.store.db import Database, Where, decode_keyset
from keel.store.jobs import Job, JobStore
from keel.store.review_rows import (
    ACTIONS,
    COLUMNS,
    SCORE,
    STATES,
    Decision,
    NewItem,
    ReviewItem,
    clock_of,
    dump_json,
    encode_cursor,
    read_item,
    review_tables,
    why_not,
)

__all__ = ["ACTIONS", "COLUMNS", "STATES", "Decision", "NewItem", "ReviewItem", "ReviewStore", "encode_cursor"]
__all__ += ["review_tables"]


class ReviewStore:
    def __init__(self, db: Database, jobs: JobStore) -> None:
        self.db = db
        self.jobs = jobs
        #: Called inside the transaction that adds an item (``"created"``) or finds it past its SLA
        #: (``"sla_breached"``): the webhook outbox joins it.
        self.on_event: Callable[[str, ReviewItem], None] | None = None

    def _tell(self, event: str, rows: Sequence[dict[str, Any]]) -> None:
        if self.on_event is not None:
            for row in rows:
                self.on_event(event, read_item(row))

    # -- in ------------------------------------------------------------------------------------------
    def add(self, new: NewItem, *, hold: Job | None = None) -> tuple[ReviewItem, bool]:
        """Queue an item (True), or the trace's item from before (False). ``mode: hold``: ``hold`` is
        the running job a worker holds for review (its lease must still be this attempt's); without
        one, a job is created already ``awaiting_review`` (a run answered over HTTP)."""
        now = time.time()
        with self.db.transaction():
            self.db.lock(f"review:{new.tenant}:{new.trace_id}")
            known = self.db.one(
                "SELECT * FROM review_items WHERE tenant = ? AND trace_id = ?", (new.tenant, new.trace_id)
            )
            if known is not None:
                return read_item(known, now), False
            item_id = f"rev_{uuid.uuid4().hex[:24]}"
            job_id = None
            if new.mode == "hold":
                waiting = {"review": {"item": item_id, "queue": new.queue, "due": new.due}}
                if new.held is not None:
                    waiting["review"]["message"] = new.held.get("message")
                job_id = self._hold(new, hold, waiting, now)
            row = self.db.one(
                "INSERT INTO review_items(id, tenant, queue, trace_id, job_id, feature, mode, status, reason, sampled, "
                "confidence, prompt_version, model, cost_usd, view, held, due, breached, created) "
                "VALUES (?,?,?,?,?,?,?,'pending',?,?,?,?,?,?,?,?,?,0,?) RETURNING *",
                (item_id, new.tenant, new.queue, new.trace_id, job_id, new.feature, new.mode, new.reason,
                 int(new.sampled), new.confidence, new.prompt_version, new.model, new.cost_usd,
                 orjson.dumps(new.view).decode(), orjson.dumps(new.held).decode() if new.held else None, new.due,
                 now),
            )  # fmt: skip
            assert row is not None
            self._tell("created", [row])
        return read_item(row, now), True

    def _hold(self, new: NewItem, job: Job | None, waiting: dict[str, Any], now: float) -> str:
        result = orjson.dumps(waiting).decode()
        if job is None:
            made, _ = self.jobs.enqueue(new.tenant, "feature", new.job_payload, feature=new.feature)
            n = self.db.run(
                "UPDATE jobs SET status = 'awaiting_review', trace_id = ?, result = ?, started = ?, "
                "stage = 'awaiting review' WHERE id = ?",
                (new.trace_id, result, now, made.id),
            )
            assert n == 1
            return made.id
        n = self.db.run(
            "UPDATE jobs SET status = 'awaiting_review', lease_until = NULL, result = ?, stage = 'awaiting review' "
            "WHERE id = ? AND worker = ? AND attempts = ? AND status = 'running'",
            (result, job.id, job.worker, job.attempts),
        )
        if not n:
            raise ReviewConflict(f"job {job.id}: the lease is no longer this attempt's; it is not held")
        return job.id

    # -- reviewers -----------------------------------------------------------------------------------
    def get(self, item_id: str, *, tenant: str | None) -> ReviewItem | None:
        where = Where().eq("id", item_id).eq("tenant", tenant)
        row = self.db.one(f"SELECT * FROM review_items WHERE {where}", where.args)
        return read_item(row) if row is not None else None

    def _must(self, item_id: str, tenant: str | None) -> ReviewItem:
        item = self.get(item_id, tenant=tenant)
        if item is None:
            raise ReviewItemNotFound(f"no review item '{item_id[:80]}'")
        return item

    def claim(self, item_id: str, *, tenant: str | None, who: str, ttl_s: float) -> ReviewItem:
        """Take the item for ``ttl_s`` (a reviewer renews their own claim by claiming again)."""
        now = time.time()
        where = Where().eq("id", item_id).eq("tenant", tenant)
        with self.db.transaction():
            row = self.db.one(
                "UPDATE review_items SET status = 'claimed', claimed_by = ?, claim_until = ? "
                f"WHERE {where} AND (status = 'pending' OR (status = 'claimed' AND "
                "(claim_until < ? OR claimed_by = ?))) RETURNING *",
                (who, now + ttl_s, *where.args, now, who),
            )
        if row is not None:
            return read_item(row, now)
        raise ReviewConflict(why_not(self._must(item_id, tenant), who, "claim"))

    def claim_next(self, *, tenant: str | None, queue: str, who: str, ttl_s: float) -> ReviewItem | None:
        """The queue's oldest item no one holds, now claimed by ``who``; None when the queue is empty."""
        now = time.time()
        pick = Where().eq("tenant", tenant).eq("queue", queue)
        pick.add("(status = 'pending' OR (status = 'claimed' AND claim_until < ?))", now)
        skip = " FOR UPDATE SKIP LOCKED" if self.db.postgres else ""
        with self.db.transaction():
            row = self.db.one(
                "UPDATE review_items SET status = 'claimed', claimed_by = ?, claim_until = ? WHERE id = "
                f"(SELECT id FROM review_items WHERE {pick} ORDER BY created, id LIMIT 1{skip}) "
                "AND (status = 'pending' OR (status = 'claimed' AND claim_until < ?)) RETURNING *",
                (who, now + ttl_s, *pick.args, now),
            )
        return read_item(row, now) if row is not None else None

    def release(self, item_id: str, *, tenant: str | None, who: str) -> ReviewItem:
        """Give a claim back before it runs out."""
        where = Where().eq("id", item_id).eq("tenant", tenant)
        with self.db.transaction():
            row = self.db.one(
                "UPDATE review_items SET status = 'pending', claimed_by = NULL, claim_until = NULL "
                f"WHERE {where} AND status = 'claimed' AND claimed_by = ? RETURNING *",
                (*where.args, who),
            )
        if row is not None:
            return read_item(row)
        raise ReviewConflict(why_not(self._must(item_id, tenant), who, "release"))

    def decide(self, item_id: str, *, tenant: str | None, who: str, decision: Decision) -> ReviewItem:
        """Record a decision on an item ``who`` holds; a held job ends with it, and the trace gets its
        feedback — all in one transaction. Any other state is a 409 saying why."""
        if decision.action not in ACTIONS:
            raise InvalidRequest(f"'action' is one of {', '.join(ACTIONS)}", param="action")
        now = time.time()
        where = Where().eq("id", item_id).eq("tenant", tenant)
        with self.db.transaction():
            row = self.db.one(
                "UPDATE review_items SET status = 'decided', action = ?, output = ?, comment = ?, labels = ?, "
                "reviewer = ?, decided = ?, held = NULL, claim_until = NULL "
                f"WHERE {where} AND status = 'claimed' AND claimed_by = ? AND claim_until >= ? RETURNING *",
                (decision.action, dump_json(decision.output), decision.comment, dump_json(decision.labels), who, now,
                 *where.args, who, now),
            )  # fmt: skip
            if row is None:
                raw = self.db.one(f"SELECT status, claimed_by, claim_until FROM review_items WHERE {where}", where.args)
                if raw is not None and raw["status"] == "claimed" and raw["claimed_by"] == who:
                    ran_out = clock_of(raw["claim_until"])
                    raise ReviewConflict(f"your claim on review item {item_id} ran out at {ran_out}; claim it again")
                raise ReviewConflict(why_not(self._must(item_id, tenant), who, "decide"))
            item = read_item(row, now)
            if item.mode == "hold" and item.job_id is not None:
                ended = self._end_job(item.job_id, decision.job_result, now)
                if not ended:
                    raise ReviewConflict(f"job {item.job_id} is no longer awaiting review (it was cancelled)")
            self.db.run(
                'INSERT INTO feedback(trace_id, name, value, label, comment, correction, "user", at, tenant) '
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (item.trace_id, "review", SCORE[decision.action], decision.action, decision.comment,
                 decision.correction, who, now, item.tenant),
            )  # fmt: skip
        return item

    def _end_job(self, job_id: str, result: Any, now: float) -> bool:
        rows = self.db.all(
            "UPDATE jobs SET status = 'succeeded', result = ?, finished = ?, stage = 'reviewed' "
            "WHERE id = ? AND status = 'awaiting_review' RETURNING *",
            (orjson.dumps(result).decode(), now, job_id),
        )
        self.jobs.ended(rows)
        return bool(rows)

    # -- housekeeping --------------------------------------------------------------------------------
    def sweep(self, *, now: float | None = None) -> dict[str, int]:
        """Items past their SLA: a held one is ``expired`` and its job ends as ``on_timeout`` says (the
        held answer, or the fallback); an ``after`` one stays in the queue, marked breached. Each is
        announced (``sla_breached``). Reads first, and writes only when something is due."""
        now = time.time() if now is None else now
        out = {"expired": 0, "breached": 0}
        due_sql = "FROM review_items WHERE status IN ('pending', 'claimed') AND breached = 0 AND due <= ?"
        if self.db.scalar(f"SELECT 1 {due_sql} LIMIT 1", (now,)) is None:
            return out
        skip = " FOR UPDATE SKIP LOCKED" if self.db.postgres else ""
        with self.db.transaction():
            rows = self.db.all(f"SELECT * {due_sql} ORDER BY due LIMIT 500{skip}", (now,))
            for row in rows:
                item = read_item(row, now)
                if item.mode == "hold":
                    held = item.held or {}
                    chosen = held.get("on_timeout", "serve")
                    self._end_job(item.job_id or "", held.get(chosen), now)
                    self.db.run(
                        "UPDATE review_items SET status = 'expired', breached = 1, held = NULL, claim_until = NULL, "
                        "comment = ?, decided = ? WHERE id = ?",
                        (f"SLA passed: {'served the answer' if chosen == 'serve' else 'served the fallback'}", now,
                         item.id),
                    )  # fmt: skip
                    out["expired"] += 1
                else:
                    self.db.run("UPDATE review_items SET breached = 1 WHERE id = ?", (item.id,))
                    out["breached"] += 1
            self._tell("sla_breached", rows)
        return out

    # -- reads ---------------------------------------------------------------------------------------
    def find(
        self,
        *,
        tenant: str | None,
        queue: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> list[ReviewItem]:
        """Oldest first (the order reviewers work in), paged by a keyset cursor. ``pending`` includes
        claims that ran out; ``claimed`` only claims still running."""
        if status is not None and status not in STATES:
            raise InvalidRequest(f"status must be one of {', '.join(STATES)}", param="status")
        now = time.time()
        where = Where().eq("tenant", tenant).eq("queue", queue)
        if status == "pending":
            where.add("(status = 'pending' OR (status = 'claimed' AND claim_until < ?))", now)
        elif status == "claimed":
            where.add("status = 'claimed' AND claim_until >= ?", now)
        else:
            where.eq("status", status)
        if cursor is not None:
            created, item_id = decode_keyset(cursor)
            where.add("(created > ? OR (created = ? AND id > ?))", created, created, item_id)
        rows = self.db.all(
            f"SELECT * FROM review_items WHERE {where} ORDER BY created, id LIMIT ?", (*where.args, limit)
        )
        return [read_item(r, now) for r in rows]

    def queues(self, *, tenant: str | None) -> list[dict[str, Any]]:
        """Each queue's backlog, its oldest open item's age, SLA breaches and decisions."""
        now = time.time()
        where = Where().eq("tenant", tenant)
        return self.db.all(
            "SELECT queue, "
            "sum(CASE WHEN status IN ('pending', 'claimed') THEN 1 ELSE 0 END) AS backlog, "
            "sum(CASE WHEN status = 'claimed' AND claim_until >= ? THEN 1 ELSE 0 END) AS claimed, "
            "min(CASE WHEN status IN ('pending', 'claimed') THEN created END) AS oldest, "
            "sum(breached) AS breaches, sum(CASE WHEN status = 'decided' THEN 1 ELSE 0 END) AS decided, "
            "sum(CASE WHEN status = 'expired' THEN 1 ELSE 0 END) AS expired "
            f"FROM review_items WHERE {where} GROUP BY queue ORDER BY queue",
            (now, *where.args),
        )

    def decisions(self, *, tenant: str | None, queue: str | None = None, limit: int = 100_000) -> list[dict[str, Any]]:
        """The decided items' (queue, action, confidence, sampled, prompt version, model, reviewer), newest first."""
        where = Where("status = 'decided'").eq("tenant", tenant).eq("queue", queue)
        return self.db.all(
            "SELECT queue, action, confidence, sampled, prompt_version, model, reviewer, feature FROM review_items "
            f"WHERE {where} ORDER BY decided DESC LIMIT ?",
            (*where.args, limit),
        )

    def open_counts(self) -> tuple[int, float | None, int]:
        """Items waiting for a person in the whole store, the oldest one's age (s), and breaches — for ``/metrics``."""
        row = self.db.one(
            "SELECT count(*) AS n, min(created) AS oldest, sum(breached) AS breached FROM review_items "
            "WHERE status IN ('pending', 'claimed')"
        )
        assert row is not None
        oldest = row["oldest"]
        age = max(0.0, time.time() - float(oldest)) if oldest is not None else None
        return int(row["n"]), age, int(row["breached"] or 0)
