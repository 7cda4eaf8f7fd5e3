"""Quotas and budgets, in memory and in real Redis: requests per minute, tokens per day, USD per
month; reservations settle to the real cost; 50 concurrent requests cannot overshoot a budget."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Principal, Role
from shared.config import Settings
from shared.errors import QuotaExceeded
from shared.metrics import QUOTA_REJECTIONS
from shared.quota import MemoryQuota, QuotaLimits, RedisQuota, Windows
from tests.fakes.openai_upstream import FakeOpenAI
from tests.plugins.auth_tokens import asgi_client, bearer

ACME = Principal(subject="s", tenant="acme", roles=frozenset({Role.INVOKE.value}))
GLOBEX = Principal(subject="s", tenant="globex", roles=frozenset({Role.INVOKE.value}))

QuotaFactory = Callable[[QuotaLimits], Any]


@pytest.fixture(params=["memory", "redis"])
async def make_quota(request: pytest.FixtureRequest) -> AsyncIterator[QuotaFactory]:
    made: list[Any] = []
    if request.param == "memory":

        def factory(limits: QuotaLimits) -> Any:
            q = MemoryQuota(limits)
            made.append(q)
            return q
    else:
        try:
            url = request.getfixturevalue("redis_url")
        except pytest.FixtureLookupError:
            pytest.skip("the redis_url fixture (tests/plugins/databases.py) is not there yet")

        def factory(limits: QuotaLimits) -> Any:
            q = RedisQuota(Redis.from_url(url), limits)
            q.prefix = f"test:quota:{uuid.uuid4().hex}"
            made.append(q)
            return q

    yield factory
    for q in made:
        await q.close()


def rejections(limit: str) -> float:
    return QUOTA_REJECTIONS.labels(limit)._value.get()


def same_minute(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run a check again when it straddled a minute boundary (the window it counts in reset)."""

    async def run() -> Any:
        for _ in range(2):
            before = Windows.at(time.time()).minute
            result = await fn()
            if Windows.at(time.time()).minute == before:
                return result
        raise AssertionError("the minute changed twice in a row")

    return run


async def test_requests_per_minute(make_quota: QuotaFactory) -> None:
    async def check() -> None:
        quota = make_quota(QuotaLimits(requests_per_minute=3, tokens_per_day=0, usd_per_month=0))
        for _ in range(3):
            await quota.admit(ACME, 1, 0.0)
        before = rejections("requests_per_minute")
        with pytest.raises(QuotaExceeded) as err:
            await quota.admit(ACME, 1, 0.0)
        assert err.value.param == "requests_per_minute"
        assert err.value.status == 429
        assert 1 <= int(err.value.headers["Retry-After"]) <= 60
        assert rejections("requests_per_minute") == before + 1
        # another tenant has its own counter
        await quota.admit(GLOBEX, 1, 0.0)
        assert (await quota.usage("acme")).requests_this_minute == 3

    await same_minute(check)()


async def test_tokens_per_day_reserve_and_settle(make_quota: QuotaFactory) -> None:
    quota = make_quota(QuotaLimits(requests_per_minute=0, tokens_per_day=1000, usd_per_month=0))
    r1 = await quota.admit(ACME, 600, 0.0)
    with pytest.raises(QuotaExceeded) as err:
        await quota.admit(ACME, 600, 0.0)  # 600 reserved + 600 > 1000
    assert err.value.param == "tokens_per_day"
    assert int(err.value.headers["Retry-After"]) <= 86_400
    await quota.settle(r1, 100, 0.0)  # the real usage was smaller: 500 tokens released
    assert (await quota.usage("acme")).tokens_today == 100
    r2 = await quota.admit(ACME, 600, 0.0)
    await quota.settle(r2, 0, 0.0)  # a failed call costs nothing
    assert (await quota.usage("acme")).tokens_today == 100


async def test_usd_per_month(make_quota: QuotaFactory) -> None:
    quota = make_quota(QuotaLimits(requests_per_minute=0, tokens_per_day=0, usd_per_month=1.0))
    r = await quota.admit(ACME, 10, 0.6)
    with pytest.raises(QuotaExceeded) as err:
        await quota.admit(ACME, 10, 0.5)
    assert err.value.param == "usd_per_month"
    assert int(err.value.headers["Retry-After"]) <= 31 * 86_400
    await quota.settle(r, 10, 0.25)
    usage = await quota.usage("acme")
    assert usage.usd_this_month == pytest.approx(0.25)
    await quota.admit(ACME, 10, 0.75)  # exactly the rest of the budget
    with pytest.raises(QuotaExceeded):
        await quota.admit(ACME, 10, 0.000001)


async def test_concurrent_admissions_never_overshoot(make_quota: QuotaFactory) -> None:
    quota = make_quota(QuotaLimits(requests_per_minute=0, tokens_per_day=0, usd_per_month=10.0))

    async def one() -> bool:
        try:
            await quota.admit(ACME, 1, 1.0)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sum(results) == 10
    assert (await quota.usage("acme")).usd_this_month == pytest.approx(10.0)


