"""In-process cache with TTL, bounded by entries and by bytes (the embedded default, and the Redis
stand-in). Clients choose what is cached (prompts, answers), so the bytes bound is what keeps the
process's memory flat under large unique prompts; least recently used entries go first."""

from __future__ import annotations

import time
from collections import OrderedDict

# What one entry costs besides its key and value: the dict slot, the (expiry, value) tuple, the
# float and the objects' headers, rounded up (CPython 3.11, 64-bit).
ENTRY_OVERHEAD_BYTES = 200
DEFAULT_MAX_BYTES = 256 * 2**20


class MemoryCache:
    kind = "memory"
    entry_overhead = ENTRY_OVERHEAD_BYTES

    def __init__(self, max_entries: int = 10_000, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size_bytes = 0  # keys, values and overhead of what is held now
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def _cost(self, key: str, value: bytes) -> int:
        return len(key) + len(value) + self.entry_overhead

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.size_bytes -= self._cost(key, item[1])

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        cost = self._cost(key, value)
        if cost > self.max_bytes:
            return  # larger than the whole budget: keeping it would evict everything else
        self._drop(key)
        self._data[key] = (time.monotonic() + ttl_s, value)
        self.size_bytes += cost
        while len(self._data) > self.max_entries or self.size_bytes > self.max_bytes:
            old_key, (_, old_value) = self._data.popitem(last=False)
            self.size_bytes -= self._cost(old_key, old_value)

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        self._data.clear()
        self.size_bytes = 0
