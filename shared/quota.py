"""Per-tenant quotas: requests per minute, tokens per day, USD per month.

`admit` checks every limit and reserves the request's estimate in one atomic step (a Lua
script in Redis, a lock in memory); `settle` replaces the estimate with the real usage. So
concurrent requests cannot all pass a check made before any of them was counted: a budget
that covers ten requests admits at most ten, however many arrive at once.

Windows are UTC calendar windows (minute, day, month). A limit of 0 disables that limit.
USD amounts are kept as integer nano-dollars: Redis counters stay exact.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .auth.base import Principal
from .config import Settings
from .errors import QuotaExceeded
from .metrics import QUOTA_REJECTIONS

log = logging.getLogger(__name__)
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

NANO = 1_000_000_000
LIMIT_NAMES = ("requests_per_minute", "tokens_per_day", "usd_per_month")


@dataclass(frozen=True)
class QuotaLimits:
    requests_per_minute: int
    tokens_per_day: int
    usd_per_month: float

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaLimits:
        return cls(settings.quota_requests_per_minute, settings.quota_tokens_per_day, settings.quota_usd_per_month)

    def as_units(self) -> tuple[int, int, int]:
        return self.requests_per_minute, self.tokens_per_day, to_nano(self.usd_per_month)


@dataclass(frozen=True)
class Windows:
    minute: str
    day: str
    month: str
    retry_after_s: tuple[float, float, float]

    @classmethod
    def at(cls, now: float) -> Windows:
        minute = int(now // 60)
        day, month, day_end, month_end = _calendar(minute)
        return cls(
            minute=str(minute),
            day=day,
            month=month,
            retry_after_s=(60 - (now % 60), day_end - now, month_end - now),
        )


@lru_cache(maxsize=4)
def _calendar(minute: int) -> tuple[str, str, float, float]:
    """Day and month keys and their end times for a UTC minute (computed once a minute, not
    once a request)."""
    t = datetime.fromtimestamp(minute * 60, UTC)
    day_start = t.replace(hour=0, minute=0, second=0, microsecond=0)
    next_month = (
        t.replace(year=t.year + 1, month=1, day=1) if t.month == 12 else t.replace(month=t.month + 1, day=1)
    ).replace(hour=0, minute=0, second=0, microsecond=0)
    return t.strftime("%Y-%m-%d"), t.strftime("%Y-%m"), day_start.timestamp() + 86_400, next_month.timestamp()


@dataclass(frozen=True)
class Reservation:
    tenant: str
    windows: Windows
    tokens: int
    nano_usd: int
    in_process: bool = False  # admitted by the in-process fallback (Redis was down)


@dataclass(frozen=True)
class QuotaUsage:
    requests_this_minute: int
    tokens_today: int
    usd_this_month: float


def to_nano(usd: float) -> int:
    return max(0, math.ceil(usd * NANO))


def rejected(limit_index: int, windows: Windows) -> QuotaExceeded:
    limit = LIMIT_NAMES[limit_index]
    QUOTA_REJECTIONS.labels(limit).inc()
    return QuotaExceeded(
        f"The tenant's {limit.replace('_', ' ')} quota is used up.",
        limit=limit,
        retry_after_s=windows.retry_after_s[limit_index],
    )


class MemoryQuota:
    """In-process counters (no REDIS_URL). Exact within one process only."""

    kind = "memory"

    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    async def admit(self, principal: Principal, est_tokens: int, est_cost_usd: float) -> Reservation:
        w = Windows.at(time.time())
        tokens, nano = max(0, est_tokens), to_nano(est_cost_usd)
        keys = self._keys(principal.tenant, w)
        with self._lock:
            current = [self._counts.get(k, 0) for k in keys]
            for i, (used, add, limit) in enumerate(
                zip(current, (1, tokens, nano), self.limits.as_units(), strict=True)
            ):
                if limit > 0 and used + add > limit:
                    raise rejected(i, w)
            for k, add in zip(keys, (1, tokens, nano), strict=True):
                self._counts[k] = self._counts.get(k, 0) + add
            self._prune(w)
        return Reservation(principal.tenant, w, tokens, nano)

    async def settle(self, reservation: Reservation, tokens: int, cost_usd: float) -> None:
        _, day, month = self._keys(reservation.tenant, reservation.windows)
        with self._lock:
            self._counts[day] = max(0, self._counts.get(day, 0) + max(0, tokens) - reservation.tokens)
            self._counts[month] = max(0, self._counts.get(month, 0) + to_nano(cost_usd) - reservation.nano_usd)

    async def usage(self, tenant: str) -> QuotaUsage:
        keys = self._keys(tenant, Windows.at(time.time()))
        with self._lock:
            rpm, tok, nano = (self._counts.get(k, 0) for k in keys)
        return QuotaUsage(rpm, tok, nano / NANO)

    async def close(self) -> None:
        return None

    @staticmethod
    def _keys(tenant: str, w: Windows) -> tuple[tuple[str, str, str], ...]:
        return ((tenant, "rpm", w.minute), (tenant, "tok", w.day), (tenant, "usd", w.month))

    def _prune(self, w: Windows) -> None:
        current = {w.minute, w.day, w.month}
        if len(self._counts) > 10_000:
            for k in [k for k in self._counts if k[2] not in current]:
                del self._counts[k]


# KEYS: rpm, tokens, usd counters. ARGV: 3 limits, 3 increments, 3 TTLs (s).
# Returns 0 when admitted (and reserved), else the 1-based index of the first limit hit.
_ADMIT_LUA = """
for i = 1, 3 do
  local limit = tonumber(ARGV[i])
  if limit > 0 then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    if used + tonumber(ARGV[i + 3]) > limit then
      return i
    end
  end
