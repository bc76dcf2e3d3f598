"""Budget counts in the store: spend per bucket and the holds of calls in flight.

Check-and-hold is one transaction. On SQLite the transaction's write lock serialises every
reservation on the machine; on Postgres each bucket is locked (advisory, in bucket order, so two
calls never wait on each other crosswise) and replicas reserving against one bucket queue there.
What counts as "over" is the caller's rule (``keel.cost``); this module only keeps it atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keel.store.db import Database


@dataclass(frozen=True, slots=True)
class Usage:
    spent_nusd: int = 0
    spent_tokens: int = 0
    held_nusd: int = 0
    held_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Hold:
    bucket: str
    nusd: int
    tokens: int


class BudgetStore:
    PURGE_EVERY = 1000

    def __init__(self, db: Database) -> None:
        self.db = db
        self._settles = 0

    def _lock(self, buckets: Sequence[str]) -> None:
        for bucket in sorted(set(buckets)):
            self.db.lock(f"budget:{bucket}")

    def usage(self, bucket: str, now: float | None = None) -> Usage:
        now = time.time() if now is None else now
        spent = self.db.one("SELECT spent_nusd, spent_tokens FROM budget_spend WHERE bucket = ?", (bucket,))
        held = self.db.one(
            "SELECT coalesce(sum(nusd), 0) AS n, coalesce(sum(tokens), 0) AS t FROM budget_holds "
            "WHERE bucket = ? AND expires > ?",
            (bucket, now),
        )
        assert held is not None
        return Usage(
            int(spent["spent_nusd"]) if spent else 0,
            int(spent["spent_tokens"]) if spent else 0,
            int(held["n"]),
            int(held["t"]),
        )

    def reserve(
        self, reservation: str, holds: Sequence[Hold], ttl: float, refuse: Callable[[int, Usage], bool]
    ) -> tuple[int, Usage] | None:
        """Hold every amount, or none: the first hold that ``refuse`` turns down (its index and the
        bucket's usage) stops the reservation."""
        now = time.time()
        with self.db.transaction():
            self._lock([h.bucket for h in holds])
            for i, hold in enumerate(holds):
                used = self.usage(hold.bucket, now)
                if refuse(i, used):
                    return i, used
            self.db.many(
                "INSERT INTO budget_holds(reservation, bucket, nusd, tokens, expires) VALUES (?,?,?,?,?) "
                "ON CONFLICT (reservation, bucket) DO UPDATE SET nusd = excluded.nusd, tokens = excluded.tokens, "
                "expires = excluded.expires",
                [(reservation, h.bucket, h.nusd, h.tokens, now + ttl) for h in holds],
            )
        return None

    def settle(
        self,
        reservation: str,
        buckets: Sequence[tuple[str, float]],
        nusd: int,
        tokens: int,
        crossed: Callable[[int, float, int, int], float | None],
    ) -> list[tuple[int, float, int, int]]:
        """Release the hold and spend what the call cost in each (bucket, forget-after) pair.
        ``crossed(i, alerted, spent_nusd, spent_tokens)`` names an alert share newly passed; those
        come back as (index, share, spent_nusd, spent_tokens)."""
        now = time.time()
        out = []
        with self.db.transaction():
            self._lock([b for b, _ in buckets])
            self.db.run("DELETE FROM budget_holds WHERE reservation = ?", (reservation,))
            for i, (bucket, expires) in enumerate(buckets):
                row = self.db.one(
                    "INSERT INTO budget_spend(bucket, spent_nusd, spent_tokens, alerted, expires) VALUES (?,?,?,0,?) "
                    "ON CONFLICT (bucket) DO UPDATE SET spent_nusd = budget_spend.spent_nusd + excluded.spent_nusd, "
                    "spent_tokens = budget_spend.spent_tokens + excluded.spent_tokens "
                    "RETURNING spent_nusd, spent_tokens, alerted",
                    (bucket, nusd, tokens, expires),
                )
                assert row is not None
                spent_n, spent_t = int(row["spent_nusd"]), int(row["spent_tokens"])
                share = crossed(i, float(row["alerted"]), spent_n, spent_t)
                if share is not None:
                    self.db.run("UPDATE budget_spend SET alerted = ? WHERE bucket = ?", (share, bucket))
                    out.append((i, share, spent_n, spent_t))
            self._settles += 1
            if self._settles % self.PURGE_EVERY == 0:
                self.db.run("DELETE FROM budget_holds WHERE expires < ?", (now,))
                self.db.run("DELETE FROM budget_spend WHERE expires < ?", (now,))
        return out

    def buckets(self, budget: str) -> list[str]:
        """The buckets a budget has counted in (each user's, each window's)."""
        prefix = f"{budget}|"
        rows = self.db.all(
            "SELECT bucket FROM budget_spend WHERE substr(bucket, 1, ?) = ? "
            "UNION SELECT bucket FROM budget_holds WHERE substr(bucket, 1, ?) = ? ORDER BY 1",
            (len(prefix), prefix, len(prefix), prefix),
        )
        return [r["bucket"] for r in rows]
