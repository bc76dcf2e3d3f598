"""Projecting monthly spend from logged traffic — before launch, at 10× the users.

    monthly = users × calls per user per day × 30 × cost per call

From the calls in a window: how many users called, how often each (mean and 90th percentile across
users), the tokens per call (mean and p90), and what a call cost at the recorded prices. The
pessimistic case takes, for the call rate per user and for the cost per call alike, the larger of the
mean and the 90th percentile: heavy calls raise it, and on skewed traffic (a few users making most
calls, so the p90 user calls less than the mean) it never falls below the expected case. The break-even is the
number of users at which a monthly budget is spent; the alternatives price the same tokens on every
other model in the price table, cheapest first.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from keel.cost.prices import PriceTable
from keel.stats import percentile
from keel.types import Usage

DAYS_PER_MONTH = 30


@dataclass(frozen=True, slots=True)
class Alternative:
    model: str
    cost_per_call: float
    per_user_month: float  # USD a month for one user at the observed call rate


@dataclass(slots=True)
class Projection:
    calls: int
    users: int
    days: float
    calls_per_user_day: float
    calls_per_user_day_p90: float
    input_tokens: float
    output_tokens: float
    input_tokens_p90: float
    output_tokens_p90: float
    cost_per_call: float
    cost_per_call_p90: float
    unpriced_calls: int
    models: dict[str, int] = field(default_factory=dict)
    alternatives: list[Alternative] = field(default_factory=list)

    def monthly(self, users: int, *, pessimistic: bool = False) -> float:
        """Expected: the means. Pessimistic: the larger of mean and p90, for rate and cost each, so it
        is at least the expected case by construction."""
        rate, cost = self.calls_per_user_day, self.cost_per_call
        if pessimistic:
            rate, cost = max(rate, self.calls_per_user_day_p90), max(cost, self.cost_per_call_p90)
        return users * rate * DAYS_PER_MONTH * cost

    def break_even(self, budget: float, *, pessimistic: bool = False) -> int | None:
        """Users at which ``budget`` a month is spent (None when calls cost nothing)."""
        per_user = self.monthly(1, pessimistic=pessimistic)
        return math.floor(budget / per_user) if per_user > 0 else None


def project(rows: list[dict[str, Any]], prices: PriceTable, *, at: dt.date | None = None) -> Projection | None:
    """``rows``: one per model call (user, model, deployment, input/output tokens, cost, ts)."""
    if not rows:
        return None
    stamps = [r["ts"] for r in rows]
    days = max(1.0, (max(stamps) - min(stamps)) / 86_400)
    per_user: dict[str, int] = {}
    models: dict[str, int] = {}
    for r in rows:
        per_user[r["user"]] = per_user.get(r["user"], 0) + 1
        models[r["model"]] = models.get(r["model"], 0) + 1
    rates = [n / days for n in per_user.values()]
    inputs = [float(r["input_tokens"]) for r in rows]
    outputs = [float(r["output_tokens"]) for r in rows]
    priced = [r for r in rows if r["cost_usd"] is not None]
    costs = [float(r["cost_usd"]) for r in priced] or [0.0]
    p = Projection(
        calls=len(rows),
        users=len(per_user),
        days=days,
        calls_per_user_day=sum(rates) / len(rates),
        calls_per_user_day_p90=percentile(rates, 90) or 0.0,
        input_tokens=sum(inputs) / len(inputs),
        output_tokens=sum(outputs) / len(outputs),
        input_tokens_p90=percentile(inputs, 90) or 0.0,
        output_tokens_p90=percentile(outputs, 90) or 0.0,
        cost_per_call=sum(costs) / len(costs),
        cost_per_call_p90=percentile(costs, 90) or 0.0,
        unpriced_calls=len(rows) - len(priced),
        models=dict(sorted(models.items(), key=lambda kv: -kv[1])),
    )
    usage = Usage(input_tokens=round(p.input_tokens), output_tokens=round(p.output_tokens))
    rate = p.calls_per_user_day * DAYS_PER_MONTH
    for model in prices.models:
        price = prices.price(model, at or dt.date.today())
        if price is None or price.output == 0:
            continue  # embedding models price no output: not an alternative for chat
        cost = prices.cost(model, usage, at)
        if cost is not None:
            p.alternatives.append(Alternative(model, cost, cost * rate))
    p.alternatives.sort(key=lambda a: a.cost_per_call)
    return p
