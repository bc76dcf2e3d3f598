"""Trace rows: one per call, with every attempt, usage, cost and captured content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from keel.errors import KeelError, UserError
from keel.store import rollups
from keel.store.db import Database, Where, decode_keyset, encode_keyset


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
    steps: list[dict[str, Any]] | None = None  # a feature run's steps: name, start and length (ms), what each found

    def found(self, step: str) -> dict[str, Any]:
        """What the feature run's step of that name found ({} when it has none)."""
        for s in self.steps or []:
            if s.get("name") == step:
                found = s.get("found")
                return found if isinstance(found, dict) else {}
        return {}


COLUMNS = [f.name for f in fields(TraceRecord)]
JSON_COLUMNS = {"attempts", "request", "response", "notes", "steps"}
_QUOTED = [f'"{c}"' if c == "user" else c for c in COLUMNS]  # USER is a reserved word in Postgres
INSERT_SQL = (
    f"INSERT INTO traces({', '.join(_QUOTED)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{q} = excluded.{q}' for q in _QUOTED[1:])}"
)
FILTERS = ("feature", "user", "status", "model", "operation", "error_type", "tenant")
TEXT_SCAN = 20_000  # rows a free-text filter reads per page, at most


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


def _from_row(row: dict[str, Any]) -> TraceRecord:
    data: dict[str, Any] = {name: row.get(name) for name in COLUMNS}
    for name in JSON_COLUMNS:
        if data.get(name) is not None:
            data[name] = orjson.loads(data[name])
    data["stream"] = bool(data["stream"])
    return TraceRecord(**data)


def encode_cursor(rec: TraceRecord) -> str:
    return encode_keyset(rec.ts, rec.id)


COST_DIMENSIONS = {
    "model": "coalesce(model, alias)",
    "deployment": "deployment",
    "tenant": "tenant",
    "user": '"user"',
    "feature": "feature",
    "day": "",  # the dialect's, see Database.day
    "alias": "alias",
    "status": "status",
}


