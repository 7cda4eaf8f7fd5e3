"""The fault run: 1,000 requests through the local host over real HTTP while Redis is stopped and
restarted, PostgreSQL is stopped and restarted, and one of the two models answers only 500s.
Callers see zero failures, and the request log ends with exactly 1,000 rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from shared.cache.redis import RedisCache
from shared.circuit.base import CircuitPolicy
from shared.circuit.redis import RedisCircuitBreaker
from shared.config import Settings
from shared.store.db import Database
from shared.store.request_log import PostgresRequestLog
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port
from tests.plugins.databases import PgControl, RedisControl

TOTAL = 1000
CONCURRENCY = 16


@pytest.fixture
async def host(
    make_context: ContextFactory,
    settings: Settings,
    database: Database,
    redis_control: RedisControl,
) -> AsyncIterator[tuple[str, PostgresRequestLog]]:
    import function_app
    from devtools.localhost import build_app
    from shared.queue.local import LocalBus

    s = settings.model_copy(update={"upstream_read_timeout_s": 5.0, "request_deadline_s": 30.0})
    writer = PostgresRequestLog(database, batch_size=50, flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=1.0)
    cache = RedisCache(redis_control.url)
    circuit = RedisCircuitBreaker(cache.client, CircuitPolicy(failure_threshold=5, window_s=10, cooldown_s=1.0))
    await make_context(
        settings=s, request_log=writer, cache=cache, circuit=circuit, probes={"postgres": database.probe}
    )
    port = free_port()
    # served from this event loop: the psycopg pool belongs to the loop that created it
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(function_app.app, bus=LocalBus(), timers=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", writer
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await writer.close()
        await cache.close()


async def test_fault_run(
    host: tuple[str, PostgresRequestLog],
    fake_openai: FakeOpenAI,
    database: Database,
    pg_control: PgControl,
    redis_control: RedisControl,
) -> None:
    pg_control.require_stoppable()
    redis_control.require_stoppable()
    url, writer = host
    fake_openai.push("big-upstream", *(["500"] * (TOTAL * 3)))  # one model fails all along
    tag = uuid.uuid4().hex
    failures: list[str] = []
    ids: list[str] = []
    served_by: dict[str, int] = {}
    counter = iter(range(TOTAL))
    applied: list[tuple[str, int]] = []

    async def faults(done: asyncio.Event) -> None:
        # step through the outages while the load runs; each waits for progress, bounded in time
        plan = [(150, redis_control.stop), (350, redis_control.start), (500, pg_control.stop), (750, pg_control.start)]
        deadline = time.monotonic() + 240
        for at, action in plan:
            while len(ids) + len(failures) < at and not done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(action)
            applied.append((f"{action.__self__.__class__.__name__}.{action.__name__}", len(ids) + len(failures)))  # type: ignore[attr-defined]

    async def worker(http: httpx.AsyncClient) -> None:
        for i in counter:
            body = {
                "model": "auto:quality",
                "temperature": 0,  # deterministic: the response cache takes part (and its outage)
                "stream": i % 4 == 0,
                "messages": [{"role": "user", "content": f"{tag} question {i}: why is the sky blue?"}],
            }
            try:
                r = await http.post("/api/v1/chat/completions", json=body)
                if r.status_code != 200 or '"error"' in r.text:
                    failures.append(f"{i}: {r.status_code} {r.text[:200]}")
                    continue
                ids.append(r.headers["x-request-id"])
                served_by[r.headers["x-router-model"]] = served_by.get(r.headers["x-router-model"], 0) + 1
            except httpx.HTTPError as exc:
                failures.append(f"{i}: {type(exc).__name__}")

    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        chaos = asyncio.create_task(faults(done))
        await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(CONCURRENCY))), 600)
        done.set()
        await asyncio.wait_for(chaos, 60)
        ready = (await http.get("/health/ready")).json()

    # every fault happened while requests were still flowing
    assert [name for name, _ in applied] == [
        "RedisControl.stop",
        "RedisControl.start",
        "PgControl.stop",
        "PgControl.start",
    ]
    assert all(progress < TOTAL for _, progress in applied), applied
    assert failures == []
    assert len(ids) == len(set(ids)) == TOTAL
    assert served_by.get("small", 0) == TOTAL  # every answer came from the healthy model
    assert ready["status"] in {"ok", "degraded"}

    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline:
        await writer.flush(timeout_s=5)
        async with database.connection() as conn:
            cur = await conn.execute("SELECT count(*), count(DISTINCT id) FROM request_log WHERE id = ANY(%s)", (ids,))
            count, distinct = await cur.fetchone()  # type: ignore[misc]
        if count == TOTAL:
            break
        await asyncio.sleep(0.2)
    assert count == distinct == TOTAL
    assert writer.dropped == 0
