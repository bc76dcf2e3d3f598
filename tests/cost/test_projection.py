"""Projections from logged traffic: the pessimistic case is never below the expected one."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keel.cost.prices import PriceFile, PriceTable
from keel.cost.projection import project

NO_PRICES = PriceTable(PriceFile.model_validate({"version": "test", "models": {}}))


def _rows(per_user: dict[str, int], cost: float = 0.001, heavy: float | None = None) -> list[dict[str, Any]]:
    rows = []
    for user, n in per_user.items():
        for i in range(n):
            spend = heavy if heavy is not None and i == 0 and user == "u0" else cost
            rows.append({"user": user, "model": "m", "deployment": "d", "input_tokens": 100, "output_tokens": 50,
                         "cost_usd": spend, "ts": 1_700_000_000 + i * 60})  # fmt: skip
    rows[-1]["ts"] += 86_400 * 30  # a 30-day window
    return rows


def test_skewed_traffic_keeps_the_pessimistic_case_above_the_expected_one() -> None:
    # one user makes most calls: the p90 user calls far less than the mean (the reported $733 < $1,794)
    per_user = {"u0": 5000, **{f"u{i}": 30 for i in range(1, 20)}}
    p = project(_rows(per_user), NO_PRICES)
    assert p is not None and p.calls_per_user_day_p90 < p.calls_per_user_day
    assert p.monthly(50_000, pessimistic=True) >= p.monthly(50_000)
    even, worst_even = p.break_even(2000), p.break_even(2000, pessimistic=True)
    assert even is not None and worst_even is not None and worst_even <= even


def test_a_heavy_call_raises_the_pessimistic_case() -> None:
    even = project(_rows({f"u{i}": 20 for i in range(10)}, cost=0.001), NO_PRICES)
    assert even is not None and even.monthly(1000, pessimistic=True) == even.monthly(1000)  # uniform: they agree
    calls = {f"u{i}": 20 for i in range(10)}
    rows = _rows(calls, cost=0.001)
    for r in rows[::5]:
        r["cost_usd"] = 0.01  # a fifth of the calls cost ten times more
    heavy = project(rows, NO_PRICES)
    assert heavy is not None and heavy.monthly(1000, pessimistic=True) > heavy.monthly(1000)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30),
    st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=5),
)
def test_pessimistic_is_at_least_expected_on_any_traffic(calls: list[int], costs: list[float]) -> None:
    rows = []
    for u, n in enumerate(calls):
        for i in range(n):
            rows.append({"user": f"u{u}", "model": "m", "deployment": "d", "input_tokens": 1, "output_tokens": 1,
                         "cost_usd": costs[(u + i) % len(costs)], "ts": 1_700_000_000 + u * 7 + i})  # fmt: skip
    p = project(rows, NO_PRICES)
    assert p is not None and p.monthly(1000, pessimistic=True) >= p.monthly(1000) - 1e-9
