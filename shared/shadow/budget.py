"""The daily budget of shadow and judge calls, per tenant (SHADOW_USD_PER_DAY).

Before each shadow or judge call its estimated cost is reserved: the reservation fails when it
would take the tenant's spend for the UTC day over the budget, and then the call is not made.
After the call the estimate is replaced by the real cost. Check and reservation are one atomic
step (a Lua script in Redis, a lock in memory), so concurrent labellings cannot all pass a check
made before any of them was counted. A budget of 0 allows no spend at all. Amounts are integer
nano-dollars, as in shared/quota.py.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio import Redis

from ..quota import NANO, REDIS_DOWN, to_nano

log = logging.getLogger(__name__)

# a key outlives its day a little so a settle just after midnight still finds it
_KEY_TTL_S = 2 * 86_400


def utc_day(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Reservation:
    tenant: str
    day: str
    nano_usd: int
    in_process: bool = False  # reserved in this process while Redis was unreachable


class ShadowBudget(Protocol):
    async def reserve(self, tenant: str, usd: float) -> Reservation | None:
        """Reserve `usd` of today's budget; None when it does not fit."""
        ...

    async def settle(self, reservation: Reservation, usd: float) -> None:
        """Replace the reservation with what the call really cost."""
        ...

    async def spent_today(self, tenant: str) -> float: ...


class MemoryShadowBudget:
    """In-process counters (no REDIS_URL): the budget holds per process."""

    def __init__(self, usd_per_day: float) -> None:
        self.limit = to_nano(usd_per_day)
        self._spent: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    async def reserve(self, tenant: str, usd: float) -> Reservation | None:
        day, nano = utc_day(), to_nano(usd)
        with self._lock:
            used = self._spent.get((tenant, day), 0)
            if used + nano > self.limit:
                return None
            self._spent[(tenant, day)] = used + nano
            for key in [k for k in self._spent if k[1] != day]:
                del self._spent[key]
        return Reservation(tenant, day, nano, in_process=True)

    async def settle(self, reservation: Reservation, usd: float) -> None:
        key = (reservation.tenant, reservation.day)
        with self._lock:
            if key in self._spent:
                self._spent[key] = max(0, self._spent[key] + to_nano(usd) - reservation.nano_usd)

    async def spent_today(self, tenant: str) -> float:
        with self._lock:
            return self._spent.get((tenant, utc_day()), 0) / NANO


# KEYS: the tenant's counter for the day. ARGV: limit, amount, ttl. 1 reserved, 0 over budget.
_RESERVE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[2]) > tonumber(ARGV[1]) then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[2])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

# KEYS: the counter. ARGV: the delta (real cost minus reservation); never below zero.
_SETTLE_LUA = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
return 0
"""


class RedisShadowBudget:
    """Counters in Redis, shared by every replica. While Redis is unreachable the budget is kept
    in this process instead (still enforced, per replica)."""

    def __init__(
        self, redis: Redis, usd_per_day: float, prefix: str = "llmr:shadow", *, down_backoff_s: float = 2.0
    ) -> None:
        self.redis = redis
        self.limit = to_nano(usd_per_day)
        self.prefix = prefix
        self.down_backoff_s = down_backoff_s
        self.fallback = MemoryShadowBudget(usd_per_day)
        self._down_until = 0.0
        self._reserve = redis.register_script(_RESERVE_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)

    def _key(self, tenant: str, day: str) -> str:
        return f"{self.prefix}:{{{tenant}}}:usd:{day}"

    def _redis_down(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("redis unreachable for the shadow budget (%s): counting in process", type(exc).__name__)
        self._down_until = time.monotonic() + self.down_backoff_s

    async def reserve(self, tenant: str, usd: float) -> Reservation | None:
        if time.monotonic() < self._down_until:
            return await self.fallback.reserve(tenant, usd)
        day, nano = utc_day(), to_nano(usd)
        try:
            ok = int(await self._reserve(keys=[self._key(tenant, day)], args=[self.limit, nano, _KEY_TTL_S]))
        except REDIS_DOWN as exc:
            self._redis_down(exc)
            return await self.fallback.reserve(tenant, usd)
        return Reservation(tenant, day, nano) if ok else None

    async def settle(self, reservation: Reservation, usd: float) -> None:
        if reservation.in_process:
            await self.fallback.settle(reservation, usd)
            return
        delta = to_nano(usd) - reservation.nano_usd
        try:
            await self._settle(keys=[self._key(reservation.tenant, reservation.day)], args=[delta])
        except REDIS_DOWN as exc:
            self._redis_down(exc)

    async def spent_today(self, tenant: str) -> float:
        value = await self.redis.get(self._key(tenant, utc_day()))
        return int(value or 0) / NANO
