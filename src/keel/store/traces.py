"""Trace rows: one per call, with every attempt, usage, cost and captured content."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from keel.errors import KeelError, UserError


@dataclass(slots=True)
class TraceRecord:
    id: str
    ts: float
    operation: str  # chat | embeddings
    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    alias: str | None = None
    deployment: str | None = None
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: str = "ok"  # ok | error | cancelled
    http_status: int | None = None
    error_type: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: str | None = None  # provider | estimated | none
    cost_usd: float | None = None
    cost_source: str | None = None  # e.g. "price table 2026-11-01 × provider usage", "local", "unpriced"
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    request: Any = None
    response: Any = None
    parent: str | None = None  # the feature run (operation "feature") this call was part of
    prompt: str | None = None
    prompt_version: int | None = None
    experiment: str | None = None
    arm: str | None = None
    notes: list[str] | None = None  # what a feature run wants remembered: prompt fallback, bad citations…


COLUMNS = [f.name for f in fields(TraceRecord)]
JSON_COLUMNS = {"attempts", "request", "response", "notes"}
INSERT_SQL = f"INSERT OR REPLACE INTO traces({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def outcome(error: BaseException | None, *, cancelled: bool = False) -> dict[str, Any]:
    """The status fields of a trace row for a call that ended with ``error`` (None: it succeeded)."""
    status = "cancelled" if cancelled else "error" if error is not None else "ok"
    return {
        "status": status,
        "http_status": (error.status if isinstance(error, KeelError) else 500) if error is not None else 200,
        "error_type": type(error).__name__ if error is not None else None,
        "error": (error.message if isinstance(error, KeelError) else repr(error)) if error is not None else None,
    }


def record_params(rec: TraceRecord) -> tuple[Any, ...]:
    values = []
    for name in COLUMNS:
        value = getattr(rec, name)
        if name in JSON_COLUMNS:
            value = None if value is None else orjson.dumps(value).decode()
        elif name == "stream":
            value = int(value)
        values.append(value)
    return tuple(values)


def _from_row(row: sqlite3.Row) -> TraceRecord:
    data = dict(row)
    for name in JSON_COLUMNS:
        if data.get(name) is not None:
            data[name] = orjson.loads(data[name])
    data["stream"] = bool(data["stream"])
    return TraceRecord(**data)


def list_traces(
    conn: sqlite3.Connection,
    *,
    limit: int = 20,
    since: float | None = None,
    after_ts: float | None = None,
    status: str | None = None,
) -> list[TraceRecord]:
    where: list[str] = ["1=1"]
    params: list[object] = []
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if after_ts is not None:
        where.append("ts > ?")
        params.append(after_ts)
    if status:
        where.append("status = ?")
        params.append(status)
    order = "ASC" if after_ts is not None else "DESC"
    sql = f"SELECT * FROM traces WHERE {' AND '.join(where)} ORDER BY ts {order} LIMIT ?"
    return [_from_row(r) for r in conn.execute(sql, (*params, limit))]


def get_trace(conn: sqlite3.Connection, trace_id: str) -> TraceRecord | None:
    if not trace_id or len(trace_id) < 6:
        raise UserError("give at least 6 characters of the trace id")
    rows = conn.execute("SELECT * FROM traces WHERE id LIKE ? LIMIT 2", (trace_id.replace("%", "") + "%",)).fetchall()
    if len(rows) > 1:
        raise UserError(f"'{trace_id}' matches more than one trace; give more of the id")
    return _from_row(rows[0]) if rows else None


COST_DIMENSIONS = {
    "model": "coalesce(model, alias)",
    "deployment": "deployment",
    "tenant": "tenant",
    "user": "user",
    "feature": "feature",
    "day": "date(ts, 'unixepoch')",
    "alias": "alias",
    "status": "status",
}


def cost_summary(conn: sqlite3.Connection, by: Sequence[str], *, since: float | None = None) -> list[dict[str, Any]]:
    unknown = [b for b in by if b not in COST_DIMENSIONS]
    if unknown or not by:
        raise UserError(f"group by one or more of: {', '.join(COST_DIMENSIONS)} (got {', '.join(unknown) or 'none'})")
    keys = [f"{COST_DIMENSIONS[b]} AS {b}" for b in by]
    where = "AND ts >= ?" if since is not None else ""  # feature rows sum their calls: never count twice
    sql = (
        f"SELECT {', '.join(keys)}, count(*) AS calls, sum(status != 'ok') AS errors, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "sum(cached_tokens) AS cached_tokens, sum(coalesce(cost_usd, 0)) AS cost_usd, "
        "sum(CASE WHEN usage_source = 'provider' THEN coalesce(cost_usd, 0) ELSE 0 END) AS reported_usd, "
        "sum(CASE WHEN usage_source = 'estimated' THEN coalesce(cost_usd, 0) ELSE 0 END) AS estimated_usd, "
        "sum(cost_usd IS NULL AND status = 'ok') AS unpriced, avg(latency_ms) AS avg_latency_ms "
        f"FROM traces WHERE operation != 'feature' {where} GROUP BY {', '.join(by)} ORDER BY cost_usd DESC, calls DESC"
    )
    return [dict(r) for r in conn.execute(sql, (since,) if since is not None else ())]


def as_dict(rec: TraceRecord) -> dict[str, Any]:
    return asdict(rec)


def interactions(
    conn: sqlite3.Connection, by: Sequence[str], *, since: float | None = None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Feature runs (one user interaction each, its model calls summed) grouped like ``cost_summary``:
    how many, and what one cost on average."""
    usable = [b for b in by if b in ("feature", "tenant", "user", "day")]
    if len(usable) != len(by):
        return {}
    keys = [f"{COST_DIMENSIONS[b]} AS {b}" for b in by]
    where = "AND ts >= ?" if since is not None else ""
    sql = (
        f"SELECT {', '.join(keys)}, count(*) AS runs, avg(coalesce(cost_usd, 0)) AS per_run "
        f"FROM traces WHERE operation = 'feature' {where} GROUP BY {', '.join(by)}"
    )
    rows = conn.execute(sql, (since,) if since is not None else ())
    return {tuple(r[b] for b in by): dict(r) for r in rows}


def traffic(conn: sqlite3.Connection, *, since: float | None, feature: str | None = None) -> list[dict[str, Any]]:
    """Every successful model call in the window — user, model, tokens, cost, time — what ``keel cost
    model`` projects from. Feature rows are skipped; their model calls are counted."""
    where: list[str] = ["operation = 'chat'", "status = 'ok'"]
    args: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if feature is not None:
        where.append("feature = ?")
        args.append(feature)
    sql = (
        "SELECT coalesce(user, '-') AS user, coalesce(model, alias) AS model, deployment, input_tokens, "
        f"output_tokens, cost_usd, ts FROM traces WHERE {' AND '.join(where)}"
    )
    return [dict(r) for r in conn.execute(sql, args)]
