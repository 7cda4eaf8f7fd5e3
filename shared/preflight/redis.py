"""Redis: reachable, AUTH accepted, TLS on 6380 for Azure Cache for Redis."""

from __future__ import annotations

from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..cache.redis import client_options
from ..config import secret_value
from .base import CheckResult, Environment, describe, failed, passed, skipped

NAME = "redis"
AZURE_SUFFIX = ".redis.cache.windows.net"


class RedisCheck:
    name = NAME
    timeout_fix = "check REDIS_URL's host and port and that this network may reach the cache"

    async def run(self, env: Environment) -> CheckResult:

        url = secret_value(env.settings.redis_url)
        if not url:
            return skipped(NAME, "REDIS_URL unset: cache, quotas and circuit state stay in process")
        u = urlparse(url)
        host = u.hostname or ""
        if host.endswith(AZURE_SUFFIX) and (u.scheme != "rediss" or (u.port or 6379) != 6380):
            return failed(
                NAME,
                f"{host} is Azure Cache for Redis but REDIS_URL is {u.scheme}://...:{u.port or 6379}",
                "use rediss://:<access key>@" + host + ":6380/0 (TLS on 6380; 6379 is disabled)",
            )
        timeout = env.timeout_s / 2
        client = aioredis.from_url(url, **client_options(url, socket_timeout_s=timeout, connect_timeout_s=timeout))
        try:
            await client.ping()
        except AuthenticationError as exc:
            return failed(
                NAME,
                f"AUTH refused at {host}:{u.port}: {describe(exc)}",
                "put the cache's current access key in REDIS_URL (Key Vault secret llm-router-redis-url)",
            )
        except ResponseError as exc:
            if "NOAUTH" in str(exc) or "AUTH" in str(exc):
                return failed(
                    NAME,
                    f"AUTH needed at {host}:{u.port}: {describe(exc)}",
                    "add the password to REDIS_URL: rediss://:<access key>@host:6380/0",
                )
            return failed(NAME, f"PING failed: {describe(exc)}", self.timeout_fix)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            return failed(NAME, f"unreachable at {host}:{u.port}: {describe(exc)}", self.timeout_fix)
        finally:
            await client.aclose()
        tls = "TLS" if u.scheme == "rediss" else "no TLS"
        return passed(NAME, f"{host}:{u.port}: PING ok, {tls}")
