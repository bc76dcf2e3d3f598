"""The budget ledgers (the store on SQLite and on Postgres, Redis) and the
rate limiters (in process, Redis): atomic all-or-nothing holds, settlement, expiry, alerts, and no
overspend under concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel.config.settings import BudgetSettings, RateLimitSettings
from keel.cost.budgets import NANO, Subject, claims_for, rate_claims_for, to_nano
from keel.cost.ledger import Ledger, RedisLedger, StoreLedger
from keel.cost.limits import MemoryLimiter, RateLimiter, RedisLimiter
from keel.errors import InvalidRequest
from keel.store import Store, db_path
from keel.store.engines import open_postgres
from keel.testing.ledger_conformance import LedgerConformance, LimiterConformance, claim

NOON = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)  # bucket names are pure functions of the time


class TestSQLiteLedger(LedgerConformance):
    @pytest.fixture
    async def ledger(self, home: Path) -> AsyncIterator[Ledger]:
        made = StoreLedger(Store.at(db_path(home)).budgets)
        yield made
        await made.aclose()


class TestPostgresLedger(LedgerConformance):
    @pytest.fixture
    async def ledger(self, pg_url: str) -> AsyncIterator[Ledger]:
        made = StoreLedger(Store(open_postgres(pg_url)).budgets)
        yield made
        await made.aclose()


class TestRedisLedger(LedgerConformance):
    @pytest.fixture
    async def ledger(self, redis_url: str) -> AsyncIterator[Ledger]:
        made = RedisLedger(redis_url)
        yield made
        await made.aclose()


def test_sqlite_holds_are_atomic_across_connections(home: Path) -> None:
    """Threads with their own connections (as processes would have): still exactly 50."""
    c = claim(usd=1.0, cost=0.02)
    granted: list[bool] = []

    def worker(n: int) -> None:
        ledger = StoreLedger(Store.at(db_path(home)).budgets)
        for i in range(50):
            granted.append(asyncio.run(ledger.reserve(f"w{n}-{i}", [c], 60)) is None)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50


def test_claims_follow_match_per_and_window() -> None:
    budgets = {
        "user-daily": BudgetSettings(per="user", period="day", usd=0.5),
        "acme": BudgetSettings(match={"tenant": "acme"}, period="month", tokens=1000),
        "other": BudgetSettings(match={"tenant": "globex"}, usd=1),
    }
    got = claims_for(budgets, Subject(tenant="acme", user="u1"), 5, 7, NOON)
    assert [(c.name, c.bucket, c.resets.isoformat()) for c in got] == [
        ("user-daily", "user-daily|user u1 @acme|2026-11-30", "2026-12-01T00:00:00+00:00"),
        ("acme", "acme||2026-11", "2026-12-01T00:00:00+00:00"),
    ]
    anonymous = claims_for(budgets, Subject(tenant="acme"), 5, 7, NOON)[0]
    assert anonymous.bucket == "user-daily|user - @acme|2026-11-30"  # no user and no key: one shared bucket
    keyed = claims_for(budgets, Subject(tenant="acme", key="k1"), 5, 7, NOON)[0]
    other = claims_for(budgets, Subject(tenant="acme", key="k2"), 5, 7, NOON)[0]
    assert keyed.bucket == "user-daily|user - (key k1) @acme|2026-11-30" != other.bucket  # counted per API key
    strict = {"user-daily": BudgetSettings(per="user", period="day", usd=0.5, require=True)}
    with pytest.raises(InvalidRequest, match="counted per user, and this call names no user") as info:
        claims_for(strict, Subject(tenant="acme", key="k1"), 5, 7, NOON)
    assert info.value.code == "budget_requires_user" and info.value.param == "user"
    assert claims_for(strict, Subject(tenant="acme", user="u9"), 5, 7, NOON)[0].who == "user u9"
    # the same user id in another tenant is another person: its own bucket (issue 12)
    globex = claims_for(budgets, Subject(tenant="globex", user="u1"), 5, 7, NOON)[0]
    assert globex.bucket == "user-daily|user u1 @globex|2026-11-30" and globex.who == "user u1"
    limits = {"per-key": RateLimitSettings(per="key", rpm=10), "gpt": RateLimitSettings(match={"model": "big"}, tpm=5)}
    assert [r.key for r in rate_claims_for(limits, Subject(key="k1", model="small"))] == ["per-key|key k1 @-"]
    assert to_nano(0.000_000_000_1) == 1 and NANO == 10**9


# -- rate limiters -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryLimiter(LimiterConformance):
    @pytest.fixture
    async def limiter(self) -> AsyncIterator[RateLimiter]:
        made = MemoryLimiter()
        yield made
        await made.aclose()


class TestRedisLimiter(LimiterConformance):
    @pytest.fixture
    async def limiter(self, redis_url: str) -> AsyncIterator[RateLimiter]:
        made = RedisLimiter(redis_url)
        yield made
        await made.aclose()


async def test_the_window_slides() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = rate_claims_for({"k": RateLimitSettings(rpm=2)}, Subject())
    assert await limiter.admit(limits, 1) is None
    clock.now += 30
    assert await limiter.admit(limits, 1) is None
    refused = await limiter.admit(limits, 1)
    assert refused is not None and refused[1] == 30  # the first one leaves the window in 30 s
    clock.now += 30
    assert await limiter.admit(limits, 1) is None


async def test_an_unreachable_redis_is_a_clear_error() -> None:
    from keel.cost.budgets import LedgerUnavailable
    from keel.testing.redis_server import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    ledger, limiter = RedisLedger(url), RedisLimiter(url)
    with pytest.raises(LedgerUnavailable, match=r"redis://\*\*\*@127.0.0.1:\d+/0 is unreachable"):
        await ledger.reserve("r", [claim()], 60)
    with pytest.raises(LedgerUnavailable, match="rate-limit store"):
        await limiter.admit(rate_claims_for({"k": RateLimitSettings(rpm=1)}, Subject()), 1)
    await ledger.aclose()
    await limiter.aclose()
