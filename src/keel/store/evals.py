"""Eval runs and their per-case results, the result cache, and which traces became eval cases —
all per tenant."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from keel.store.db import Database, Where


class EvalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- runs --------------------------------------------------------------------------------------
    def save_run(self, tenant: str, run: dict[str, Any], results: Sequence[tuple[str, str]]) -> None:
        """One run and its (case id, result JSON) rows, all or nothing."""
        with self.db.transaction():
            self.db.run(
                "INSERT INTO eval_runs(id, suite, feature, started, finished, status, label, summary, tenant) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run["id"],
                    run["suite"],
                    run["feature"],
                    run["started"],
                    time.time(),
                    run["status"],
                    run["label"],
                    run["summary"],
                    tenant,
                ),
            )
            self.db.many(
                "INSERT INTO eval_results(run_id, case_id, result) VALUES (?,?,?)",
                [(run["id"], case_id, result) for case_id, result in results],
            )

    def load_run(self, tenant: str, suite: str, ref: str) -> tuple[dict[str, Any], list[str]] | None:
        """A run by id, or the newest complete run carrying the label ``ref``; with its results."""
        row = self.db.one(
            "SELECT * FROM eval_runs WHERE id = ? AND suite = ? AND tenant = ?", (ref, suite, tenant)
        ) or self.db.one(
            "SELECT * FROM eval_runs WHERE suite = ? AND label = ? AND status = 'done' AND tenant = ? "
            "ORDER BY started DESC LIMIT 1",
            (suite, ref, tenant),
        )
        if row is None:
            return None
        stored = self.db.all("SELECT result FROM eval_results WHERE run_id = ? ORDER BY case_id", (row["id"],))
        return row, [r["result"] for r in stored]

    def runs(self, tenant: str, suite: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where = Where().eq("tenant", tenant).eq("suite", suite)
        return self.db.all(
            f"SELECT id, suite, feature, started, finished, status, label, summary FROM eval_runs WHERE {where} "
            "ORDER BY started DESC LIMIT ?",
            (*where.args, limit),
        )

    def suites(self, tenant: str | None) -> list[dict[str, Any]]:
        """Each suite with runs: how many, and when the newest started."""
        where = Where().eq("tenant", tenant)
        return self.db.all(
            f"SELECT suite, count(*) AS runs, max(started) AS last FROM eval_runs WHERE {where} "
            "GROUP BY suite ORDER BY suite",
            where.args,
        )

    # -- the result cache --------------------------------------------------------------------------
    @staticmethod
    def _key(tenant: str, key: str) -> str:
        """Cache keys are per tenant: the same case in two tenants is two entries."""
        return hashlib.sha256(f"{tenant}\x00{key}".encode()).hexdigest()

    def cached(self, tenant: str, key: str) -> str | None:
        found = self.db.scalar(
            "SELECT result FROM eval_cache WHERE key = ? AND tenant = ?", (self._key(tenant, key), tenant)
        )
        return None if found is None else str(found)

    def cache(self, tenant: str, key: str, suite: str, case_id: str, result: str) -> None:
        self.db.run(
            "INSERT INTO eval_cache(key, suite, case_id, result, at, tenant) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (key) DO UPDATE SET result = excluded.result, at = excluded.at",
            (self._key(tenant, key), suite, case_id, result, time.time(), tenant),
        )

    def clear_cache(self, tenant: str, suite: str) -> int:
        return self.db.run("DELETE FROM eval_cache WHERE suite = ? AND tenant = ?", (suite, tenant))

    # -- promotion ---------------------------------------------------------------------------------
    def promoted(self, tenant: str, suite: str) -> set[str]:
        rows = self.db.all("SELECT trace_id FROM eval_promoted WHERE suite = ? AND tenant = ?", (suite, tenant))
        return {r["trace_id"] for r in rows}

    def mark_promoted(self, tenant: str, suite: str, cases: Sequence[tuple[str, str]]) -> None:
        """(trace id, case id) pairs that became cases of ``suite``."""
        self.db.many(
            "INSERT INTO eval_promoted(suite, trace_id, case_id, at, tenant) VALUES (?,?,?,?,?) "
            "ON CONFLICT (suite, trace_id) DO NOTHING",
            [(suite, trace_id, case_id, time.time(), tenant) for trace_id, case_id in cases],
        )
