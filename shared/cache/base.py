"""The key-value protocol every cache backend implements.

Values are bytes; backends never interpret them. A backend that cannot reach its store raises
CacheUnavailable, and callers bypass the cache (a cache outage must never fail a request).
"""

from __future__ import annotations

from typing import Protocol


class CacheUnavailable(Exception):
    pass


class KeyValueCache(Protocol):
    kind: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def ping(self) -> float:
        """Round-trip time in ms; raises CacheUnavailable when down."""
        ...

    async def close(self) -> None: ...