end
for i = 1, 3 do
  redis.call('INCRBY', KEYS[i], ARGV[i + 3])
  if redis.call('TTL', KEYS[i]) < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[i + 6])
  end
end
return 0
"""

# Replace a reservation with the real amount, never below zero. KEYS: tokens, usd. ARGV: deltas.
_SETTLE_LUA = """
for i = 1, 2 do
  local v = redis.call('INCRBY', KEYS[i], ARGV[i])
  if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
end
return 0
"""

# Counters outlive their window a little so a settle at the edge still finds its key.
_TTLS = (120, 2 * 86_400, 32 * 86_400)


class RedisQuota:
    """Counters in Redis, shared by every worker and instance."""

    kind = "redis"

    """Quotas shared by every replica. When Redis cannot be reached the quotas are counted in this
    process instead (still enforced, per replica) until it answers again: a Redis outage never
    fails a request."""

    def __init__(
        self, redis: Redis, limits: QuotaLimits, prefix: str = "llmr:quota", *, down_backoff_s: float = 2.0
    ) -> None:
        self.redis = redis
        self.limits = limits
        self.prefix = prefix
        self.down_backoff_s = down_backoff_s
        self.fallback = MemoryQuota(limits)
        self._down_until = 0.0
        self._admit = redis.register_script(_ADMIT_LUA)
        self._settle = redis.register_script(_SETTLE_LUA)

    def _redis_down(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("redis unreachable for quotas (%s): counting in process", type(exc).__name__)
        # while it is down, do not pay its timeout on every request
        self._down_until = time.monotonic() + self.down_backoff_s

    async def admit(self, principal: Principal, est_tokens: int, est_cost_usd: float) -> Reservation:
        if time.monotonic() < self._down_until:
            return await self._admit_in_process(principal, est_tokens, est_cost_usd)
        w = Windows.at(time.time())
        tokens, nano = max(0, est_tokens), to_nano(est_cost_usd)
        args: list[Any] = [*self.limits.as_units(), 1, tokens, nano, *_TTLS]
        try:
            hit = int(await self._admit(keys=self._keys(principal.tenant, w), args=args))
        except REDIS_DOWN as exc:
            self._redis_down(exc)
            return await self._admit_in_process(principal, est_tokens, est_cost_usd)
        if hit:
            raise rejected(hit - 1, w)
        return Reservation(principal.tenant, w, tokens, nano)

    async def _admit_in_process(self, principal: Principal, est_tokens: int, est_cost_usd: float) -> Reservation:
        r = await self.fallback.admit(principal, est_tokens, est_cost_usd)
        return Reservation(r.tenant, r.windows, r.tokens, r.nano_usd, in_process=True)

    async def settle(self, reservation: Reservation, tokens: int, cost_usd: float) -> None:
        if reservation.in_process:
            await self.fallback.settle(reservation, tokens, cost_usd)
            return
        _, day, month = self._keys(reservation.tenant, reservation.windows)
        deltas = [max(0, tokens) - reservation.tokens, to_nano(cost_usd) - reservation.nano_usd]
        try:
            await self._settle(keys=[day, month], args=deltas)
        except REDIS_DOWN as exc:
            self._redis_down(exc)

    async def usage(self, tenant: str) -> QuotaUsage:
        values = await self.redis.mget(self._keys(tenant, Windows.at(time.time())))
        rpm, tok, nano = (int(v or 0) for v in values)
        return QuotaUsage(rpm, tok, nano / NANO)

    async def close(self) -> None:
        await self.redis.aclose()

    def _keys(self, tenant: str, w: Windows) -> list[str]:
        # the tenant is hashed into one slot ({...}) so the script's keys live together in a cluster
        base = f"{self.prefix}:{{{tenant}}}"
        return [f"{base}:rpm:{w.minute}", f"{base}:tok:{w.day}", f"{base}:usd:{w.month}"]
