"""Cached feature answers: rows by exact key, and the vectors of a scope for semantic lookup.
Every entry carries its tenant; a scope already includes the tenant, so lookups never cross."""

from __future__ import annotations

import time
from typing import Any

from keel.store.db import Database, Where


class AnswerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> dict[str, Any] | None:
        """A live entry by key (its scope carries the tenant)."""
        return self.db.one(
            "SELECT key, text, value, trace_id, created FROM cache_entries WHERE key = ? AND expires > ?",
            (key, time.time()),
        )

    def stamp(self, scope: str) -> tuple[Any, ...]:
        """What moves when any process writes to the scope: its count and newest entry."""
        row = self.db.one(
            "SELECT count(*) AS n, max(created) AS newest FROM cache_entries WHERE scope = ? AND vector IS NOT NULL",
            (scope,),
        )
        return (row["n"], row["newest"]) if row else (0, None)

    def vectors(self, scope: str, limit: int) -> list[tuple[str, bytes]]:
        rows = self.db.all(
            "SELECT key, vector FROM cache_entries WHERE scope = ? AND vector IS NOT NULL "
            "ORDER BY created DESC LIMIT ?",
            (scope, limit),
        )
        return [(r["key"], bytes(r["vector"])) for r in rows]

    def put(
        self,
        key: str,
        *,
        tenant: str,
        scope: str,
        feature: str,
        text: str,
        vector: bytes | None,
        value: str,
        trace_id: str | None,
        ttl_s: float,
    ) -> None:
        now = time.time()
        self.db.run(
            "INSERT INTO cache_entries(key, scope, feature, text, vector, value, trace_id, created, expires, tenant) "
            "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET scope = excluded.scope, "
            "feature = excluded.feature, text = excluded.text, vector = excluded.vector, value = excluded.value, "
            "trace_id = excluded.trace_id, created = excluded.created, expires = excluded.expires, hits = 0",
            (key, scope, feature, text, vector, value, trace_id, now, now + ttl_s, tenant),
        )

    def hit(self, key: str) -> None:
        self.db.run("UPDATE cache_entries SET hits = hits + 1 WHERE key = ?", (key,))

    def delete(self, key: str) -> None:
        self.db.run("DELETE FROM cache_entries WHERE key = ?", (key,))

    def clear(self, *, tenant: str | None, feature: str | None = None, expired_only: bool = False) -> int:
        where = Where().eq("tenant", tenant).eq("feature", feature)
        if expired_only:
            where.add("expires <= ?", time.time())
        return self.db.run(f"DELETE FROM cache_entries WHERE {where}", where.args)

    def stats(self, *, tenant: str | None) -> list[dict[str, Any]]:
        where = Where().eq("tenant", tenant)
        return self.db.all(
            "SELECT feature, count(*) AS entries, coalesce(sum(hits), 0) AS hits, "
            "sum(CASE WHEN vector IS NOT NULL THEN 1 ELSE 0 END) AS semantic, "
            f"sum(CASE WHEN expires <= ? THEN 1 ELSE 0 END) AS expired FROM cache_entries WHERE {where} "
            "GROUP BY feature ORDER BY feature",
            (time.time(), *where.args),
        )
