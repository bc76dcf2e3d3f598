"""Spend against budgets, as the dashboard shows it: each budget's buckets in their current window
(who, spent and held against the limit, when it resets, which alert shares it has passed), scoped to
the tenant a page shows. Read from the configured ledger (the store or Redis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from keel.config.settings import BudgetSettings
from keel.cost.budgets import NANO, NOBODY, window
from keel.cost.ledger import Ledger
from keel.text import usd as usd  # the dashboard's money, as the CLI and errors print it

MOST = 200  # buckets shown per budget (a per-user budget has one per user)


@dataclass(frozen=True, slots=True)
class Bucket:
    budget: str
    who: str
    window: str
    resets: dt.datetime
    mode: str
    spent_usd: float
    held_usd: float
    limit_usd: float | None
    spent_tokens: int
    limit_tokens: int | None
    alerts: tuple[tuple[float, bool], ...]  # (share, passed)

    @property
    def share(self) -> float:
        shares = [self.spent_usd / self.limit_usd if self.limit_usd else 0.0]
        shares.append(self.spent_tokens / self.limit_tokens if self.limit_tokens else 0.0)
        return max(shares)


def _theirs(name: str, budget: BudgetSettings, whose: str, tenant: str | None) -> bool:
    """Whether a bucket belongs to ``tenant`` (None: an admin over every tenant sees all)."""
    if tenant is None:
        return True
    if budget.match.get("tenant") == tenant:
        return True
    return whose == f"tenant {tenant}" or whose.endswith(f" @{tenant}")


async def buckets(
    budgets: Mapping[str, BudgetSettings], ledger: Ledger | None, tenant: str | None, *, now: dt.datetime | None = None
) -> tuple[list[Bucket], int]:
    """The buckets of the current windows, fullest first, and how many were left out past ``MOST``
    per budget."""
    if ledger is None:
        return [], 0
    now = now or dt.datetime.now(dt.UTC)
    out: list[Bucket] = []
    left_out = 0
    for name, b in budgets.items():
        label, resets = window(b.period, now)
        mine = []
        for bucket in await ledger.buckets(name):
            _, whose, when = bucket.split("|", 2)
            if when == label and _theirs(name, b, whose, tenant):
                mine.append((bucket, whose))
        left_out += max(0, len(mine) - MOST)
        for bucket, whose in mine[:MOST]:
            spent_n, spent_t, held_n, _ = await ledger.usage(bucket)
            spent = spent_n / NANO
            share = max(spent / b.usd if b.usd else 0.0, spent_t / b.tokens if b.tokens else 0.0)
            out.append(
                Bucket(
                    name,
                    whose.split(" @")[0].replace(f" {NOBODY}", " (none)") or "everyone",
                    label,
                    resets,
                    b.mode,
                    spent,
                    held_n / NANO,
                    b.usd,
                    spent_t,
                    b.tokens,
                    tuple((a, share >= a) for a in sorted(b.alerts)),
                )
            )
    out.sort(key=lambda x: (-x.share, x.budget, x.who))
    return out, left_out
