"""A/B experiments per tenant: at most one running experiment per (tenant, feature)."""

from __future__ import annotations

import time
from typing import Any

from keel.store.db import Database

_COLUMNS = "tenant, name, feature, arms, status, started, stopped, winner, note"


class ExperimentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, tenant: str, name: str, feature: str, arms: str, started: float) -> bool:
        """Store a running experiment; False when the feature already runs one for this tenant."""
        with self.db.transaction():
            self.db.lock(f"experiment:{tenant}:{feature}")
            if self.running(tenant, feature) is not None:
                return False
            self.db.run(
                "INSERT INTO tenant_experiments(tenant, name, feature, arms, status, started) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                (tenant, name, feature, arms, started),
            )
        return True

    def get(self, tenant: str, name: str) -> dict[str, Any] | None:
        return self.db.one(f"SELECT {_COLUMNS} FROM tenant_experiments WHERE tenant = ? AND name = ?", (tenant, name))

    def running(self, tenant: str, feature: str) -> dict[str, Any] | None:
        return self.db.one(
            f"SELECT {_COLUMNS} FROM tenant_experiments WHERE tenant = ? AND feature = ? AND status = 'running'",
            (tenant, feature),
        )

    def find(self, tenant: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.db.all(
            f"SELECT {_COLUMNS} FROM tenant_experiments WHERE tenant = ? ORDER BY started DESC"
            + (" LIMIT ?" if limit is not None else ""),
            (tenant, limit) if limit is not None else (tenant,),
        )

    def stop(self, tenant: str, name: str, winner: str | None, note: str) -> None:
        self.db.run(
            "UPDATE tenant_experiments SET status = 'stopped', stopped = ?, winner = ?, note = ? "
            "WHERE tenant = ? AND name = ?",
            (time.time(), winner, note, tenant, name),
        )
