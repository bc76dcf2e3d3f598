"""Admission: before a call, its rate limits and its budgets; after it, the settlement.

    limits (RPM/TPM, per key/user/model…) → budgets (reserve the worst case) → the call → settle

The worst case is the estimated input tokens plus the most output the request allows
(``max_tokens``, else the deployment's ``max_output_tokens``, else 4,096), priced at the dearest
deployment the alias could fall back to. After the call the hold is released and what the provider
reported is spent; an unpriced call that reached a provider keeps its worst case (never
under-counted). Crossing an alert share logs a warning and POSTs to the budget's webhook.

When the Redis ledger is unreachable, ``ledger.on_error`` decides: ``closed`` refuses the call
(503), ``open`` lets it through uncounted — and the log says which, once a minute.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.config.settings import KeelSettings
from keel.cost.budgets import (
    NANO,
    Claim,
    Crossing,
    LedgerUnavailable,
    RateClaim,
    RateLimitExceeded,
    Subject,
    claims_for,
    rate_claims_for,
    to_nano,
)
from keel.cost.ledger import Ledger, RedisLedger, StoreLedger
from keel.cost.limits import MemoryLimiter, RateLimiter, RedisLimiter
from keel.cost.prices import PriceTable
from keel.errors import ConfigError, InvalidRequest, KeelError
from keel.gateway.router import Gateway
from keel.registry import Registry
from keel.text import upper_bound_tokens, usd
from keel.types import ChatRequest, Usage

log = logging.getLogger("keel.budgets")
DEFAULT_MAX_OUTPUT = 4096


@dataclass(slots=True)
class Ticket:
    reservation: str
    claims: list[Claim]
    rates: list[RateClaim]
    input_tokens: int
    worst_nusd: int
    counted: bool = True  # False when the ledger was down and on_error is open


@dataclass(slots=True)
class Admission:
    gateway: Gateway
    prices: PriceTable
    settings: KeelSettings
    ledger: Ledger | None
    limiter: RateLimiter | None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _last_open_log: float = 0.0

    # -- before ----------------------------------------------------------------------------------
    def applies(self, req: ChatRequest) -> bool:
        """Whether any budget, limit or feature budget could count this call."""
        ctx = req.ctx
        if ctx.batch is not None:  # a batch line: its batch reserved the worst case of every line at once
            return False
        return bool(self.settings.budgets or self.settings.limits or ctx.budgets or ctx.per_call_usd is not None)

    async def admit(self, req: ChatRequest) -> Ticket | None:
        """None when nothing applies (no budget, limit or feature budget): the call pays nothing."""
        ctx = req.ctx
        if not self.applies(req):
            return None
        self.gateway.chat_route(req)  # a request the gateway would refuse reserves nothing
        subject = Subject(ctx.tenant, ctx.key, ctx.user, ctx.feature, req.model)
        input_tokens = upper_bound_tokens(req.messages)
        rates = rate_claims_for(self.settings.limits, subject)
        output = self._max_output(req)
        worst = self.worst_case(req.model, input_tokens, output)
        now = dt.datetime.now(dt.UTC)
        if ctx.per_call_usd is not None and worst > to_nano(ctx.per_call_usd):
            raise InvalidRequest(
                f"feature '{ctx.feature}' allows ${ctx.per_call_usd:g} per call; this one may cost up to "
                f"{usd(worst / NANO)} ({input_tokens:,} input + {output:,} output tokens on {req.model}): "
                "lower max_tokens or shorten the input",
                param="max_tokens",
                code="budget_exceeded",
            )
        budgets = {**self.settings.budgets, **ctx.budgets} if ctx.budgets else self.settings.budgets
        claims = claims_for(budgets, subject, worst, input_tokens + output, now)
        ticket = Ticket(uuid.uuid4().hex, claims, rates, input_tokens, worst)
        try:
            if rates and self.limiter is not None:
                refused = await self.limiter.admit(rates, input_tokens)
                if refused is not None:
                    raise _rate_error(refused[0], refused[1])
            if claims and self.ledger is not None:
                refusal = await self.ledger.reserve(ticket.reservation, claims, self.settings.ledger.reservation_ttl_s)
                if refusal is not None:
                    raise refusal.error(now)
        except LedgerUnavailable as exc:
            if self.settings.ledger.on_error == "closed":
                log.error("%s; failing closed (ledger.on_error: closed): the call is refused", exc.message)
                # where the ledger lives is the operator's to read in the log, not the client's
                raise LedgerUnavailable(
                    "the budget ledger is unreachable; calls are refused until it is back"
                ) from None
            self._log_open(exc)
            ticket.counted = False
        return ticket

    def _max_output(self, req: ChatRequest) -> int:
        return self.max_output(req.model, req.max_tokens or req.params.get("max_completion_tokens"))

    def max_output(self, model: str, asked: Any) -> int:
        """The most output a call may produce: what it asked for, else its deployments' cap."""
        if isinstance(asked, int) and asked > 0:
            return asked
        caps = [d.max_output_tokens for d in self._deployments(model) if d.max_output_tokens]
        return min(caps) if caps else DEFAULT_MAX_OUTPUT

    def _names(self, model: str) -> list[str]:
        """The deployments a call to ``model`` could reach (an alias's chain, or the name itself)."""
        route = self.gateway.routes.get(model)
        return route.settings.deployments if route is not None else [model]

    def _deployments(self, model: str) -> list[Any]:
        return [self.settings.deployments[n] for n in self._names(model) if n in self.settings.deployments]

    def worst_case(self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False) -> int:
        """Nano-USD at the dearest deployment behind ``model`` (0 for local ones; unpriced count 0);
        ``batch``: at each deployment's batch discount."""
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        worst = 0.0
        for name in self._names(model):
            adapter = self.gateway.adapters.get(name)
            if adapter is not None and adapter.info.local:
                continue
            cost = (self.prices.cost(self.gateway.price_key(name), usage) or 0.0) * (
                1 - self.gateway.batch_discount(name) if batch else 1.0
            )
            worst = max(worst, cost)
        return to_nano(worst)

    # -- batches ---------------------------------------------------------------------------------
    def _batch_claims(self, tenant: str, key: str | None, model: str, nusd: int, tokens: int) -> list[Claim]:
        subject = Subject(tenant, key, None, None, model)
        return claims_for(self.settings.budgets, subject, nusd, tokens, dt.datetime.now(dt.UTC))

    async def reserve_batch(
        self, batch_id: str, tenant: str, key: str | None, worst: dict[str, tuple[int, int]], ttl_s: float
    ) -> None:
        """Hold a batch's worst case (nano-USD and tokens per model) in its budgets for its window;
        a budget it would pass refuses the batch now, before any line runs."""
        if self.ledger is None or not self.settings.budgets:
            return
        for model, (nusd, tokens) in worst.items():
            claims = self._batch_claims(tenant, key, model, nusd, tokens)
            if claims:
                refusal = await self.ledger.reserve(f"{batch_id}:{model}", claims, ttl_s)
                if refusal is not None:
                    await self.settle_batch(batch_id, tenant, key, {m: (0, 0) for m in worst})
                    raise refusal.error(dt.datetime.now(dt.UTC))

    async def settle_batch(
        self, batch_id: str, tenant: str, key: str | None, spent: dict[str, tuple[int, int]]
    ) -> None:
        """Release the batch's holds and spend what its lines cost, once, when the batch ends."""
        if self.ledger is None or not self.settings.budgets:
            return
        for model, (nusd, tokens) in spent.items():
            claims = self._batch_claims(tenant, key, model, 0, 0)
            if claims:
                for crossing in await self.ledger.settle(f"{batch_id}:{model}", claims, nusd, tokens):
                    self._alert(crossing)

    def _log_open(self, exc: LedgerUnavailable) -> None:
        now = time.monotonic()
        if now - self._last_open_log > 60:
            self._last_open_log = now
            log.warning("%s; failing open (ledger.on_error: open): calls pass uncounted", exc.message)

    # -- after -----------------------------------------------------------------------------------
    async def settle(self, ticket: Ticket, record: Any) -> bool:
        """Release the hold and spend what the call cost (``record`` is its trace row). False when
        the ledger could not be reached (the spend is not counted)."""
        if not ticket.counted:
            return True
        nusd, tokens = spend(ticket.worst_nusd, record)
        steps: list[Any] = []
        if ticket.claims and self.ledger is not None:
            steps.append(self.ledger.settle(ticket.reservation, ticket.claims, nusd, tokens))
        if ticket.rates and self.limiter is not None and any(r.tpm for r in ticket.rates):
            steps.append(self.limiter.adjust(ticket.rates, tokens - ticket.input_tokens))
        try:
            done = await asyncio.gather(*steps)  # on Redis: two round trips at once
            for crossing in done[0] if ticket.claims and self.ledger is not None else []:
                self._alert(crossing)
        except LedgerUnavailable as exc:
            log.error("%s; this call's spend was not recorded (its hold expires on its own)", exc.message)
            return False
        return True

    def _alert(self, crossing: Crossing) -> None:
        c = crossing.claim
        whose = f" for {c.who}" if c.who else ""
        spent = usd(crossing.spent_nusd / NANO) + (f" of {usd(c.limit_nusd / NANO)}" if c.limit_nusd else "")
        if c.limit_tokens:
            spent += f", {crossing.spent_tokens:,} of {c.limit_tokens:,} tokens"
        message = (
            f"budget '{c.name}'{whose} passed {crossing.share:.0%}: {spent} "
            f"({'hard' if c.hard else 'soft'}; resets {c.resets:%Y-%m-%d %H:%M} UTC)"
        )
        log.warning(message)
        if c.webhook:
            body = {
                "type": "budget_alert",
                "budget": c.name,
                "who": c.who or None,
                "share": crossing.share,
                "spent_usd": crossing.spent_nusd / NANO,
                "limit_usd": c.limit_nusd / NANO if c.limit_nusd else None,
                "spent_tokens": crossing.spent_tokens,
                "limit_tokens": c.limit_tokens,
                "hard": c.hard,
                "resets": c.resets.isoformat(),
                "message": message,
            }
            task = asyncio.get_running_loop().create_task(_post(c.webhook, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.ledger is not None:
            await self.ledger.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()


def spend(worst_nusd: int, record: Any) -> tuple[int, int]:
    """What a finished call is charged (nano-USD, tokens), from its trace row: the priced cost; an
    unpriced call that reached a provider keeps its worst case (never under-counted) — unless every
    attempt was answered with an HTTP error status, which providers do not bill; a call that reached
    none costs nothing."""
    if record is None:
        return 0, 0
    tokens = record.input_tokens + record.output_tokens
    if record.cost_usd is not None:
        return to_nano(record.cost_usd), tokens
    attempts = record.attempts or []
    refused = bool(attempts) and all(isinstance(a.get("status"), int) and a["status"] >= 400 for a in attempts)
    return (worst_nusd if record.provider is not None and not refused else 0), tokens


async def _post(url: str, body: dict[str, Any]) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(url, json=body)
            if response.status_code >= 400:
                log.warning("budget webhook %s answered %s", url, response.status_code)
    except httpx.HTTPError as exc:
        log.warning("budget webhook %s failed: %s", url, exc)


def _rate_error(claim: RateClaim, wait: float) -> KeelError:
    whose = f" for {claim.who}" if claim.who else ""
    limits = ", ".join(
        x for x in (f"{claim.rpm} requests" if claim.rpm else "", f"{claim.tpm} tokens" if claim.tpm else "") if x
    )
    if math.isinf(wait):
        return RateLimitExceeded(
            f"rate limit '{claim.name}'{whose}: this request alone needs more than {claim.tpm} tokens per minute",
            retry_after=60,
        )
    return RateLimitExceeded(
        f"rate limit '{claim.name}'{whose}: {limits} per minute; retry in {wait:.0f} s", retry_after=wait
    )


def embedded_ledger(settings: KeelSettings, home: Path) -> tuple[Ledger, RateLimiter | None]:
    """Counts in the store (one replica, or Postgres for many) and rate windows in this process."""
    from keel.store import open_store

    return StoreLedger(open_store(settings, home).budgets), MemoryLimiter() if settings.limits else None


def redis_ledger(settings: KeelSettings, home: Path) -> tuple[Ledger, RateLimiter | None]:
    """Counts and rate windows in Redis: every replica sees the same ones."""
    try:
        import redis  # noqa: F401
    except ImportError:
        raise ConfigError("ledger.backend: redis needs the Redis client: pip install 'keel[redis]'") from None
    url = settings.ledger.redis_url
    assert url is not None  # checked when the settings were loaded
    return RedisLedger(url.resolve()), RedisLimiter(url.resolve()) if settings.limits else None


#: ``(settings, home) → (ledger, limiter)``, named by ``ledger.backend`` (entry points ``keel.ledgers``).
LEDGERS: Registry[Callable[[KeelSettings, Path], tuple[Ledger, RateLimiter | None]]] = Registry(
    "ledger backend",
    "keel.ledgers",
    {"embedded": "keel.gateway.admission:embedded_ledger", "redis": "keel.gateway.admission:redis_ledger"},
)


def build_admission(settings: KeelSettings, home: Path, gateway: Gateway, prices: PriceTable) -> Admission:
    """Budgets and limits for every call (features may bring budgets of their own, so the step is
    always there; a call nothing applies to skips it at once)."""
    ledger, limiter = LEDGERS.get(settings.ledger.backend, where="ledger.backend")(settings, home)
    return Admission(gateway, prices, settings, ledger, limiter)
