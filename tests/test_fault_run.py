"""The fault run: 1,000 requests through the local host over real HTTP while Redis is stopped and
restarted, PostgreSQL is stopped and restarted, and one of the two models answers only 500s.
Callers see zero failures, and the request log ends with exactly 1,000 rows.

Poison is mixed in (issue 16): 50 requests carry a NUL (in the model or the content) and are each
a 400 that leaves no row, and the healthy model reports usage beyond PostgreSQL's integer column
for 20 answers, whose rows the database refuses. Those 20 land in `dead_letters`, every other row
in the request log, and readiness reports the dead letters."""

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
from shared.store.dead_letters import write_backlog_probe
from shared.store.request_log import PostgresRequestLog
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port
from tests.plugins.databases import PgControl, RedisControl

TOTAL = 1000
CONCURRENCY = 16
POISON_EVERY = 20  # every 20th request also sends a poison body: 50 in all
REFUSED_ROWS = 20  # answers whose upstream usage no integer column holds


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

    s = settings.model_copy(
        update={
            "upstream_read_timeout_s": 5.0,
            "request_deadline_s": 30.0,
            # the refused rows' absurd usage must not trip the tenant's token or spend quota
            "quota_tokens_per_day": 10**12,
            "quota_usd_per_month": 10.0**9,
        }
    )
    writer = PostgresRequestLog(database, batch_size=50, flush_interval_s=0.05, retry_initial_s=0.1, retry_max_s=1.0)
    cache = RedisCache(redis_control.url)
    circuit = RedisCircuitBreaker(cache.client, CircuitPolicy(failure_threshold=5, window_s=10, cooldown_s=1.0))
    backlog = write_backlog_probe(writer, writer.dead_letters, backlog_max=100_000, dead_letters_max=0)
    await make_context(
        settings=s,
        request_log=writer,
        cache=cache,
        circuit=circuit,
        probes={"postgres": database.probe, "request_log": backlog},
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
    fake_openai.push("small-upstream", *(["huge_usage"] * REFUSED_ROWS))
    tag = uuid.uuid4().hex
    failures: list[str] = []
    ids: list[str] = []
    served_by: dict[str, int] = {}
    counter = iter(range(TOTAL))
    applied: list[tuple[str, int]] = []
    poison_answers: list[int] = []

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
            if i % POISON_EVERY == 0:
                await poison(http, i)
            try:
                r = await http.post("/api/v1/chat/completions", json=body)
                if r.status_code != 200 or '"error"' in r.text:
                    failures.append(f"{i}: {r.status_code} {r.text[:200]}")
                    continue
                ids.append(r.headers["x-request-id"])
                served_by[r.headers["x-router-model"]] = served_by.get(r.headers["x-router-model"], 0) + 1
            except httpx.HTTPError as exc:
                failures.append(f"{i}: {type(exc).__name__}")

    async def poison(http: httpx.AsyncClient, i: int) -> None:
        bad = {"model": "auto\x00", "messages": [{"role": "user", "content": "hi"}]}
        if i % (2 * POISON_EVERY) == 0:
            bad = {"model": "auto", "messages": [{"role": "user", "content": f"{tag} poison \x00 {i}"}]}
        try:
            poison_answers.append((await http.post("/api/v1/chat/completions", json=bad)).status_code)
        except httpx.HTTPError:
            poison_answers.append(-1)

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
    assert poison_answers == [400] * (TOTAL // POISON_EVERY)
    assert len(ids) == len(set(ids)) == TOTAL
    assert served_by.get("small", 0) == TOTAL  # every answer came from the healthy model
    assert ready["status"] in {"ok", "degraded"}

    deadline = time.monotonic() + 120
    logged: set[str] = set()
    refused: list[str] = []
    while time.monotonic() < deadline:
        await writer.flush(timeout_s=5)
        async with database.connection() as conn:
            cur = await conn.execute("SELECT id FROM request_log WHERE id = ANY(%s)", (ids,))
            logged = {r[0] for r in await cur.fetchall()}
            cur = await conn.execute("SELECT row_id FROM dead_letters WHERE kind = 'request_log'")
            refused = [r[0] for r in await cur.fetchall()]
        if len(logged) + len(refused) >= TOTAL:
            break
        await asyncio.sleep(0.2)
    # every good row logged, every refused row dead-lettered once, none in both, none lost
    assert len(refused) == len(set(refused)) == REFUSED_ROWS
    assert set(refused) <= set(ids) and not set(refused) & logged
    assert logged | set(refused) == set(ids)
    assert writer.dropped == 0 and writer.dead_lettered == REFUSED_ROWS
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        ready = (await http.get("/health/ready")).json()
    assert "request_log: degraded" in ready["problems"]  # the dead letters show in readiness
