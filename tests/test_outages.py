"""Outages of real servers while requests flow: nothing fails, nothing is lost or doubled.

- Postgres stopped, then restarted: every served request ends with exactly one request_log row.
- Redis stopped: zero failed requests (the cache is bypassed) and readiness says degraded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from shared.cache.redis import RedisCache
from shared.store.db import Database
from shared.store.request_log import PostgresRequestLog
from tests.plugins.databases import PgControl, RedisControl

URL = "/api/v1/chat/completions"


async def served(client: httpx.AsyncClient, n: int, tag: str, **extra: Any) -> list[str]:
    ids = []
    for i in range(n):
        body = {
            "model": "small",
            "stream": i % 2 == 1,
            "messages": [{"role": "user", "content": f"{tag} request {i}"}],
            **extra,
        }
        resp = await client.post(URL, json=body)
        assert resp.status_code == 200, resp.text
        assert '"error"' not in resp.text
        ids.append(resp.headers["x-request-id"])
    return ids


async def readiness(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/health/ready")
    out: dict[str, Any] = resp.json()
    return out


async def test_postgres_outage_loses_and_doubles_nothing(
    client: httpx.AsyncClient, make_context: Callable[..., Any], database: Database, pg_control: PgControl
) -> None:
    pg_control.require_stoppable()
    writer = PostgresRequestLog(database, batch_size=4, flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=1.0)
    await make_context(request_log=writer, probes={"postgres": database.probe})
    tag = uuid.uuid4().hex
    ids = await served(client, 6, f"{tag} before")
    try:
        pg_control.stop()
        ids += await served(client, 10, f"{tag} during")
        ready = await readiness(client)
        assert ready["status"] == "degraded"
        assert "postgres: down" in ready["problems"]
        assert writer.pending_count > 0  # held, not lost
    finally:
        pg_control.start()
    ids += await served(client, 6, f"{tag} after")

    deadline = time.monotonic() + 90
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        await writer.flush(timeout_s=5)
        async with database.connection() as conn:
            cur = await conn.execute("SELECT id, count(*) FROM request_log WHERE id = ANY(%s) GROUP BY id", (ids,))
            counts = {r[0]: r[1] for r in await cur.fetchall()}
        if len(counts) == len(ids):
            break
        await asyncio.sleep(0.2)
    await writer.close()
    assert len(ids) == len(set(ids)) == 22
    assert counts == {i: 1 for i in ids}
    assert writer.dropped == 0
    async with database.connection() as conn:
        cur = await conn.execute("SELECT sum(requests) FROM usage_daily")
        row = await cur.fetchone()
    assert row is not None and int(row[0]) == len(ids)  # the rollup counted each row once
    assert (await readiness(client))["status"] == "ok"


async def test_redis_outage_fails_no_request(
    client: httpx.AsyncClient, make_context: Callable[..., Any], redis_url: str, redis_control: RedisControl
) -> None:
    redis_control.require_stoppable()
    cache = RedisCache(redis_url, down_backoff_s=0.2)
    await make_context(cache=cache)
    tag = uuid.uuid4().hex
    try:
        # deterministic requests, each asked twice: the cache is in play
        await served(client, 4, f"{tag} before", temperature=0)
        hits = await client.post(URL, json={"model": "small", "temperature": 0, "messages": [
            {"role": "user", "content": f"{tag} before request 0"}]})  # fmt: skip
        assert hits.headers["x-router-cache"] == "hit"

        redis_control.stop()
        failures = 0
        for i in range(12):
            body = {"model": "small", "temperature": 0, "stream": i % 3 == 0,
                    "messages": [{"role": "user", "content": f"{tag} during {i % 4}"}]}  # fmt: skip
            resp = await client.post(URL, json=body)
            failures += resp.status_code != 200 or '"error"' in resp.text
            assert resp.headers.get("x-router-cache") == "bypass"
        assert failures == 0
        ready = await readiness(client)
        assert ready["status"] == "degraded"
        assert "cache: down" in ready["problems"]
    finally:
        redis_control.start()

    # back: the cache works again (bounded wait for the client to reconnect)
    body = {"model": "small", "temperature": 0, "messages": [{"role": "user", "content": f"{tag} after"}]}
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline and state != "hit":
        resp = await client.post(URL, json=body)
        assert resp.status_code == 200
        state = resp.headers["x-router-cache"]
        await asyncio.sleep(0.05)
    assert state == "hit"
    assert (await readiness(client))["status"] == "ok"


async def test_the_app_starts_and_serves_with_postgres_down_at_start(
    client: httpx.AsyncClient, make_context: Callable[..., Any], settings: Any
) -> None:
    from pydantic import SecretStr

    from shared.composition.assemble import Parts
    from shared.composition.backends import wire_store

    down = settings.model_copy(
        update={"database_enabled": True, "database_url": SecretStr("postgresql://postgres@127.0.0.1:1/postgres")}
    )
    parts = Parts()
    db = await wire_store(down, parts)
    closers = list(parts.closers)
    parts.closers = []
    writer = parts.request_log
    assert isinstance(writer, PostgresRequestLog)
    assert db is not None and parts.usage is not None and parts.feedback is not None
    await make_context(settings=down, parts=parts)
    try:
        ids = await served(client, 3, uuid.uuid4().hex)
        assert all(writer.pending(i) is not None for i in ids)  # waiting for Postgres, not lost
        ready = await readiness(client)
        assert ready["status"] == "degraded" and "postgres: down" in ready["problems"]
        usage = await client.get("/api/v1/usage")
        assert usage.status_code == 503
        assert usage.json()["error"]["code"] == "dependency_unavailable"
    finally:
        writer.close_timeout_s = 0.5
        await writer.close()
        for close in reversed(closers):
            await close()


async def test_wiring_with_a_reachable_postgres_and_redis(
    client: httpx.AsyncClient, make_context: Callable[..., Any], settings: Any, pg_url: str, redis_url: str
) -> None:
    from pydantic import SecretStr

    from shared.composition.assemble import Parts
    from shared.composition.backends import wire_cache, wire_store

    up = settings.model_copy(
        update={"database_enabled": True, "database_url": SecretStr(pg_url), "redis_url": SecretStr(redis_url)}
    )
    parts = Parts()
    db = await wire_store(up, parts)
    await wire_cache(up, parts)
    closers = list(parts.closers)
    parts.closers = []
    assert isinstance(parts.cache, RedisCache)
    assert db is not None and db.schema_ready
    writer = parts.request_log
    assert writer is not None
    await make_context(settings=up, parts=parts)
    try:
        ids = await served(client, 2, uuid.uuid4().hex)
        ready = await readiness(client)
        assert ready["status"] == "ok", ready
        usage = await client.get("/api/v1/usage", params={"group_by": "tenant"})
        assert usage.status_code == 200
        assert ids[0] in {r[0] for r in await _ids_in_log(db, ids)}
    finally:
        await writer.close()
        for close in reversed(closers):
            await close()


async def _ids_in_log(db: Database, ids: list[str]) -> list[tuple[str]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id FROM request_log WHERE id = ANY(%s)", (ids,))
        return list(await cur.fetchall())
