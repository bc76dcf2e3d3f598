"""What monitors keep (keel.monitor), per tenant:

- ``monitor_runs``: one row per feature run, the judge-free signals read off its trace (pass or
  fail of each output guard, confidence, refusal, latency, cost, retrieval's top score…) with
  what served it: prompt version, model, index version, experiment arm;
- ``monitor_scores``: a sampled run's checks — one row per (run, monitor, check), stored like an
  eval result (passed, score, reason), or as an error row when the evaluator failed, or a skip
  row when the day's judge budget was spent — each saying why the run was sampled and which
  evaluator ran;
- ``monitor_inputs``: a sampled run's input embedding (float16), for input drift;
- ``monitor_alerts``: alerts opened and closed, with their message;
- ``monitor_cursor``: how far the sweeper has read the traces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from keel.store.db import Database, Where

LIMIT = 20_000  # rows a comparison reads per window, an even sample past it (power saturates long before)


def monitor_tables(real: str, blob: str, serial: str) -> str:
    """The migration that makes the tables (the engine's float, bytes and identity types)."""
    return f"""
    CREATE TABLE monitor_runs (
        tenant TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        feature TEXT NOT NULL,
        ts {real} NOT NULL,
        prompt_version INTEGER,
        model TEXT,
        index_version TEXT,
        arm TEXT,
        vals TEXT NOT NULL,
        PRIMARY KEY (tenant, trace_id)
    );
    CREATE INDEX monitor_runs_feature ON monitor_runs(tenant, feature, ts);
    CREATE TABLE monitor_scores (
        tenant TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        monitor TEXT NOT NULL,
        check_name TEXT NOT NULL,
        feature TEXT NOT NULL,
        ts {real} NOT NULL,
        scored {real} NOT NULL,
        status TEXT NOT NULL,
        passed INTEGER,
        score {real},
        reason TEXT,
        evaluator TEXT NOT NULL,
        why TEXT NOT NULL,
        cost_usd {real},
        prompt_version INTEGER,
        model TEXT,
        index_version TEXT,
        PRIMARY KEY (tenant, trace_id, monitor, check_name)
    );
    CREATE INDEX monitor_scores_feature ON monitor_scores(tenant, feature, ts);
    CREATE INDEX monitor_scores_spend ON monitor_scores(tenant, feature, monitor, scored);
    CREATE TABLE monitor_inputs (
        tenant TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        feature TEXT NOT NULL,
        ts {real} NOT NULL,
        vector {blob} NOT NULL,
        PRIMARY KEY (tenant, trace_id)
    );
    CREATE INDEX monitor_inputs_feature ON monitor_inputs(tenant, feature, ts);
    CREATE TABLE monitor_alerts (
        id {serial},
        tenant TEXT NOT NULL,
        feature TEXT NOT NULL,
        signal TEXT NOT NULL,
        opened {real} NOT NULL,
        closed {real},
        message TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE UNIQUE INDEX monitor_alerts_open ON monitor_alerts(tenant, feature, signal) WHERE closed IS NULL;
    CREATE TABLE monitor_cursor (name TEXT PRIMARY KEY, at {real} NOT NULL)
    """


@dataclass(slots=True)
class MonitorRun:
    tenant: str
    trace_id: str
    feature: str
    ts: float
    values: dict[str, Any]
    prompt_version: int | None = None
    model: str | None = None
    index_version: str | None = None
    arm: str | None = None


@dataclass(slots=True)
class Score:
    tenant: str
    trace_id: str
    monitor: str
    check: str
    feature: str
    ts: float  # when the run was
    status: str  # ok | error | skipped
    evaluator: str  # the check as configured
    why: str  # why the run was sampled
    passed: bool | None = None
    score: float | None = None
    reason: str | None = None
    cost_usd: float | None = None
    prompt_version: int | None = None
    model: str | None = None
    index_version: str | None = None
    scored: float = 0.0


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    tenant: str
    feature: str
    signal: str
    opened: float
    closed: float | None
    message: str
    detail: dict[str, Any]


RUN_COLUMNS = ("tenant", "trace_id", "feature", "ts", "prompt_version", "model", "index_version", "arm", "vals")
SCORE_COLUMNS = (
    "tenant, trace_id, monitor, check_name, feature, ts, scored, status, passed, score, reason, evaluator, why, "
    "cost_usd, prompt_version, model, index_version"
)


class MonitorStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs ----------------------------------------------------------------------------------------
    def add_runs(self, runs: Sequence[MonitorRun]) -> None:
        """Rows for runs not seen yet (a run read twice is kept once)."""
        self.db.many(
            "INSERT INTO monitor_runs(tenant, trace_id, feature, ts, prompt_version, model, index_version, arm, vals) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (tenant, trace_id) DO NOTHING",
            [
                (r.tenant, r.trace_id, r.feature, r.ts, r.prompt_version, r.model, r.index_version, r.arm,
                 orjson.dumps(r.values).decode())
                for r in runs
            ],
        )  # fmt: skip

    def runs(self, tenant: str, feature: str, since: float, until: float, *, limit: int = LIMIT) -> list[MonitorRun]:
        """The feature's runs in [since, until), oldest first — all of them, or past ``limit`` an even
        sample across the span (trace ids are random, so the first ``limit`` by id are a uniform
        draw: a 7-day reference stays 7 days, not its newest hours)."""
        rows = self.db.all(
            "SELECT * FROM monitor_runs WHERE tenant = ? AND feature = ? AND ts >= ? AND ts < ? "
            "ORDER BY trace_id LIMIT ?",
            (tenant, feature, since, until, limit),
        )
        rows.sort(key=lambda r: (r["ts"], r["trace_id"]))
        return [
            MonitorRun(
                r["tenant"], r["trace_id"], r["feature"], float(r["ts"]), orjson.loads(r["vals"]),
                r["prompt_version"], r["model"], r["index_version"], r["arm"],
            )
            for r in rows
        ]  # fmt: skip

    def features(self, tenant: str, since: float) -> list[str]:
        rows = self.db.all(
            "SELECT DISTINCT feature FROM monitor_runs WHERE tenant = ? AND ts >= ? ORDER BY feature", (tenant, since)
        )
        return [r["feature"] for r in rows]

    def tenants(self, since: float) -> list[str]:
        rows = self.db.all("SELECT DISTINCT tenant FROM monitor_runs WHERE ts >= ? ORDER BY tenant", (since,))
        return [r["tenant"] for r in rows]

    def feedback(self, tenant: str, feature: str, since: float, until: float) -> list[tuple[str, str, float]]:
        """(trace id, name, value) of the numeric feedback on the feature's runs in [since, until)."""
        rows = self.db.all(
            "SELECT f.trace_id, f.name, f.value FROM feedback f JOIN monitor_runs r "
            "ON r.tenant = f.tenant AND r.trace_id = f.trace_id "
            "WHERE r.tenant = ? AND r.feature = ? AND r.ts >= ? AND r.ts < ? AND f.value IS NOT NULL LIMIT ?",
            (tenant, feature, since, until, LIMIT),
        )
        return [(r["trace_id"], r["name"], float(r["value"])) for r in rows]

    # -- scores --------------------------------------------------------------------------------------
    def add_scores(self, scores: Sequence[Score]) -> None:
        """A sampled run's scores; scoring the same (run, monitor, check) again replaces its row."""
        now = time.time()
        self.db.many(
            f"INSERT INTO monitor_scores({SCORE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (tenant, trace_id, monitor, check_name) DO UPDATE SET scored = excluded.scored, "
            "status = excluded.status, passed = excluded.passed, score = excluded.score, "
            "reason = excluded.reason, evaluator = excluded.evaluator, why = excluded.why, "
            "cost_usd = excluded.cost_usd",
            [
                (s.tenant, s.trace_id, s.monitor, s.check, s.feature, s.ts, s.scored or now, s.status,
                 None if s.passed is None else int(s.passed), s.score, s.reason, s.evaluator, s.why,
                 s.cost_usd, s.prompt_version, s.model, s.index_version)
                for s in scores
            ],
        )  # fmt: skip

    def scores(
        self,
        tenant: str,
        feature: str,
        since: float,
        until: float,
        *,
        monitor: str | None = None,
        status: str | None = None,
        trace_id: str | None = None,
        limit: int = LIMIT,
    ) -> list[Score]:
        """The feature's scores in [since, until) — one monitor's, or every monitor's — oldest first."""
        where = Where("ts >= ?", "ts < ?").eq("tenant", tenant).eq("feature", feature).eq("monitor", monitor)
        where.eq("status", status).eq("trace_id", trace_id)
        rows = self.db.all(
            f"SELECT {SCORE_COLUMNS} FROM monitor_scores WHERE {where} ORDER BY trace_id, check_name LIMIT ?",
            (since, until, *where.args, limit),
        )
        return sorted((_score(r) for r in rows), key=lambda s: (s.ts, s.trace_id))

    def scored(self, tenant: str, trace_id: str) -> list[Score]:
        rows = self.db.all(
            f"SELECT {SCORE_COLUMNS} FROM monitor_scores WHERE tenant = ? AND trace_id = ? "
            "ORDER BY monitor, check_name",
            (tenant, trace_id),
        )
        return [_score(r) for r in rows]

    def spent(self, tenant: str, feature: str, monitor: str, since: float) -> float:
        """What the monitor's judges spent on this feature since ``since``."""
        total = self.db.scalar(
            "SELECT coalesce(sum(cost_usd), 0) FROM monitor_scores "
            "WHERE tenant = ? AND feature = ? AND monitor = ? AND scored >= ?",
            (tenant, feature, monitor, since),
        )
        return float(total or 0.0)

    # -- inputs --------------------------------------------------------------------------------------
    def add_input(self, tenant: str, trace_id: str, feature: str, ts: float, vector: bytes) -> None:
        self.db.run(
            "INSERT INTO monitor_inputs(tenant, trace_id, feature, ts, vector) VALUES (?,?,?,?,?) "
            "ON CONFLICT (tenant, trace_id) DO NOTHING",
            (tenant, trace_id, feature, ts, vector),
        )

    def inputs(self, tenant: str, feature: str, since: float, until: float, *, limit: int = 5000) -> list[bytes]:
        rows = self.db.all(
            "SELECT vector FROM monitor_inputs WHERE tenant = ? AND feature = ? AND ts >= ? AND ts < ? "
            "ORDER BY trace_id LIMIT ?",
            (tenant, feature, since, until, limit),
        )
        return [bytes(r["vector"]) for r in rows]

    # -- alerts --------------------------------------------------------------------------------------
    def open_alerts(self, tenant: str, feature: str | None = None) -> list[Alert]:
        where = Where("closed IS NULL").eq("tenant", tenant).eq("feature", feature)
        rows = self.db.all(f"SELECT * FROM monitor_alerts WHERE {where} ORDER BY opened", where.args)
        return [_alert(r) for r in rows]

    def all_open(self, limit: int = 1000) -> list[Alert]:
        """Open alerts of every tenant (``/metrics``, which admins read)."""
        rows = self.db.all("SELECT * FROM monitor_alerts WHERE closed IS NULL ORDER BY opened LIMIT ?", (limit,))
        return [_alert(r) for r in rows]

    def alerts(self, tenant: str, feature: str | None = None, *, since: float = 0.0, limit: int = 200) -> list[Alert]:
        where = Where("(closed IS NULL OR closed >= ?)").eq("tenant", tenant).eq("feature", feature)
        rows = self.db.all(
            f"SELECT * FROM monitor_alerts WHERE {where} ORDER BY opened DESC LIMIT ?", (since, *where.args, limit)
        )
        return [_alert(r) for r in rows]

    def open_alert(self, tenant: str, feature: str, signal: str, message: str, detail: dict[str, Any]) -> bool:
        """Open an alert unless one is open for this signal already (then its message is brought up to
        date); True when this call opened it. The unique open-alert index makes racing openers one."""
        encoded = orjson.dumps(detail).decode()
        made = self.db.run(
            "INSERT INTO monitor_alerts(tenant, feature, signal, opened, message, detail) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (tenant, feature, signal) WHERE closed IS NULL DO NOTHING",
            (tenant, feature, signal, time.time(), message, encoded),
        )
        if made:
            return True
        self.db.run(
            "UPDATE monitor_alerts SET message = ?, detail = ? "
            "WHERE tenant = ? AND feature = ? AND signal = ? AND closed IS NULL",
            (message, encoded, tenant, feature, signal),
        )
        return False

    def close_alert(self, tenant: str, feature: str, signal: str) -> bool:
        return (
            self.db.run(
                "UPDATE monitor_alerts SET closed = ? "
                "WHERE tenant = ? AND feature = ? AND signal = ? AND closed IS NULL",
                (time.time(), tenant, feature, signal),
            )
            > 0
        )

    # -- the sweeper's place -------------------------------------------------------------------------
    def cursor(self, name: str) -> float | None:
        value = self.db.scalar("SELECT at FROM monitor_cursor WHERE name = ?", (name,))
        return None if value is None else float(value)

    def advance(self, name: str, at: float) -> None:
        self.db.run(
            "INSERT INTO monitor_cursor(name, at) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET at = excluded.at",
            (name, at),
        )


def _score(r: dict[str, Any]) -> Score:
    return Score(
        r["tenant"], r["trace_id"], r["monitor"], r["check_name"], r["feature"], float(r["ts"]), r["status"],
        r["evaluator"], r["why"], None if r["passed"] is None else bool(r["passed"]), r["score"], r["reason"],
        r["cost_usd"], r["prompt_version"], r["model"], r["index_version"], float(r["scored"]),
    )  # fmt: skip


def _alert(r: dict[str, Any]) -> Alert:
    return Alert(
        int(r["id"]), r["tenant"], r["feature"], r["signal"], float(r["opened"]),
        None if r["closed"] is None else float(r["closed"]), r["message"], orjson.loads(r["detail"]),
    )  # fmt: skip
