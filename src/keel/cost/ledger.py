"""Where budgets keep count: reservations and spend per bucket, checked and taken atomically.

``reserve`` holds a call's worst case against every bucket it falls under — all of them or none,
refusing if any hard bucket would go over what is spent plus what is already held. ``settle``
releases the hold and adds what the call really cost, and reports alert shares it crossed. A
crashed call's hold expires after ``ttl`` seconds.

Two backends behind one protocol (and one conformance suite): the store (one write transaction
per step: SQLite, atomic across processes on one machine; Postgres, with per-bucket locks, shared
by replicas) and Redis (one Lua script per step, Redis's clock, so replicas agree whatever their own
clocks say).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from keel.cost.budgets import Claim, Crossing, LedgerUnavailable, Refusal
from keel.store.budgets import BudgetStore, Hold, Usage


class Ledger(Protocol):
    async def reserve(self, reservation: str, claims: Sequence[Claim], ttl: float) -> Refusal | None: ...

    async def settle(self, reservation: str, claims: Sequence[Claim], nusd: int, tokens: int) -> list[Crossing]: ...

    async def usage(self, bucket: str) -> tuple[int, int, int, int]:
        """(spent nano-USD, spent tokens, held nano-USD, held tokens)."""
        ...

    async def buckets(self, budget: str) -> list[str]:
        """The buckets a budget has counted in (each user's, each window's)."""
        ...

    async def aclose(self) -> None: ...


def _over(claim: Claim, spent_n: int, held_n: int, spent_t: int, held_t: int) -> bool:
    money = claim.limit_nusd is not None and spent_n + held_n + claim.nusd > claim.limit_nusd
    tokens = claim.limit_tokens is not None and spent_t + held_t + claim.tokens > claim.limit_tokens
    return money or tokens


def _share(claim: Claim, spent_n: int, spent_t: int) -> float:
    shares = [0.0]
    if claim.limit_nusd:
        shares.append(spent_n / claim.limit_nusd)
    if claim.limit_tokens:
        shares.append(spent_t / claim.limit_tokens)
    return max(shares)


def crossed(claim: Claim, alerted: float, spent_n: int, spent_t: int) -> float | None:
    """The highest alert share newly passed, if any."""
    share = _share(claim, spent_n, spent_t)
    passed = [a for a in claim.alerts if alerted < a <= share + 1e-12]
    return max(passed) if passed else None


class StoreLedger:
    """Budgets counted in the store: SQLite on one machine, Postgres shared by every replica."""

    def __init__(self, store: BudgetStore) -> None:
        self.store = store

    async def reserve(self, reservation: str, claims: Sequence[Claim], ttl: float) -> Refusal | None:
        def refuse(i: int, used: Usage) -> bool:
            claim = claims[i]
            return claim.hard and _over(claim, used.spent_nusd, used.held_nusd, used.spent_tokens, used.held_tokens)

        holds = [Hold(c.bucket, c.nusd, c.tokens) for c in claims]
        refused = await self.store.db.call(self.store.reserve, reservation, holds, ttl, refuse)
        if refused is None:
            return None
        i, used = refused
        return Refusal(claims[i], used.spent_nusd, used.held_nusd, used.spent_tokens, used.held_tokens)

    async def settle(self, reservation: str, claims: Sequence[Claim], nusd: int, tokens: int) -> list[Crossing]:
        def passed(i: int, alerted: float, spent_n: int, spent_t: int) -> float | None:
            return crossed(claims[i], alerted, spent_n, spent_t)

        buckets = [(c.bucket, c.expires) for c in claims]
        done = await self.store.db.call(self.store.settle, reservation, buckets, nusd, tokens, passed)
        return [Crossing(claims[i], share, spent_n, spent_t) for i, share, spent_n, spent_t in done]

    async def usage(self, bucket: str) -> tuple[int, int, int, int]:
        used = await self.store.db.call(self.store.usage, bucket)
        return used.spent_nusd, used.spent_tokens, used.held_nusd, used.held_tokens

    async def buckets(self, budget: str) -> list[str]:
        return list(await self.store.db.call(self.store.buckets, budget))

    async def aclose(self) -> None:
        self.store.db.close()  # the ledger is given a database of its own


# -- Redis -----------------------------------------------------------------------------------------

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
_PURGE = """
local function neg(v) return string.format('%d', 0 - tonumber(v)) end
local function release(s, z, member)
  local amt = redis.call('HGET', s, 'h:' .. member)
  if amt then
    local n, k = string.match(amt, '(-?%d+):(-?%d+)')
    redis.call('HINCRBY', s, 'held_nusd', neg(n))
    redis.call('HINCRBY', s, 'held_tokens', neg(k))
    redis.call('HDEL', s, 'h:' .. member)
  end
  redis.call('ZREM', z, member)
end
local function purge(s, z, now)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do release(s, z, m) end
end
local function num(v) return tonumber(v or '0') or 0 end
"""
RESERVE = (
    _NOW
    + _PURGE
    + """
local res, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do purge(KEYS[2 * i - 1], KEYS[2 * i], now) end
for i = 1, n do
  local b = 3 + (i - 1) * 6
  local nusd, tok, ln, lt = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local v = redis.call('HMGET', KEYS[2 * i - 1], 'spent_nusd', 'held_nusd', 'spent_tokens', 'held_tokens')
  local sn, hn, st, ht = num(v[1]), num(v[2]), num(v[3]), num(v[4])
  if ARGV[b + 5] == '1' and ((ln >= 0 and sn + hn + nusd > ln) or (lt >= 0 and st + ht + tok > lt)) then
    return {i, sn, hn, st, ht}
  end
