"""Bounded memory everywhere a client can add data (issue #16, finding 4): the prompt store kept for
feedback and the in-process caches are bounded by bytes, not only by entries. Before, 1,000 unique
110 KB prompts grew the process by ~675 MB: every one was kept for feedback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from shared.cache.memory import MemoryCache
from shared.cache.semantic import MemoryBuckets
from shared.config import Settings

MIB = 2**20
PROMPT_BYTES = 110_000


def held_bytes(cache: Any) -> int:
    """What an in-process cache holds, counted from its entries (keys and values)."""
    return sum(len(key) + len(item[1]) for key, item in cache._data.items())


def large_prompt(i: int) -> str:
    # unique from the first word, so neither cache nor routing can fold two into one
    words = [f"w{i}x{j}" for j in range(PROMPT_BYTES // 10)]
    return " ".join(words)[:PROMPT_BYTES]


async def test_large_unique_prompts_stay_within_the_byte_budgets(
    settings: Settings, make_context: Callable[..., Any], client: httpx.AsyncClient
) -> None:
    budget = 2 * MIB
    s = settings.model_copy(update={"feedback_prompt_max_bytes": budget, "cache_max_bytes": budget})
    services = await make_context(settings=s)
    for i in range(60):  # ~6.6 MB of prompts
        body = {"model": "small", "temperature": 0, "messages": [{"role": "user", "content": large_prompt(i)}]}
        r = await client.post("/api/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
    await services.hooks.drain()
    prompts = services.feedback_examples.prompts.cache
    assert held_bytes(prompts) <= budget, f"the prompt store holds {held_bytes(prompts) / MIB:.1f} MiB"
    assert held_bytes(services.cache) <= budget
    # the newest prompts are still there for feedback; the oldest went first
    assert await services.feedback_examples.prompts.get(services.request_log.rows[-1].id) is not None
    assert await services.feedback_examples.prompts.get(services.request_log.rows[0].id) is None


async def test_memory_cache_evicts_by_bytes_least_recently_used_first() -> None:
    cache = MemoryCache(max_entries=10_000, max_bytes=1 * MIB)
    value = b"x" * 100_000
    for i in range(30):
        await cache.set(f"k{i}", value, 60)
        if i == 5:
            assert await cache.get("k0") == value  # k0 is now recently used
    assert cache.size_bytes <= 1 * MIB
    assert held_bytes(cache) <= cache.size_bytes
    assert await cache.get("k29") == value
    assert await cache.get("k1") is None
    # rewriting a key and deleting one keep the count exact
    await cache.set("k29", b"y", 60)
    await cache.delete("k28")
    assert cache.size_bytes == sum(len(k) + len(v[1]) + cache.entry_overhead for k, v in cache._data.items())
    # a value larger than the whole budget is not kept, and evicts nothing
    before = dict(cache._data)
    await cache.set("huge", b"z" * (2 * MIB), 60)
    assert await cache.get("huge") is None
    assert cache._data == before


async def test_expired_entries_free_their_bytes() -> None:
    cache = MemoryCache(max_bytes=1 * MIB)
    await cache.set("gone", b"x" * 1000, -1)
    assert await cache.get("gone") is None
    assert cache.size_bytes == 0


async def test_semantic_buckets_are_bounded_by_bytes() -> None:
    buckets = MemoryBuckets(max_buckets=100_000, max_bytes=256 * 1024)
    entry = b"llmr:semresp:v1:" + b"k" * 48 + b"\x00" + np.ones(128, dtype=np.float32).tobytes()
    for b in range(2000):
        for _ in range(4):
            await buckets.list_push_bounded(f"bucket-{b}", entry, 32, 60)
    assert buckets.size_bytes <= 256 * 1024
    assert await buckets.list_range("bucket-1999") == [entry] * 4
    assert await buckets.list_range("bucket-0") == []
    # one bucket's own bound (per_bucket) still holds
    for _ in range(40):
        await buckets.list_push_bounded("busy", entry, 32, 60)
    assert len(await buckets.list_range("busy")) == 32


def test_large_blocks_come_from_the_os_on_linux() -> None:
    import sys

    from shared.allocator import large_blocks_from_the_os

    assert large_blocks_from_the_os() is sys.platform.startswith("linux")
