"""Webhooks: each tenant's endpoints with their signing secret (one per URL, made on first use),
and an outbox of deliveries. A delivery is written in the same store as the job it tells about;
any replica's deliverer claims the due ones (a short claim, so two never send one at once), and
each attempt is logged on the delivery, where ``GET /v1/jobs/{id}`` and ``keel webhooks list`` show
it. Delivery is at least once: receivers de-duplicate on the ``webhook-id`` header."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from keel.store.db import Database, Where

CLAIM_S = 60.0  # a claimed delivery returns to due after this if its deliverer died mid-send
MAX_LOG = 20  # attempts kept on a delivery (the first and the newest)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant: str
    subject: str
    url: str
    event: str
    payload: Any
    status: str  # pending | delivered | failed
    attempts: int
    next_at: float
    last_status: int | None
    last_error: str | None
    log: list[dict[str, Any]]
    created: float
    delivered: float | None
    give_up: float


def _delivery(row: dict[str, Any]) -> Delivery:
    data = dict(row)
    data["payload"] = orjson.loads(data["payload"])
    data["log"] = orjson.loads(data["log"]) if data["log"] else []
    return Delivery(**data)


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def secret(self, tenant: str, url: str) -> str:
        """The endpoint's signing secret (``whsec_…``), made the first time the tenant names the URL."""
        sql = "SELECT secret FROM webhook_endpoints WHERE tenant = ? AND url = ?"
        found = self.db.scalar(sql, (tenant, url))
        if found is not None:
            return str(found)  # every delivery reads it: no write lock unless it must be made
        with self.db.transaction():
            self.db.lock(f"webhook-endpoint:{tenant}:{url}")
            known = self.db.scalar(sql, (tenant, url))
            if known is not None:
                return str(known)
            made = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            self.db.run(
                "INSERT INTO webhook_endpoints(tenant, url, secret, created) VALUES (?,?,?,?)",
                (tenant, url, made, time.time()),
            )
            return made

    def endpoints(self, tenant: str | None) -> list[dict[str, Any]]:
        where = Where().eq("tenant", tenant)
        return self.db.all(
            f"SELECT tenant, url, created FROM webhook_endpoints WHERE {where} ORDER BY created", where.args
        )

    def enqueue(self, tenant: str, subject: str, url: str, event: str, payload: Any, *, give_up_s: float) -> str:
        now = time.time()
        msg_id = f"msg_{uuid.uuid4().hex[:24]}"
        with self.db.transaction():
            self.db.run(
                "INSERT INTO webhook_deliveries(id, tenant, subject, url, event, payload, status, attempts, next_at, "
                "created, give_up) VALUES (?,?,?,?,?,?,'pending',0,?,?,?)",
                (msg_id, tenant, subject, url, event, orjson.dumps(payload).decode(), now, now, now + give_up_s),
            )
        return msg_id

    def claim(self, *, limit: int = 20) -> list[Delivery]:
        """Due deliveries, each now held for :data:`CLAIM_S` by the caller."""
        now = time.time()
        if (
            self.db.scalar("SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? LIMIT 1", (now,))
            is None
        ):
            return []  # an idle poll reads only
        skip = " FOR UPDATE SKIP LOCKED" if self.db.postgres else ""
        with self.db.transaction():
            rows = self.db.all(
                "UPDATE webhook_deliveries SET next_at = ? WHERE id IN (SELECT id FROM webhook_deliveries WHERE "
                f"status = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?{skip}) AND status = 'pending' "
                "RETURNING *",
                (now + CLAIM_S, now, limit),
            )
        return [_delivery(r) for r in rows]

    def attempted(self, d: Delivery, *, status: int | None, error: str | None, retry_at: float | None) -> str:
        """Log one attempt: ``delivered`` (2xx), ``pending`` again at ``retry_at``, or ``failed`` when
        ``retry_at`` is None or past the delivery's give-up time."""
        now = time.time()
        ok = status is not None and 200 <= status < 300
        state = "delivered" if ok else ("pending" if retry_at is not None and retry_at < d.give_up else "failed")
        log = [*d.log, {"at": now, "status": status, "error": error}]
        if len(log) > MAX_LOG:
            log = [log[0], *log[-(MAX_LOG - 1) :]]
        with self.db.transaction():
            self.db.run(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_at = ?, last_status = ?, "
                "last_error = ?, log = ?, delivered = ? WHERE id = ?",
                (state, retry_at if state == "pending" else now, status, error, orjson.dumps(log).decode(),
                 now if ok else None, d.id),
            )  # fmt: skip
        return state

    def find(
        self, *, tenant: str | None, subject: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        where = Where().eq("tenant", tenant).eq("subject", subject).eq("status", status)
        rows = self.db.all(
            f"SELECT * FROM webhook_deliveries WHERE {where} ORDER BY created DESC, id DESC LIMIT ?",
            (*where.args, limit),
        )
        return [_delivery(r) for r in rows]

    def redeliver(self, msg_id: str, *, tenant: str | None, give_up_s: float) -> Delivery | None:
        """Send a delivery again now (a failed one too), with a fresh give-up time."""
        now = time.time()
        where = Where().eq("id", msg_id).eq("tenant", tenant)
        with self.db.transaction():
            row = self.db.one(
                f"UPDATE webhook_deliveries SET status = 'pending', next_at = ?, give_up = ? WHERE {where} RETURNING *",
                (now, now + give_up_s, *where.args),
            )
        return _delivery(row) if row is not None else None
