"""One conformance suite each for budget ledgers and rate limiters: every implementation — the
store's (SQLite, Postgres), Redis's, a third party's — inherits it and gives it one fixture:

    class TestMyLedger(LedgerConformance):
        @pytest.fixture
        async def ledger(self): yield MyLedger(...)

Atomic all-or-nothing holds, settlement, alerts, expiry, and no overspend under concurrency.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from keel.config.settings import RateLimitSettings
from keel.cost.budgets import Claim, Subject, rate_claims_for, to_nano
from keel.cost.ledger import Ledger
from keel.cost.limits import RateLimiter

#: Noon today: the claims' budget periods are live, so a ledger that expires finished periods (Redis)
#: keeps them — a fixed date here made the suite fail once that day's period had expired.
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def claim(name: str = "b", *, usd: float | None = 1.0, tokens: int | None = None, cost: float = 0.1,
          used: int = 0, hard: bool = True, alerts: tuple[float, ...] = (0.5, 0.8, 1.0)) -> Claim:  # fmt: skip
    return Claim(
        name=name,
        bucket=f"{name}||{NOW:%Y-%m-%d}",
        who="",
        resets=NOW + dt.timedelta(hours=12),
        limit_nusd=to_nano(usd) if usd is not None else None,
        limit_tokens=tokens,
        hard=hard,
        alerts=alerts,
        webhook=None,
        nusd=to_nano(cost),
        tokens=used,
    )


class LedgerConformance:
    """Subclasses provide an async ``ledger`` fixture yielding an empty ledger."""

    async def test_holds_count_until_settled_and_refusals_name_the_budget(self, ledger: Ledger) -> None:
        c = claim(cost=0.3)
        assert await ledger.reserve("r1", [c], 60) is None
        assert await ledger.reserve("r2", [c], 60) is None
        assert await ledger.reserve("r3", [c], 60) is None
        refused = await ledger.reserve("r4", [c], 60)  # 0.9 held + 0.3 > 1.0
        assert refused is not None and refused.claim.name == "b" and refused.held_nusd == to_nano(0.9)
        assert "budget 'b' is exhausted: $0.90 of $1.00 spent or reserved" in refused.error(NOW).message
        assert refused.error(NOW).retry_after == 12 * 3600
        await ledger.settle("r1", [c], to_nano(0.05), 40)  # the call cost less than its worst case
        assert await ledger.usage(c.bucket) == (to_nano(0.05), 40, to_nano(0.6), 0)
        assert await ledger.reserve("r4", [c], 60) is None  # 0.05 + 0.6 + 0.3 ≤ 1

    async def test_a_refusal_holds_nothing_anywhere(self, ledger: Ledger) -> None:
        roomy, tight = claim("roomy", usd=10), claim("tight", usd=0.05)
        assert await ledger.reserve("r1", [roomy, tight], 60) is not None
        assert await ledger.usage(roomy.bucket) == (0, 0, 0, 0)
        tokens = claim("tok", usd=None, tokens=100, cost=0, used=60)
        assert await ledger.reserve("t1", [tokens], 60) is None
        refused = await ledger.reserve("t2", [tokens], 60)
        assert refused is not None and "60 of 100 tokens" in refused.error(NOW).message

    async def test_soft_budgets_count_but_never_refuse(self, ledger: Ledger) -> None:
        soft = claim(usd=0.1, cost=0.08, hard=False)
        for i in range(3):
            assert await ledger.reserve(f"r{i}", [soft], 60) is None
            crossings = await ledger.settle(f"r{i}", [soft], to_nano(0.08), 10)
            shares = [x.share for x in crossings]
            assert shares == [[0.8], [1.0], []][i]  # 0.08 passes 50% and 80%: one alert, the highest; 0.16 → 100%

    async def test_a_crashed_calls_hold_expires(self, ledger: Ledger) -> None:
        c = claim(cost=0.6)
        assert await ledger.reserve("crashed", [c], 0.05) is None
        assert await ledger.reserve("next", [c], 60) is not None
        await asyncio.sleep(0.15)
        assert await ledger.reserve("next", [c], 60) is None

    async def test_two_hundred_concurrent_calls_never_overspend(self, ledger: Ledger) -> None:
        c = claim(usd=1.0, cost=0.02)  # fits exactly 50

        async def call(i: int) -> bool:
            if await ledger.reserve(f"c{i}", [c], 60) is not None:
                return False
            await asyncio.sleep(0.001)
            await ledger.settle(f"c{i}", [c], to_nano(0.02), 1)
            return True

        done = await asyncio.gather(*(call(i) for i in range(200)))
        spent = (await ledger.usage(c.bucket))[0]
        assert sum(done) == 50 and spent == to_nano(1.0)


class LimiterConformance:
    """Subclasses provide an async ``limiter`` fixture yielding an empty rate limiter."""

    async def test_rpm_admits_the_limit_then_says_when(self, limiter: RateLimiter) -> None:
        limits = rate_claims_for({"k": RateLimitSettings(per="key", rpm=5)}, Subject(key="a"))
        results = [await limiter.admit(limits, 10) for _ in range(8)]
        assert results[:5] == [None] * 5
        assert all(r is not None and r[0].name == "k" and 1 <= r[1] <= 60 for r in results[5:])
        other = rate_claims_for({"k": RateLimitSettings(per="key", rpm=5)}, Subject(key="b"))
        assert await limiter.admit(other, 10) is None  # each key its own window

    async def test_tpm_counts_reported_tokens(self, limiter: RateLimiter) -> None:
        limits = rate_claims_for({"t": RateLimitSettings(tpm=1000)}, Subject())
        assert await limiter.admit(limits, 300) is None
        await limiter.adjust(limits, 500)  # the call used 800 in all
        refused = await limiter.admit(limits, 300)
        assert refused is not None and refused[1] >= 1
        alone = await limiter.admit(limits, 5000)
        assert alone is not None and alone[1] == float("inf")

    async def test_concurrent_admissions_never_pass_the_limit(self, limiter: RateLimiter) -> None:
        limits = rate_claims_for({"k": RateLimitSettings(rpm=100)}, Subject())
        results = await asyncio.gather(*(limiter.admit(limits, 1) for _ in range(1000)))
        assert sum(r is None for r in results) == 100
