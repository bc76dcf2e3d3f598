"""Which budgets and rate limits a call falls under, and the worst case it could cost.

A budget's *bucket* is its name, the value of its ``per`` dimension (each user their own budget)
and its window (the UTC day or month). Money is counted in integer nano-dollars so sums are exact on
every backend.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keel.config.settings import BudgetSettings, RateLimitSettings
from keel.errors import BudgetExceeded as BudgetExceeded
from keel.errors import InvalidRequest
from keel.errors import LedgerUnavailable as LedgerUnavailable
from keel.errors import RateLimitExceeded as RateLimitExceeded
from keel.text import usd

NANO = 1_000_000_000
NOBODY = "-"  # a per-user budget's bucket for calls that name no user and come with no key: they share one


def to_nano(usd: float) -> int:
    return math.ceil(usd * NANO - 1e-6)  # round up: a reservation never under-counts


@dataclass(frozen=True, slots=True)
class Subject:
    """What a call is for, on the dimensions budgets and limits match on."""

    tenant: str | None = None
    key: str | None = None
    user: str | None = None
    feature: str | None = None
    model: str | None = None

    def value(self, dimension: str) -> str | None:
        value: str | None = getattr(self, dimension)
        return value


def _matches(match: Mapping[Any, str], subject: Subject) -> bool:
    return all(subject.value(k) == v for k, v in match.items())


def _per(per: str | None, subject: Subject) -> tuple[str, str]:
    """(who, for messages: ``user u1``; whose bucket: ``user u1 @acme``). Users, keys and features
    are counted per tenant, so one tenant's traffic never spends another tenant's user's budget."""
    if per is None:
        return "", ""
    value = subject.value(per)
    if value is None and per != "key" and subject.key is not None:
        who = f"{per} - (key {subject.key})"  # unnamed calls are counted per API key, not all in one bucket
    else:
        who = f"{per} {value or NOBODY}"
    return who, who if per == "tenant" else f"{who} @{subject.tenant or NOBODY}"


def window(period: str, now: dt.datetime) -> tuple[str, dt.datetime]:
    """The window's label and when it ends (UTC)."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start + dt.timedelta(days=1)
    days = calendar.monthrange(now.year, now.month)[1]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), start + dt.timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Claim:
    """One call against one budget bucket: what it reserves, and the bucket's limits."""

    name: str
    bucket: str
    who: str  # e.g. "user u1", for messages
    resets: dt.datetime
    limit_nusd: int | None
    limit_tokens: int | None
    hard: bool
    alerts: tuple[float, ...]
    webhook: str | None
    nusd: int = 0
    tokens: int = 0

    @property
    def expires(self) -> float:
        """When the bucket's counts may be forgotten: a day after its window ends."""
        return self.resets.timestamp() + 86_400


def claims_for(
    budgets: Mapping[str, BudgetSettings], subject: Subject, nusd: int, tokens: int, now: dt.datetime
) -> list[Claim]:
    out = []
    for name, b in budgets.items():
        if not _matches(b.match, subject):
            continue
        if b.require and b.per is not None and subject.value(b.per) is None:
            hint = " (the body's 'user' or the x-keel-user header)" if b.per == "user" else ""
            raise InvalidRequest(
                f"budget '{name}' is counted per {b.per}, and this call names no {b.per}{hint}; "
                f"name one, or drop require: true from the budget",
                param=b.per,
                code="budget_requires_" + b.per,
            )
        who, whose = _per(b.per, subject)
        label, resets = window(b.period, now)
        out.append(
            Claim(
                name=name,
                bucket=f"{name}|{whose}|{label}",
                who=who,
                resets=resets,
                limit_nusd=to_nano(b.usd) if b.usd is not None else None,
                limit_tokens=b.tokens,
                hard=b.mode == "hard",
                alerts=tuple(sorted(b.alerts)),
                webhook=b.webhook,
                nusd=nusd,
                tokens=tokens,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class RateClaim:
    name: str
    key: str
    who: str
    rpm: int | None
    tpm: int | None


def rate_claims_for(limits: Mapping[str, RateLimitSettings], subject: Subject) -> list[RateClaim]:
    out = []
    for name, limit in limits.items():
        if not _matches(limit.match, subject):
            continue
        who, whose = _per(limit.per, subject)
        out.append(RateClaim(name, f"{name}|{whose}", who, limit.rpm, limit.tpm))
    return out


# -- refusals ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    claim: Claim
    spent_nusd: int
    held_nusd: int
    spent_tokens: int
    held_tokens: int

    def error(self, now: dt.datetime) -> BudgetExceeded:
        c = self.claim
        whose = f" for {c.who}" if c.who else ""
        if c.limit_nusd is not None and self.spent_nusd + self.held_nusd + c.nusd > c.limit_nusd:
            used = f"{usd((self.spent_nusd + self.held_nusd) / NANO)} of {usd(c.limit_nusd / NANO)} spent or reserved"
            need = f"this call may cost up to {usd(c.nusd / NANO)}"
        else:
            used = f"{self.spent_tokens + self.held_tokens:,} of {c.limit_tokens or 0:,} tokens spent or reserved"
            need = f"this call may use up to {c.tokens:,} tokens"
        resets = c.resets.strftime("%Y-%m-%dT%H:%M:%SZ")
        return BudgetExceeded(
            f"budget '{c.name}'{whose} is exhausted: {used}; {need}. It resets at {resets}",
            retry_after=max(1.0, (c.resets - now).total_seconds()),
        )


@dataclass(frozen=True, slots=True)
class Crossing:
    """A settle that pushed a bucket past one of its alert shares."""

    claim: Claim
    share: float  # the highest alert share crossed
    spent_nusd: int
    spent_tokens: int
