"""Batches (the OpenAI Batch API's): a batch row, and one row per finished line.

A batch moves ``validating → in_progress → finalizing → completed``, or ends ``failed``,
``expired`` (its window passed) or ``cancelling → cancelled``; every move is a conditional update,
so two workers (or a worker and a reader that finds the window passed) can never both make it. A
line's result is written once (``ON CONFLICT DO NOTHING`` on the batch and line number): a retried
attempt skips the lines already written, so no line is answered, counted or charged twice in the
batch; its output file is built from these rows when the batch ends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from keel.store.db import Database, Where, decode_keyset, encode_keyset

STATES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")
ENDED = ("failed", "completed", "expired", "cancelled")
STAMPS = {  # the state → the column stamped when a batch enters it
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    tenant: str
    status: str
    endpoint: str
    input_file_id: str
    completion_window: str
    total: int
    created: float
    expires: float
    job_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None
    reserved_usd: float | None = None
    key: str | None = None
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Line:
    line: int
    custom_id: str
    ok: bool
    status_code: int | None
    body: Any
    error: Any
    cost_usd: float | None
    trace_id: str | None


def _batch(row: dict[str, Any]) -> Batch:
    data = dict(row)
    for name in ("metadata", "errors"):
        data[name] = orjson.loads(data[name]) if data[name] is not None else None
    return Batch(**data)


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


class BatchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        tenant: str,
        *,
        endpoint: str,
        input_file_id: str,
        completion_window: str,
        window_s: float,
        total: int,
        metadata: dict[str, str] | None,
        key: str | None,
        reserved_usd: float | None,
    ) -> Batch:
        now = time.time()
        row = self.db.one(
            "INSERT INTO batches(id, tenant, status, endpoint, input_file_id, completion_window, total, metadata, "
            "reserved_usd, key, created, expires) VALUES (?,?,'validating',?,?,?,?,?,?,?,?,?) RETURNING *",
            (f"batch_{uuid.uuid4().hex[:24]}", tenant, endpoint, input_file_id, completion_window, total,
             _json(metadata), reserved_usd, key, now, now + window_s),
        )  # fmt: skip
        assert row is not None
        return _batch(row)

    def attach(self, batch_id: str, job_id: str) -> None:
        self.db.run("UPDATE batches SET job_id = ? WHERE id = ?", (job_id, batch_id))

    def get(self, batch_id: str, *, tenant: str | None) -> Batch | None:
        where = Where().eq("id", batch_id).eq("tenant", tenant)
        row = self.db.one(f"SELECT * FROM batches WHERE {where}", where.args)
        return _batch(row) if row is not None else None

    def find(self, *, tenant: str | None, cursor: str | None = None, limit: int = 20) -> list[Batch]:
        where = Where().eq("tenant", tenant)
        if cursor is not None:
            created, batch_id = decode_keyset(cursor)
            where.add("(created < ? OR (created = ? AND id < ?))", created, created, batch_id)
        rows = self.db.all(
            f"SELECT * FROM batches WHERE {where} ORDER BY created DESC, id DESC LIMIT ?", (*where.args, limit)
        )
        return [_batch(r) for r in rows]

    def move(self, batch_id: str, from_states: Sequence[str], to: str, **fields: Any) -> Batch | None:
        """``to`` if the batch is in one of ``from_states`` now (None: it was not, nothing changed)."""
        sets = {"status": to, **fields}
        if to in STAMPS:
            sets[STAMPS[to]] = time.time()
        for name in ("errors",):
            if name in sets:
                sets[name] = _json(sets[name])
        assign = ", ".join(f"{k} = ?" for k in sets)
        marks = ", ".join("?" * len(from_states))
        with self.db.transaction():
            row = self.db.one(
                f"UPDATE batches SET {assign} WHERE id = ? AND status IN ({marks}) RETURNING *",
                (*sets.values(), batch_id, *from_states),
            )
        return _batch(row) if row is not None else None

    # -- lines ---------------------------------------------------------------------------------------
    def record(self, batch_id: str, line: Line) -> bool:
        """A line's result, once: False when it was already written (an earlier attempt's stands)."""
        with self.db.transaction():
            return bool(
                self.db.run(
                    "INSERT INTO batch_lines(batch_id, line, custom_id, ok, status_code, body, error, cost_usd, "
                    "trace_id, finished) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (batch_id, line) DO NOTHING",
                    (
                        batch_id,
                        line.line,
                        line.custom_id,
                        int(line.ok),
                        line.status_code,
                        _json(line.body),
                        _json(line.error),
                        line.cost_usd,
                        line.trace_id,
                        time.time(),
                    ),
                )
            )

    def finished_lines(self, batch_id: str) -> set[int]:
        return {int(r["line"]) for r in self.db.all("SELECT line FROM batch_lines WHERE batch_id = ?", (batch_id,))}

    def counts(self, batch_id: str) -> tuple[int, int, float | None]:
        """Lines completed and failed so far, and what the completed ones cost (None: some unpriced)."""
        row = self.db.one(
            "SELECT sum(CASE WHEN ok = 1 THEN 1 ELSE 0 END) AS completed, sum(CASE WHEN ok = 1 THEN 0 ELSE 1 END) "
            "AS failed, sum(cost_usd) AS cost, sum(CASE WHEN ok = 1 AND cost_usd IS NULL THEN 1 ELSE 0 END) "
            "AS unpriced FROM batch_lines WHERE batch_id = ?",
            (batch_id,),
        )
        assert row is not None
        cost = None if row["unpriced"] else float(row["cost"] or 0.0)
        return int(row["completed"] or 0), int(row["failed"] or 0), cost

    def lines(self, batch_id: str, *, page: int = 1000) -> Iterator[Line]:
        """Every finished line in line order, read a page at a time."""
        after = -1
        while True:
            rows = self.db.all(
                "SELECT * FROM batch_lines WHERE batch_id = ? AND line > ? ORDER BY line LIMIT ?",
                (batch_id, after, page),
            )
            for r in rows:
                yield Line(
                    int(r["line"]),
                    r["custom_id"],
                    bool(r["ok"]),
                    r["status_code"],
                    orjson.loads(r["body"]) if r["body"] is not None else None,
                    orjson.loads(r["error"]) if r["error"] is not None else None,
                    r["cost_usd"],
                    r["trace_id"],
                )
            if len(rows) < page:
                return
            after = int(rows[-1]["line"])


def batch_cursor(b: Batch) -> str:
    return encode_keyset(b.created, b.id)