class Traces:
    """The trace repository: one row per call and per feature run, always read within a tenant
    (``tenant=None`` is the admin's view of every tenant)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, records: Sequence[TraceRecord]) -> None:
        """Insert (or replace) rows and roll the new ones up by hour, in one transaction: the
        batched writer's one call."""
        params = [record_params(r) for r in records]  # a row that cannot be serialised fails here, first
        with self.db.transaction():
            known: set[str] = set()
            ids = [r.id for r in records]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                known.update(r["id"] for r in self.db.all(f"SELECT id FROM traces WHERE id IN ({marks})", chunk))
            self.db.many(INSERT_SQL, params)
            rollups.apply(self.db, [r for r in records if r.id not in known])

    def find(
        self,
        *,
        tenant: str | None,
        limit: int = 20,
        since: float | None = None,
        after_ts: float | None = None,
        cursor: str | None = None,
        text: str | None = None,
        min_cost: float | None = None,
        min_latency_ms: float | None = None,
        scan: int = TEXT_SCAN,
        **filters: str | None,
    ) -> list[TraceRecord]:
        """Newest first (``after_ts``: oldest first, for tailing). ``filters`` are exact matches on
        feature, user, status, model (or its alias), operation, error type and tenant; ``min_cost`` and
        ``min_latency_ms`` floors. ``text`` matches inside the captured (redacted) input and output,
        case-folded, among the newest ``scan`` rows past the cursor that the other filters keep — a
        bounded scan per page, never one over every trace."""
        where = Where().eq("tenant", tenant)
        for name, value in filters.items():
            if name not in FILTERS:
                raise UserError(f"unknown trace filter '{name}' (filters: {', '.join(FILTERS)})")
            if value is None or value == "":
                continue
            if name == "model":
                where.add("(model = ? OR alias = ?)", value, value)
            else:
                where.eq(COST_DIMENSIONS["user"] if name == "user" else name, value)
        where.add("ts >= ?", since).add("ts > ?", after_ts)
        where.add("cost_usd >= ?", min_cost).add("latency_ms >= ?", min_latency_ms)
        if cursor is not None:
            ts, trace_id = decode_keyset(cursor)
            where.add("(ts < ? OR (ts = ? AND id < ?))", ts, ts, trace_id)
        order = "ASC" if after_ts is not None else "DESC"
        sql = f"SELECT * FROM traces WHERE {where} ORDER BY ts {order}, id {order} LIMIT ?"
        if not text:
            return [_from_row(r) for r in self.db.all(sql, (*where.args, limit))]
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matched = (
            f"SELECT * FROM ({sql}) AS newest WHERE lower(coalesce(request, '')) LIKE ? ESCAPE '\\' "
            f"OR lower(coalesce(response, '')) LIKE ? ESCAPE '\\' ORDER BY ts {order}, id {order} LIMIT ?"
        )
        return [_from_row(r) for r in self.db.all(matched, (*where.args, scan, pattern, pattern, limit))]

    def get(self, trace_id: str, *, tenant: str | None) -> TraceRecord | None:
        """A trace by its id or an unambiguous prefix of at least 6 characters."""
        if not trace_id or len(trace_id) < 6:
            raise UserError("give at least 6 characters of the trace id")
        whole = Where().eq("id", trace_id).eq("tenant", tenant)  # the whole id: one index probe
        found = self.db.one(f"SELECT * FROM traces WHERE {whole}", whole.args)
        if found is not None:
            return _from_row(found)
        where = Where().add("id LIKE ?", trace_id.replace("%", "").replace("_", "") + "%").eq("tenant", tenant)
        rows = self.db.all(f"SELECT * FROM traces WHERE {where} ORDER BY id LIMIT 2", where.args)
        if len(rows) > 1:
            raise UserError(f"'{trace_id}' matches more than one trace; give more of the id")
        return _from_row(rows[0]) if rows else None

    def exists(self, trace_id: str, *, tenant: str | None) -> bool:
        where = Where().eq("id", trace_id).eq("tenant", tenant)
        return self.db.scalar(f"SELECT 1 FROM traces WHERE {where}", where.args) is not None

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of these trace ids have a row (any tenant)."""
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.db.all(f"SELECT id FROM traces WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk))
            found.update(str(r["id"]) for r in rows)
        return found

    def children(self, parent: str, *, tenant: str | None) -> list[TraceRecord]:
        where = Where().eq("parent", parent).eq("tenant", tenant)
        return [_from_row(r) for r in self.db.all(f"SELECT * FROM traces WHERE {where} ORDER BY ts", where.args)]

    def count(self, *, tenant: str | None = None) -> int:
        where = Where().eq("tenant", tenant)
        return int(self.db.scalar(f"SELECT count(*) FROM traces WHERE {where}", where.args))

    def _dimension(self, name: str) -> str:
        return self.db.day("ts") if name == "day" else COST_DIMENSIONS[name]

    def cost_summary(
        self, by: Sequence[str], *, since: float | None = None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        unknown = [b for b in by if b not in COST_DIMENSIONS]
        if unknown or not by:
            raise UserError(
                f"group by one or more of: {', '.join(COST_DIMENSIONS)} (got {', '.join(unknown) or 'none'})"
            )
        keys = [f"{self._dimension(b)} AS {_alias(b)}" for b in by]
        # feature rows sum their calls: never count twice
        where = Where("operation <> 'feature'").eq("tenant", tenant).add("ts >= ?", since)
        sql = (
            f"SELECT {', '.join(keys)}, count(*) AS calls, sum(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) AS errors, "
            "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
            "sum(cached_tokens) AS cached_tokens, sum(coalesce(cost_usd, 0)) AS cost_usd, "
            "sum(CASE WHEN usage_source = 'provider' THEN coalesce(cost_usd, 0) ELSE 0 END) AS reported_usd, "
            "sum(CASE WHEN usage_source = 'estimated' THEN coalesce(cost_usd, 0) ELSE 0 END) AS estimated_usd, "
            "sum(CASE WHEN cost_usd IS NULL AND status = 'ok' THEN 1 ELSE 0 END) AS unpriced, "
            "avg(latency_ms) AS avg_latency_ms "
            f"FROM traces WHERE {where} GROUP BY {', '.join(self._dimension(b) for b in by)} "
            "ORDER BY cost_usd DESC, calls DESC"
        )
        return [_unalias(r) for r in self.db.all(sql, where.args)]

    def interactions(
        self, by: Sequence[str], *, since: float | None = None, tenant: str | None = None
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Feature runs (one user interaction each, its model calls summed) grouped like
        ``cost_summary``: how many, and what one cost on average."""
        if not all(b in ("feature", "tenant", "user", "day") for b in by):
            return {}
        keys = [f"{self._dimension(b)} AS {_alias(b)}" for b in by]
        where = Where("operation = 'feature'").eq("tenant", tenant).add("ts >= ?", since)
        sql = (
            f"SELECT {', '.join(keys)}, count(*) AS runs, avg(coalesce(cost_usd, 0)) AS per_run "
            f"FROM traces WHERE {where} GROUP BY {', '.join(self._dimension(b) for b in by)}"
        )
        return {tuple(r[b] for b in by): r for r in map(_unalias, self.db.all(sql, where.args))}

    def traffic(
        self, *, since: float | None, feature: str | None = None, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Every successful model call in the window — user, model, tokens, cost, time — what
        ``keel cost model`` projects from. Feature rows are skipped; their model calls are counted."""
        where = Where("operation = 'chat'", "status = 'ok'").eq("tenant", tenant).add("ts >= ?", since)
        where.eq("feature", feature)
        sql = (
            "SELECT coalesce(\"user\", '-') AS who, coalesce(model, alias) AS model, deployment, input_tokens, "
            f"output_tokens, cost_usd, ts FROM traces WHERE {where}"
        )
        return [{"user": r.pop("who"), **r} for r in self.db.all(sql, where.args)]

    def experiment_runs(self, experiment: str, *, tenant: str) -> list[dict[str, Any]]:
        return self.db.all(
            "SELECT id, arm, status, latency_ms, cost_usd FROM traces "
            "WHERE operation = 'feature' AND experiment = ? AND tenant = ?",
            (experiment, tenant),
        )

    def dashboard(
        self,
        *,
        tenant: str | None,
        since: float,
        by: str | None = None,
        bucket_s: int = rollups.HOUR,
        feature: str | None = None,
        values: Sequence[str | None] | None = None,
        percentiles: bool = True,
    ) -> list[dict[str, Any]]:
        """The rollups read for a dashboard (see :func:`keel.store.rollups.read`)."""
        return rollups.read(
            self.db,
            tenant=tenant,
            since=since,
            by=by,
            bucket_s=bucket_s,
            feature=feature,
            values=values,
            percentiles=percentiles,
        )

    def failures(self, *, tenant: str | None, since: float, limit: int = 50) -> list[dict[str, Any]]:
        """Failed calls and runs since ``since`` grouped by error type, operation, feature and
        deployment: count, first and last seen, an example trace, and counts per day (newest groups
        first). Reads only failed rows (a partial index), whatever the volume of good ones."""
        where = Where("status <> 'ok'").eq("tenant", tenant).add("ts >= ?", since)
        groups = self.db.all(
            "SELECT coalesce(error_type, status) AS error_type, operation, feature, deployment, count(*) AS n, "
            f"min(ts) AS first, max(ts) AS last, max(id) AS example FROM traces WHERE {where} "
            "GROUP BY 1, 2, 3, 4 ORDER BY n DESC, last DESC LIMIT ?",
            (*where.args, limit),
        )
        day = self.db.day("ts")
        daily = self.db.all(
            f"SELECT coalesce(error_type, status) AS error_type, operation, feature, deployment, {day} AS day, "
            f"count(*) AS n FROM traces WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            where.args,
        )
        per: dict[tuple[Any, ...], dict[str, int]] = {}
        for d in daily:
            per.setdefault((d["error_type"], d["operation"], d["feature"], d["deployment"]), {})[str(d["day"])] = int(
                d["n"]
            )
        for g in groups:
            g["days"] = per.get((g["error_type"], g["operation"], g["feature"], g["deployment"]), {})
        return groups

    def prune_rollups(self) -> int:
        """Forget the five-minute rollups older than two days (the writer does it, retention or not)."""
        return rollups.purge(self.db, None)

    def purge(self, before: float, *, batch: int = 5000, max_batches: int | None = None) -> int:
        """Delete rows older than ``before`` in bounded batches (short transactions, no long lock),
        and the rollups of the hours that ended before it."""
        rollups.purge(self.db, before)
        deleted, rounds = 0, 0
        while max_batches is None or rounds < max_batches:
            n = self.db.run(
                "DELETE FROM traces WHERE id IN (SELECT id FROM traces WHERE ts < ? LIMIT ?)", (before, batch)
            )
            deleted += n
            rounds += 1
            if n < batch:
                break
        return deleted


def _alias(name: str) -> str:
    return "who" if name == "user" else name  # USER is reserved in Postgres, even as an alias


def _unalias(row: dict[str, Any]) -> dict[str, Any]:
    if "who" in row:
        row["user"] = row.pop("who")
    return row


def as_dict(rec: TraceRecord) -> dict[str, Any]:
    return asdict(rec)
