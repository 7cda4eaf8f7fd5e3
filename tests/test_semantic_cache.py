"""The semantic cache: opt-in, single-turn, same parameters, cosine >= threshold, per tenant;
with the memory backend and with real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import pytest

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.cache.base import KeyValueCache
from shared.cache.memory import MemoryCache
from shared.cache.redis import RedisCache
from shared.cache.semantic import MemoryBuckets, SemanticCache
from shared.composition.services import Services
from shared.config import Settings
from shared.encoders.hashing import HashingEncoder
from tests.fakes.openai_upstream import FakeOpenAI

URL = "/api/v1/chat/completions"
INVOKE = [Role.INVOKE.value]


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueCache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    c = RedisCache(request.getfixturevalue("redis_url"))
    yield c
    await c.close()


@pytest.fixture
def sem_settings(auth_settings: Settings) -> Settings:
    return auth_settings.model_copy(update={"semantic_cache_tenants": "always-on"})


@pytest.fixture
async def sem_ctx(
    client: httpx.AsyncClient,
    make_context: Callable[..., Any],
    cache: KeyValueCache,
    sem_settings: Settings,
    authenticator: BearerAuthenticator,
) -> Services:
    ctx: Services = await make_context(settings=sem_settings, authenticator=authenticator, cache=cache)
    return ctx


def cosine(encoder: Any, a: str, b: str) -> float:
    v = encoder.encode([a, b])
    return float(np.dot(v[0], v[1]))


def ask(prompt: str, **extra: Any) -> dict[str, Any]:
    # temperature 0.7: the exact cache stays out of the way, so any hit here is semantic
    return {"model": "big", "temperature": 0.7, "messages": [{"role": "user", "content": prompt}], **extra}


def topic() -> str:
    return f"zq{uuid.uuid4().hex[:8]}"


def headers(mint: Callable[..., str], tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(tenant, INVOKE)}"}


async def test_a_similar_prompt_is_answered_from_the_cache_when_opted_in(
    client: httpx.AsyncClient, sem_ctx: Services, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    t = topic()
    a, b = f"What is the capital city of {t}?", f"what is the capital city of {t.upper()}?"
    assert cosine(sem_ctx.encoder, a, b) >= sem_ctx.settings.semantic_cache_threshold
    h = headers(mint, "acme")
    first = await client.post(URL, headers=h, json=ask(a, routing={"semantic_cache": True}))
    assert first.headers["x-router-cache"] == "miss"
    second = await client.post(URL, headers=h, json=ask(b, routing={"semantic_cache": True}))
    assert second.headers["x-router-cache"] == "hit"
    assert second.headers["x-router-cache-kind"] == "semantic"
    assert second.json()["choices"] == first.json()["choices"]
    assert len(fake_openai.calls("big-upstream")) == 1
    # a streamed request is answered from the same entry, as a stream
    streamed = await client.post(URL, headers=h, json=ask(b, stream=True, routing={"semantic_cache": True}))
    assert streamed.headers["x-router-cache"] == "hit"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert len(fake_openai.calls("big-upstream")) == 1


async def test_without_opt_in_there_is_no_semantic_hit(
    client: httpx.AsyncClient, sem_ctx: Services, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    t = topic()
    h = headers(mint, "acme")
    await client.post(URL, headers=h, json=ask(f"Capital of {t}?"))
    resp = await client.post(URL, headers=h, json=ask(f"capital of {t}?"))
    assert resp.headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 2


async def test_it_is_tenant_scoped_and_can_be_on_per_tenant(
    client: httpx.AsyncClient, sem_ctx: Services, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    t = topic()
    prompt = f"Summarise the history of {t}."
    # "always-on" has the semantic cache on by settings: no flag needed
    on = headers(mint, "always-on")
    assert (await client.post(URL, headers=on, json=ask(prompt))).headers["x-router-cache"] == "miss"
    assert (await client.post(URL, headers=on, json=ask(prompt))).headers["x-router-cache"] == "hit"
    # another tenant asking the same thing never sees that answer
    other = headers(mint, "globex")
    resp = await client.post(URL, headers=other, json=ask(prompt, routing={"semantic_cache": True}))
    assert resp.headers["x-router-cache"] == "miss"
    # and a request can switch it off for itself
    off = await client.post(URL, headers=on, json=ask(prompt, routing={"semantic_cache": False}))
    assert off.headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 3


async def test_only_single_turn_prompts_with_the_same_parameters_match(
    client: httpx.AsyncClient, sem_ctx: Services, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    t = topic()
    h = headers(mint, "acme")
    opt = {"routing": {"semantic_cache": True}}
    prompt = f"Describe the climate of {t}."
    await client.post(URL, headers=h, json=ask(prompt, **opt))
    different_params = await client.post(URL, headers=h, json=ask(prompt, max_tokens=50, **opt))
    assert different_params.headers["x-router-cache"] == "miss"
    multi_turn = {
        "model": "big",
        "temperature": 0.7,
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": prompt},
        ],
        **opt,
    }
    for _ in range(2):
        assert (await client.post(URL, headers=h, json=multi_turn)).headers["x-router-cache"] == "bypass"
    unrelated = await client.post(URL, headers=h, json=ask(f"Explain entanglement in {topic()} terms.", **opt))
    assert unrelated.headers["x-router-cache"] == "miss"
    no_cache = await client.post(URL, headers={**h, "cache-control": "no-cache"}, json=ask(prompt, **opt))
    assert no_cache.headers["x-router-cache"] == "bypass"
    assert len(fake_openai.calls("big-upstream")) == 6


async def test_the_threshold_decides(cache: KeyValueCache) -> None:
    enc = HashingEncoder(dim=256)
    a, b = "What is the capital city of France?", "What is the capital city of France"
    sim = cosine(enc, a, b)
    assert 0.5 < sim < 0.99
    va, vb = enc.encode([a])[0], enc.encode([b])[0]
    bucket = f"llmr:sem:test:{uuid.uuid4().hex}"
    strict = SemanticCache.over(cache, threshold=min(1.0, sim + 0.01), ttl_s=60)
    loose = SemanticCache.over(cache, threshold=sim - 0.01, ttl_s=60)
    loose.buckets = strict.buckets  # one store of buckets, two thresholds
    await strict.store(bucket, a, va, b"answer-a")
    assert await strict.lookup(bucket, vb) is None
    assert await loose.lookup(bucket, vb) == b"answer-a"
    assert await strict.lookup(bucket, va) == b"answer-a"


async def test_buckets_are_bounded(cache: KeyValueCache) -> None:
    sem = SemanticCache.over(cache, threshold=0.95, ttl_s=60)
    sem.per_bucket = 3
    if isinstance(cache, RedisCache):
        assert sem.buckets is cache  # Redis lists hold the buckets
    else:
        assert isinstance(sem.buckets, MemoryBuckets)
    enc = HashingEncoder(dim=64)
    bucket = f"llmr:sem:test:{uuid.uuid4().hex}"
    texts = [f"prompt number {i} about {topic()}" for i in range(5)]
    for text, vec in zip(texts, enc.encode(texts), strict=True):
        await sem.store(bucket, text, vec, text.encode())
    entries = await sem.buckets.list_range(bucket)
    assert len(entries) == 3
    # the newest stay: the last prompt is found, the first is gone
    assert await sem.lookup(bucket, enc.encode([texts[-1]])[0]) == texts[-1].encode()
    assert await sem.lookup(bucket, enc.encode([texts[0]])[0]) is None


class CountingRemoteEncoder:
    """Stands in for an embeddings API: counts the texts it is asked to embed."""

    name = "remote-test"
    dim = 32

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.local = HashingEncoder(dim=self.dim)

    async def aencode(self, texts: Any) -> np.ndarray:
        self.asked.extend(texts)
        out: np.ndarray = self.local.encode(list(texts))
        return out


async def test_the_embedding_cache_saves_remote_calls(cache: KeyValueCache) -> None:
    from shared.cache.embeddings import CachedEncoder

    remote = CountingRemoteEncoder()
    enc = CachedEncoder(remote, cache, ttl_s=60)
    a, b = f"first {topic()}", f"second {topic()}"
    first = await enc.aencode([a, b])
    again = await enc.aencode([b, a])
    assert remote.asked == [a, b]  # the second call was answered from the cache
    np.testing.assert_array_equal(again, first[::-1])
    np.testing.assert_array_equal(first, remote.local.encode([a, b]))