end
for i = 1, n do
  local b = 3 + (i - 1) * 6
  local s, z = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HINCRBY', s, 'held_nusd', ARGV[b + 1])
  redis.call('HINCRBY', s, 'held_tokens', ARGV[b + 2])
  redis.call('HSET', s, 'h:' .. res, ARGV[b + 1] .. ':' .. ARGV[b + 2])
  redis.call('ZADD', z, now + ttl, res)
  redis.call('PEXPIREAT', s, ARGV[b + 6])
  redis.call('PEXPIREAT', z, ARGV[b + 6])
end
return {0}
"""
)
SETTLE = (
    _NOW
    + _PURGE
    + """
local res, n, nusd, tok = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local out = {}
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local s, z = KEYS[2 * i - 1], KEYS[2 * i]
  release(s, z, res)
  local sn = redis.call('HINCRBY', s, 'spent_nusd', nusd)
  local st = redis.call('HINCRBY', s, 'spent_tokens', tok)
  redis.call('PEXPIREAT', s, ARGV[b + 4])
  purge(s, z, now)
  local alerted = num(redis.call('HGET', s, 'alerted'))
  table.insert(out, {sn, st, tostring(alerted)})
end
return out
"""
)
MARK = "local cur = tonumber(redis.call('HGET', KEYS[1], 'alerted') or '0')\n" + (
    "if tonumber(ARGV[1]) > cur then redis.call('HSET', KEYS[1], 'alerted', ARGV[1]) return 1 end return 0"
)


def redis_client(url: str) -> Any:
    """An asyncio Redis client whose pool waits for a free connection (up to 5 s) rather than failing
    under a burst of concurrent calls."""
    import redis.asyncio

    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=5.0, socket_timeout=2.0, socket_connect_timeout=2.0
    )
    return redis.asyncio.Redis(connection_pool=pool)


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisStore:
    """A Redis-backed counter store: its client, its key prefix, and one error when Redis is away."""

    what = "the Redis store"

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.client: Any = redis_client(url)
        self.prefix = prefix

    def unreachable(self, exc: BaseException) -> LedgerUnavailable:
        return LedgerUnavailable(f"{self.what} at {_safe(self.url)} is unreachable ({exc})")

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except redis_errors() as exc:
            raise self.unreachable(exc) from None

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()


class RedisLedger(RedisStore):
    what = "the budget ledger"

    def __init__(self, url: str, *, prefix: str = "keel:budget:") -> None:
        super().__init__(url, prefix)
        self._reserve = self.client.register_script(RESERVE)
        self._settle = self.client.register_script(SETTLE)
        self._mark = self.client.register_script(MARK)

    def _keys(self, claims: Sequence[Claim]) -> list[str]:
        keys = []
        for c in claims:
            keys += [f"{self.prefix}{c.bucket}", f"{self.prefix}{c.bucket}:holds"]
        return keys

    async def reserve(self, reservation: str, claims: Sequence[Claim], ttl: float) -> Refusal | None:
        args: list[Any] = [reservation, int(ttl * 1000), len(claims)]
        for c in claims:
            args += [
                c.nusd,
                c.tokens,
                -1 if c.limit_nusd is None else c.limit_nusd,
                -1 if c.limit_tokens is None else c.limit_tokens,
                "1" if c.hard else "0",
                int(c.expires * 1000),
            ]
        got = await self._call(self._reserve, self._keys(claims), args)
        if int(got[0]) == 0:
            return None
        i = int(got[0]) - 1
        return Refusal(claims[i], int(got[1]), int(got[2]), int(got[3]), int(got[4]))

    async def settle(self, reservation: str, claims: Sequence[Claim], nusd: int, tokens: int) -> list[Crossing]:
        args: list[Any] = [reservation, len(claims), nusd, tokens]
        for c in claims:
            args += [-1, -1, "", int(c.expires * 1000)]
        rows = await self._call(self._settle, self._keys(claims), args)
        out = []
        for claim, (spent_n, spent_t, alerted) in zip(claims, rows, strict=True):
            share = crossed(claim, float(alerted), int(spent_n), int(spent_t))
            # only the settle that moves the mark reports the crossing (replicas race to it)
            if share is not None and await self._call(self._mark, [f"{self.prefix}{claim.bucket}"], [share]):
                out.append(Crossing(claim, share, int(spent_n), int(spent_t)))
        return out

    async def usage(self, bucket: str) -> tuple[int, int, int, int]:
        try:
            v = await self.client.hmget(
                f"{self.prefix}{bucket}", "spent_nusd", "spent_tokens", "held_nusd", "held_tokens"
            )
        except redis_errors() as exc:
            raise self.unreachable(exc) from None
        spent_n, spent_t, held_n, held_t = (int(x or 0) for x in v)
        return spent_n, spent_t, held_n, held_t

    async def buckets(self, budget: str) -> list[str]:
        try:
            keys = [k.decode() async for k in self.client.scan_iter(match=f"{self.prefix}{budget}|*", count=500)]
        except redis_errors() as exc:
            raise self.unreachable(exc) from None
        return sorted(k.removeprefix(self.prefix) for k in keys if not k.endswith(":holds"))


def _safe(url: str) -> str:
    """A Redis URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
