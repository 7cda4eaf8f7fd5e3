"""The exact response cache over HTTP, with the memory backend and with real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from shared.cache.base import KeyValueCache
from shared.cache.memory import MemoryCache
from shared.cache.redis import RedisCache
from shared.composition.services import Services
from tests.fakes.openai_upstream import FakeOpenAI

URL = "/api/v1/chat/completions"


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    redis_url: str = request.getfixturevalue("redis_url")
    # these tests are about what is cached, not about a slow Redis: the production timeouts
    # (0.25 s) turned a stall of this shared machine into a bypass once (a fresh-clone run)
    c = RedisCache(redis_url, socket_timeout_s=5.0, connect_timeout_s=5.0)
    yield c
    await c.close()


@pytest.fixture
async def cache_ctx(client: httpx.AsyncClient, make_context: Callable[..., Any], cache: KeyValueCache) -> Services:
    ctx: Services = await make_context(cache=cache)
    return ctx


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "big", "messages": [{"role": "user", "content": prompt}], **extra}


def fresh_prompt() -> str:
    return f"cache test {uuid.uuid4().hex} tell me something"


def stream_text(resp: httpx.Response) -> str:
    out = []
    for line in resp.text.splitlines():
        if not line.startswith("data: {"):
            continue
        event = orjson.loads(line[6:])
        for ch in event.get("choices") or []:
            out.append((ch.get("delta") or {}).get("content") or "")
    return "".join(out)


async def test_a_repeated_deterministic_request_is_a_hit(
    client: httpx.AsyncClient, cache_ctx: Services, fake_openai: FakeOpenAI
) -> None:
    b = body(fresh_prompt(), temperature=0)
    first = await client.post(URL, json=b)
    second = await client.post(URL, json=b)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-router-cache"] == "miss"
    assert second.headers["x-router-cache"] == "hit"
    assert len(fake_openai.calls("big-upstream")) == 1
    assert second.json()["choices"] == first.json()["choices"]
    # a seed makes a request deterministic too
    seeded = body(fresh_prompt(), temperature=0.9, seed=11)
    assert (await client.post(URL, json=seeded)).headers["x-router-cache"] == "miss"
    assert (await client.post(URL, json=seeded)).headers["x-router-cache"] == "hit"
    assert len(fake_openai.calls("big-upstream")) == 2


async def test_a_non_deterministic_request_bypasses_unless_it_opts_in(
    client: httpx.AsyncClient, cache_ctx: Services, fake_openai: FakeOpenAI
) -> None:
    b = body(fresh_prompt(), temperature=0.7)
    for _ in range(2):
        assert (await client.post(URL, json=b)).headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 2
    opted = body(fresh_prompt(), temperature=0.7, routing={"cache": True})
    assert (await client.post(URL, json=opted)).headers["x-router-cache"] == "miss"
    assert (await client.post(URL, json=opted)).headers["x-router-cache"] == "hit"
    # and a deterministic request can opt out
    out = body(fresh_prompt(), temperature=0, routing={"cache": False})
    for _ in range(2):
        assert (await client.post(URL, json=out)).headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 5


async def test_cache_control_no_cache_and_no_store(
    client: httpx.AsyncClient, cache_ctx: Services, fake_openai: FakeOpenAI
) -> None:
    b = body(fresh_prompt(), temperature=0)
    await client.post(URL, json=b)
    # no-cache: do not answer from the cache (it may still refresh the entry)
    fresh = await client.post(URL, json=b, headers={"cache-control": "no-cache"})
    assert fresh.headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 2
    assert (await client.post(URL, json=b)).headers["x-router-cache"] == "hit"

    # no-store: the answer is not kept
    other = body(fresh_prompt(), temperature=0)
    kept_out = await client.post(URL, json=other, headers={"cache-control": "no-store"})
    assert kept_out.status_code == 200
    assert (await client.post(URL, json=other)).headers["x-router-cache"] == "miss"
    assert len(fake_openai.calls("big-upstream")) == 4


async def test_a_stream_hit_replays_as_a_stream(
    client: httpx.AsyncClient, cache_ctx: Services, fake_openai: FakeOpenAI
) -> None:
    b = body(fresh_prompt(), temperature=0, stream=True)
    first = await client.post(URL, json=b)
    assert first.headers["x-router-cache"] == "miss"
    second = await client.post(URL, json={**b, "stream_options": {"include_usage": True}})
    assert second.headers["x-router-cache"] == "hit"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert stream_text(second) == stream_text(first) != ""
    assert second.text.rstrip().endswith("data: [DONE]")
    usage_events = [
        orjson.loads(line[6:]) for line in second.text.splitlines() if line.startswith("data: {") and '"usage"' in line
    ]
    assert usage_events and usage_events[-1]["usage"]["completion_tokens"] > 0
    # the same entry answers a non-streamed request as JSON
    plain = await client.post(URL, json={**b, "stream": False})
    assert plain.headers["x-router-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["content"] == stream_text(first)
    assert len(fake_openai.calls("big-upstream")) == 1


async def test_a_stream_that_broke_is_not_cached(
    client: httpx.AsyncClient, cache_ctx: Services, fake_openai: FakeOpenAI
) -> None:
    b = body(fresh_prompt(), temperature=0, stream=True)
    fake_openai.push("big-upstream", "break_after")
    broken = await client.post(URL, json=b)
    assert broken.status_code == 200  # the headers were already sent
    assert '"error"' in broken.text
    again = await client.post(URL, json=b)
    assert again.headers["x-router-cache"] == "miss"
    assert '"error"' not in again.text
    assert len(fake_openai.calls("big-upstream")) == 2
    assert (await client.post(URL, json=b)).headers["x-router-cache"] == "hit"
