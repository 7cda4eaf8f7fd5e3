"""Redis cache backend (redis-py asyncio), for Azure Cache for Redis or any Redis.

Azure Cache for Redis takes TLS on port 6380: use `rediss://:<access key>@<name>.redis.cache.windows.net:6380/0`.
Timeouts are short because a cache must never slow a request much: on a connection error or
timeout this raises CacheUnavailable (callers bypass the cache), and for `down_backoff_s` after
such an error calls fail fast instead of waiting on a dead server again. ping() always tries,
so readiness tells the truth.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import CacheUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def client_options(
    url: str, *, socket_timeout_s: float, connect_timeout_s: float, ssl_ca_certs: str | None = None
) -> dict[str, Any]:
    """The keyword arguments for Redis.from_url; TLS comes from the rediss:// scheme."""
    opts: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": connect_timeout_s,
        "socket_keepalive": True,
        # Azure closes idle connections after 10 minutes; check before reusing an idle one
        "health_check_interval": 30,
        "retry_on_timeout": False,
        # no client-side retries: a miss is cheaper than waiting on a struggling cache
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 64,
    }
    if url.startswith("rediss://"):
        opts["ssl_cert_reqs"] = "required"
        opts["ssl_min_version"] = _tls12()
        if ssl_ca_certs:
            opts["ssl_ca_certs"] = ssl_ca_certs
    return opts


def _tls12() -> Any:
    return ssl.TLSVersion.TLSv1_2


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class RedisCache:
    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        socket_timeout_s: float = 0.25,
        connect_timeout_s: float = 0.5,
        down_backoff_s: float = 2.0,
        ssl_ca_certs: str | None = None,
    ) -> None:
        self.down_backoff_s = down_backoff_s
        self._down_until = 0.0
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            **client_options(
                url, socket_timeout_s=socket_timeout_s, connect_timeout_s=connect_timeout_s, ssl_ca_certs=ssl_ca_certs
            ),
        )

    async def _call(self, op: Callable[[], Awaitable[T]], *, fail_fast: bool = True) -> T:
        if fail_fast and time.monotonic() < self._down_until:
            raise CacheUnavailable("redis was unreachable moments ago")
        try:
            result = await op()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if time.monotonic() >= self._down_until:
                log.warning("redis unreachable (%s); bypassing the cache", type(exc).__name__)
            self._down_until = time.monotonic() + self.down_backoff_s
            raise CacheUnavailable(f"redis: {type(exc).__name__}") from None
        except RedisError as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}") from None
        self._down_until = 0.0
        return result

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self.client.get(key))
        return _as_bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._call(lambda: self.client.set(key, value, ex=max(1, int(ttl_s))))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self.client.delete(key))

    async def ping(self) -> float:
        t0 = time.perf_counter()
        await self._call(self.client.ping, fail_fast=False)
        return (time.perf_counter() - t0) * 1000

    # -- small bounded lists (semantic-cache buckets) -----------------------------------------
    async def list_range(self, key: str) -> list[bytes]:
        values = await self._call(lambda: self.client.lrange(key, 0, -1))
        return [_as_bytes(v) for v in values]

    async def list_push_bounded(self, key: str, value: bytes, max_len: int, ttl_s: int) -> None:
        async def op() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, value)
                pipe.ltrim(key, -max_len, -1)
                pipe.expire(key, max(1, int(ttl_s)))
                return await pipe.execute()

        await self._call(op)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception as exc:  # closing a client to a dead server must not fail shutdown
            log.debug("redis close: %s", type(exc).__name__)
