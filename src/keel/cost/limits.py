"""Rate limits: requests and tokens per minute over a sliding window of one-second slots — in any 60
seconds no more than the limit is admitted (a token bucket would admit a full burst plus a minute of
refill). Admission counts the request and its estimated input tokens; after the call the token count
is corrected to what the provider reported.

Two backends behind one protocol: in this process (one replica) and Redis (every replica shares the
count; one Lua script per admission, on Redis's clock).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

from keel.cost.budgets import RateClaim
from keel.cost.ledger import RedisStore

WINDOW = 60


class RateLimiter(Protocol):
    async def admit(self, claims: Sequence[RateClaim], tokens: int) -> tuple[RateClaim, float] | None:
        """None when admitted (and counted); else the limit that refused and seconds to wait."""
        ...

    async def adjust(self, claims: Sequence[RateClaim], tokens: int) -> None:
        """Add ``tokens`` (may be negative) to the current second's count."""
        ...

    async def aclose(self) -> None: ...


def _wait(slots: list[tuple[int, int]], excess: int, now: int) -> float:
    """Seconds until the oldest slots holding ``excess`` units leave the window."""
    freed = 0
    for second, count in sorted(slots):
        freed += count
        if freed >= excess:
            return float(max(1, second + WINDOW - now))
    return float(WINDOW)


class MemoryLimiter:
    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._slots: dict[str, dict[int, list[int]]] = {}  # key → second → [requests, tokens]

    def _live(self, key: str, now: int) -> dict[int, list[int]]:
        slots = self._slots.setdefault(key, {})
        for second in [s for s in slots if s <= now - WINDOW]:
            del slots[second]
        return slots

    async def admit(self, claims: Sequence[RateClaim], tokens: int) -> tuple[RateClaim, float] | None:
        now = int(self.clock())
        for claim in claims:
            slots = self._live(claim.key, now)
            requests = sum(v[0] for v in slots.values())
            used = sum(v[1] for v in slots.values())
            if claim.rpm is not None and requests + 1 > claim.rpm:
                return claim, _wait([(s, v[0]) for s, v in slots.items()], requests + 1 - claim.rpm, now)
            if claim.tpm is not None and used + tokens > claim.tpm:
                if tokens > claim.tpm:
                    return claim, math.inf  # this request alone is over the limit: waiting will not help
                return claim, _wait([(s, v[1]) for s, v in slots.items()], used + tokens - claim.tpm, now)
        for claim in claims:
            slot = self._slots[claim.key].setdefault(now, [0, 0])
            slot[0] += 1
            slot[1] += tokens
        return None

    async def adjust(self, claims: Sequence[RateClaim], tokens: int) -> None:
        now = int(self.clock())
        for claim in claims:
            slot = self._live(claim.key, now).setdefault(now, [0, 0])
            slot[1] += tokens

    async def aclose(self) -> None:
        self._slots.clear()


ADMIT = """
local t = redis.call('TIME'); local now = tonumber(t[1])
local n, tok = tonumber(ARGV[1]), tonumber(ARGV[2])
local totals = {}
for i = 1, n do
  local h = KEYS[i]
  local flat = redis.call('HGETALL', h)
  local reqs, used, rslots, tslots = 0, 0, {}, {}
  for j = 1, #flat, 2 do
    local kind, sec = string.sub(flat[j], 1, 1), tonumber(string.sub(flat[j], 3))
    local v = tonumber(flat[j + 1])
    if sec <= now - 60 then
      redis.call('HDEL', h, flat[j])
    elseif kind == 'r' then
      reqs = reqs + v; table.insert(rslots, {sec, v})
    else
      used = used + v; table.insert(tslots, {sec, v})
    end
  end
  local rpm, tpm = tonumber(ARGV[2 + 2 * i - 1]), tonumber(ARGV[2 + 2 * i])
  local slots, excess = nil, 0
  if rpm >= 0 and reqs + 1 > rpm then slots, excess = rslots, reqs + 1 - rpm
  elseif tpm >= 0 and used + tok > tpm then
    if tok > tpm then return {i, -1} end
    slots, excess = tslots, used + tok - tpm
  end
  if slots then
    table.sort(slots, function(a, b) return a[1] < b[1] end)
    local freed = 0
    for _, s in ipairs(slots) do
      freed = freed + s[2]
      if freed >= excess then return {i, math.max(1, s[1] + 60 - now)} end
    end
    return {i, 60}
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'r:' .. now, 1)
  redis.call('HINCRBY', KEYS[i], 't:' .. now, tok)
  redis.call('EXPIRE', KEYS[i], 61)
end
return {0, 0}
"""
ADJUST = """
local t = redis.call('TIME'); local now = tonumber(t[1])
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 't:' .. now, ARGV[1])
  redis.call('EXPIRE', KEYS[i], 61)
end
return 0
"""


class RedisLimiter(RedisStore):
    what = "the rate-limit store"

    def __init__(self, url: str, *, prefix: str = "keel:rate:") -> None:
        super().__init__(url, prefix)
        self._admit = self.client.register_script(ADMIT)
        self._adjust = self.client.register_script(ADJUST)

    async def admit(self, claims: Sequence[RateClaim], tokens: int) -> tuple[RateClaim, float] | None:
        args: list[Any] = [len(claims), tokens]
        for c in claims:
            args += [-1 if c.rpm is None else c.rpm, -1 if c.tpm is None else c.tpm]
        got = await self._call(self._admit, [f"{self.prefix}{c.key}" for c in claims], args)
        if int(got[0]) == 0:
            return None
        wait = float(got[1])
        return claims[int(got[0]) - 1], math.inf if wait < 0 else wait

    async def adjust(self, claims: Sequence[RateClaim], tokens: int) -> None:
        if tokens:
            await self._call(self._adjust, [f"{self.prefix}{c.key}" for c in claims], [tokens])