# --- through the HTTP API ------------------------------------------------------------------------


def chat(i: int) -> dict[str, Any]:
    return {
        "model": "small",
        "messages": [{"role": "user", "content": f"hello number {i:02d}"}],
        "max_tokens": 6,
        "temperature": 0.7,
    }


# The fake upstream counts words: prompt "hello number NN" = 3 tokens; the answer
# "Answer from small-upstream: hello number NN" = 6 tokens; "small" costs $0.1/$0.4 per Mtok.
REAL_COST = (3 * 0.1 + 6 * 0.4) / 1_000_000


@pytest.fixture
async def budget_client(
    ctx: Any,
    make_context: Callable[..., Any],
    make_quota: QuotaFactory,
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Any]]:
    quota = make_quota(QuotaLimits(requests_per_minute=0, tokens_per_day=0, usd_per_month=10 * REAL_COST))
    built = await make_context(settings=auth_settings, authenticator=authenticator, quota=quota, cache=None)
    async with asgi_client() as c:
        yield c, built, quota


async def test_budget_holds_under_50_concurrent_requests(
    budget_client: tuple[httpx.AsyncClient, Any, Any], mint: Callable[..., str], fake_openai: FakeOpenAI
) -> None:
    client, built, quota = budget_client
    headers = bearer(mint("acme", [Role.INVOKE.value]))
    responses = await asyncio.gather(
        *(client.post("/api/v1/chat/completions", json=chat(i), headers=headers) for i in range(50))
    )
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert 1 <= len(ok) <= 10
    for r in ok:
        assert r.json()["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    for r in refused:
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error"
        assert err["param"] == "usd_per_month"
        assert "usd per month" in err["message"]
    # the upstream was called only for admitted requests
    assert len(fake_openai.calls("small-upstream")) == len(ok)
    budget = 10 * REAL_COST
    spent = (await quota.usage("acme")).usd_this_month
    assert spent <= budget + 1e-12
    assert spent == pytest.approx(len(ok) * REAL_COST, abs=1e-9)
    logged = sum(row.cost_usd for row in built.request_log.rows if row.tenant == "acme")
    assert logged <= budget + 1e-12


async def test_failed_call_releases_its_reservation(
    budget_client: tuple[httpx.AsyncClient, Any, Any], mint: Callable[..., str], fake_openai: FakeOpenAI
) -> None:
    client, _, quota = budget_client
    fake_openai.push("small-upstream", "500", "500", "500", "500")
    headers = bearer(mint("acme", [Role.INVOKE.value]))
    r = await client.post("/api/v1/chat/completions", json=chat(1), headers=headers)
    assert r.status_code >= 500
    usage = await quota.usage("acme")
    assert usage.usd_this_month == 0
    assert usage.tokens_today == 0
    assert usage.requests_this_minute == 1


async def test_rpm_over_http_names_the_limit(
    ctx: Any,
    make_context: Callable[..., Any],
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
    mint: Callable[..., str],
    fake_openai: FakeOpenAI,
) -> None:
    async def check() -> None:
        quota = MemoryQuota(QuotaLimits(requests_per_minute=2, tokens_per_day=0, usd_per_month=0))
        await make_context(settings=auth_settings, authenticator=authenticator, quota=quota, cache=None)
        async with asgi_client() as client:
            acme = bearer(mint("acme", [Role.INVOKE.value]))
            codes = [(await client.post("/api/v1/chat/completions", json=chat(i), headers=acme)) for i in range(3)]
            assert [r.status_code for r in codes] == [200, 200, 429]
            assert codes[2].json()["error"]["param"] == "requests_per_minute"
            assert codes[2].headers["retry-after"]
            other = await client.post(
                "/api/v1/chat/completions", json=chat(9), headers=bearer(mint("globex", [Role.INVOKE.value]))
            )
            assert other.status_code == 200

    await same_minute(check)()


async def test_redis_quota_down_serves_on_in_process_counts(
    make_context: Any, client: httpx.AsyncClient, fake_openai: Any, redis_control: Any
) -> None:
    """Redis down must never fail a request: quotas fall back to in-process counting (still
    enforced per replica) and go back to Redis when it answers."""
    from shared.cache.redis import RedisCache
    from shared.quota import QuotaLimits, RedisQuota

    redis_control.require_stoppable()
    cache = RedisCache(redis_control.url)
    quota = RedisQuota(cache.client, QuotaLimits(requests_per_minute=3, tokens_per_day=10**9, usd_per_month=10**6))
    await make_context(quota=quota, cache=cache)
    body = {"model": "small", "messages": [{"role": "user", "content": "quota while redis is down"}]}
    try:
        redis_control.stop()
        codes = [(await client.post("/api/v1/chat/completions", json=body)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]  # the limit still holds, counted in process
    finally:
        redis_control.start()
        await cache.close()
