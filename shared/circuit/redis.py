"""Circuit breakers shared by every replica through Redis.

State lives in Redis and every transition is one Lua script, so replicas agree on it and
time comes from the Redis server (no clock skew between replicas). Reads are cached for a
short interval so that a request costs no Redis round trip in the common case (all circuits
closed). If Redis fails, the breaker falls back to an in-process one: a Redis outage must
never fail a request.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from .base import CircuitPolicy
from .memory import MemoryCircuitBreaker

log = logging.getLogger(__name__)

_PREFIX = "llmr:cb:"
_MODELS = _PREFIX + "models"

# KEYS: state hash, failures zset, models set. ARGV: model, threshold, window, cooldown, member
_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local threshold, window, cooldown = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if opened > 0 then
  if now - opened >= cooldown then
    redis.call('HSET', KEYS[1], 'opened_at', now)
    redis.call('HDEL', KEYS[1], 'probe_at')
  end
  return 'open'
end
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
if redis.call('ZCARD', KEYS[2]) >= threshold then
  redis.call('HSET', KEYS[1], 'opened_at', now)
  redis.call('DEL', KEYS[2])
  return 'open'
end
return 'closed'
"""

# KEYS: state hash, failures zset
_SUCCESS = """
redis.call('DEL', KEYS[1], KEYS[2])
return 'closed'
"""

# KEYS: models set. ARGV: cooldown. Returns {model, state, ...}
_STATES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cooldown = tonumber(ARGV[1])
local out = {}
for _, model in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local opened = tonumber(redis.call('HGET', KEYS[2] .. model, 'opened_at') or '0')
  local state = 'closed'
  if opened > 0 then
    if now - opened >= cooldown then state = 'half_open' else state = 'open' end
  end
  table.insert(out, model)
  table.insert(out, state)
end
return out
"""

# KEYS: state hash. ARGV: cooldown. Returns 1 when this caller is the probe.
_ACQUIRE_PROBE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cooldown = tonumber(ARGV[1])
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
if opened == 0 or now - opened < cooldown then return 0 end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_at') or '0')
if probe > 0 and now - probe < cooldown then return 0 end
redis.call('HSET', KEYS[1], 'probe_at', now)
return 1
"""


class RedisCircuitBreaker:
    def __init__(
        self, redis: Any, policy: CircuitPolicy | None = None, *, cache_s: float = 0.5, down_backoff_s: float = 2.0
    ) -> None:
        self.redis = redis
        self.down_backoff_s = down_backoff_s
        self._down_until = 0.0
        self.policy = policy or CircuitPolicy()
        self.cache_s = cache_s
        self._snapshot: dict[str, str] = {}
        self._snapshot_at = 0.0
        self._fallback = MemoryCircuitBreaker(
            failure_threshold=self.policy.failure_threshold,
            window_s=self.policy.window_s,
            cooldown_s=self.policy.cooldown_s,
        )
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._states = redis.register_script(_STATES)
        self._probe = redis.register_script(_ACQUIRE_PROBE)
        self.degraded = False

    def _keys(self, model: str) -> list[str]:
        return [f"{_PREFIX}{model}", f"{_PREFIX}{model}:f", _MODELS]

    async def _refresh(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._snapshot_at < self.cache_s:
            return self._snapshot
        raw = await self._states(keys=[_MODELS, _PREFIX], args=[self.policy.cooldown_s])
        pairs = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        self._snapshot = dict(zip(pairs[::2], pairs[1::2], strict=True))
        self._snapshot_at = now
        return self._snapshot

    def _ok(self) -> None:
        if self.degraded:
            log.info("redis circuit state reachable again")
        self.degraded = False

    def _failed(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning("redis circuit state unavailable, using in-process state: %s", type(exc).__name__)
        self.degraded = True
        # while Redis is down, do not pay its timeout on every request
        self._down_until = time.monotonic() + self.down_backoff_s

    def _skip(self) -> bool:
        return time.monotonic() < self._down_until

    async def open_models(self) -> set[str]:
        if self._skip():
            return await self._fallback.open_models()
        try:
            states = await self._refresh()
            blocked = {m for m, s in states.items() if s == "open"}
            for model in (m for m, s in states.items() if s == "half_open"):
                if not await self._probe(keys=[f"{_PREFIX}{model}"], args=[self.policy.cooldown_s]):
                    blocked.add(model)
            self._ok()
            return blocked
        except Exception as exc:
            self._failed(exc)
            return await self._fallback.open_models()

    async def record_success(self, model: str) -> None:
        if self._snapshot.get(model, "closed") == "closed" and not self.degraded:
            return  # nothing to close: saves a round trip per request
        if self._skip():
            await self._fallback.record_success(model)
            return
        try:
            await self._success(keys=self._keys(model)[:2])
            self._snapshot[model] = "closed"
            self._ok()
        except Exception as exc:
            self._failed(exc)
        await self._fallback.record_success(model)

    async def record_failure(self, model: str) -> None:
        if self._skip():
            await self._fallback.record_failure(model)
            return
        try:
            state = await self._failure(
                keys=self._keys(model),
                args=[
                    model,
                    self.policy.failure_threshold,
                    self.policy.window_s,
                    self.policy.cooldown_s,
                    uuid.uuid4().hex,
                ],
            )
            state = state.decode() if isinstance(state, bytes) else str(state)
            if state == "open":
                self._snapshot[model] = "open"
            self._ok()
        except Exception as exc:
            self._failed(exc)
            await self._fallback.record_failure(model)

    async def states(self) -> dict[str, str]:
        if self._skip():
            return await self._fallback.states()
        try:
            self._snapshot_at = 0.0
            states = dict(await self._refresh())
            self._ok()
            return states
        except Exception as exc:
            self._failed(exc)
            return await self._fallback.states()
