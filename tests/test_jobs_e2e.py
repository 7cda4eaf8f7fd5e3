"""Jobs end to end over real HTTP: the local host on a loopback port feeds the Service Bus trigger
from its in-process bus (at-least-once, redelivery, dead-lettering), the fake upstream answers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from shared.composition.services import Services
from shared.config import Settings
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.store.base import MemoryRequestLog
from shared.store.db import Database
from shared.store.job_store import FINAL_STATUSES, MemoryJobStore, PostgresJobStore
from shared.store.request_log import PostgresRequestLog
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread, free_port

MAX_DELIVERIES = 4


@dataclass
class JobsHost:
    url: str
    ctx: Services
    bus: LocalBus


@pytest.fixture
async def jobs_host(make_context: ContextFactory, settings: Settings) -> AsyncIterator[JobsHost]:
    import function_app
    from devtools.localhost import build_app

    s = settings.model_copy(
        update={"max_attempts_per_model": 1, "service_bus_max_delivery_count": MAX_DELIVERIES, "request_deadline_s": 20}
    )
    bus = LocalBus(max_delivery_count=MAX_DELIVERIES, redelivery_delay_s=0.01)
    service = JobService(s, MemoryJobStore(), bus)
    bus.on_dead_letter(service.on_local_dead_letter)
    ctx = await make_context(settings=s, jobs=service)
    server = ServerThread(build_app(function_app.app, bus=bus, timers=False)).start()
    try:
        yield JobsHost(server.url, ctx, bus)
    finally:
        server.stop()


async def submit(http: httpx.AsyncClient, text: str, model: str = "small", **extra: Any) -> str:
    r = await http.post("/api/v1/jobs", json={"model": model, "messages": [{"role": "user", "content": text}], **extra})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == body["status_url"]
    return str(body["id"])


async def wait_final(http: httpx.AsyncClient, job_ids: list[str], timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    pending = list(job_ids)
    while pending and time.monotonic() < deadline:
        answers = await asyncio.gather(*(http.get(f"/api/v1/jobs/{j}") for j in pending))
        for job_id, r in zip(pending, answers, strict=True):
            assert r.status_code == 200, r.text
            if r.json()["status"] in FINAL_STATUSES:
                done[job_id] = r.json()
        pending = [j for j in pending if j not in done]
        if pending:
            await asyncio.sleep(0.1)
    assert not pending, f"{len(pending)} jobs did not finish in {timeout_s} s"
    return done


def log_rows(ctx: Services, job_id: str) -> list[Any]:
    assert isinstance(ctx.request_log, MemoryRequestLog)
    return [r for r in ctx.request_log.rows if r.id.split(".")[0] == job_id]


async def test_post_poll_succeeds(jobs_host: JobsHost, fake_openai: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=jobs_host.url, timeout=10) as http:
        job_id = await submit(http, "Name a prime number", metadata={"ticket": "T-1"})
        job = (await wait_final(http, [job_id]))[job_id]
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert job["result"]["object"] == "chat.completion" and job["result"]["model"] == "small"
    assert job["metadata"] == {"ticket": "T-1"}
    assert job["timings"]["run_ms"] is not None
    [row] = log_rows(jobs_host.ctx, job_id)
    assert row.source == "job" and row.id == job["request_id"]


async def test_two_failed_attempts_then_success_has_three_attempts(
    jobs_host: JobsHost, fake_openai: FakeOpenAI
) -> None:
    fake_openai.push("small-upstream", "500", "500")
    async with httpx.AsyncClient(base_url=jobs_host.url, timeout=10) as http:
        job_id = await submit(http, "retry me through the bus")
        job = (await wait_final(http, [job_id]))[job_id]
    assert job["status"] == "succeeded" and job["attempts"] == 3
    assert len(fake_openai.calls("small-upstream")) == 3
    rows = log_rows(jobs_host.ctx, job_id)
    assert [r.id for r in rows if r.status == 200] == [job["request_id"]]
    assert jobs_host.bus.dead_letters == {}


async def test_a_job_that_keeps_failing_is_dead_lettered(jobs_host: JobsHost, fake_openai: FakeOpenAI) -> None:
    fake_openai.push("small-upstream", *["500"] * MAX_DELIVERIES)
    async with httpx.AsyncClient(base_url=jobs_host.url, timeout=10) as http:
        job_id = await submit(http, "never works")
        job = (await wait_final(http, [job_id]))[job_id]
    assert job["status"] == "dead_lettered" and job["attempts"] == MAX_DELIVERIES
    assert job["error"]["transient"] is True
    [dead] = jobs_host.bus.dead_letters["llm-router-requests"]
    assert dead.message_id == job_id and dead.delivery_count == MAX_DELIVERIES


async def test_reply_to_receives_the_result(jobs_host: JobsHost, fake_openai: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=jobs_host.url, timeout=10) as http:
        job_id = await submit(http, "reply to me", reply_to="e2e-replies")
        job = (await wait_final(http, [job_id]))[job_id]
    [reply] = jobs_host.bus.sent["e2e-replies"]
    assert reply.correlation_id == job_id
    body = orjson.loads(reply.body)
    assert body["status"] == "succeeded" and body["result"] == job["result"]


@pytest.fixture
async def pg_jobs_host(make_context: ContextFactory, settings: Settings, pg_url: str) -> AsyncIterator[JobsHost]:
    """The production combination: jobs and the request log in PostgreSQL. uvicorn serves the local
    host on a loopback port from THIS event loop, because the psycopg pool belongs to one loop."""
    import function_app
    from devtools.localhost import build_app

    s = settings.model_copy(update={"service_bus_max_delivery_count": MAX_DELIVERIES, "request_deadline_s": 20})
    db = Database(pg_url, max_size=10)
    await db.open()
    await db.migrate()
    bus = LocalBus(max_delivery_count=MAX_DELIVERIES, redelivery_delay_s=0.01)
    service = JobService(s, PostgresJobStore(db), bus)
    bus.on_dead_letter(service.on_local_dead_letter)
    writer = PostgresRequestLog(db, flush_interval_s=0.05)
    ctx = await make_context(settings=s, jobs=service, request_log=writer)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(function_app.app, bus=bus, timers=False), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "the local host did not start"
        await asyncio.sleep(0.02)
    try:
        yield JobsHost(f"http://127.0.0.1:{port}", ctx, bus)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await db.close()


async def test_load_200_concurrent_jobs_none_lost_none_twice(pg_jobs_host: JobsHost, fake_openai: FakeOpenAI) -> None:
    run = uuid.uuid4().hex[:8]
    texts = [f"load {run} job {i}" for i in range(200)]
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=pg_jobs_host.url, timeout=30, limits=limits) as http:
        job_ids = await asyncio.gather(*(submit(http, t) for t in texts))
        assert len(set(job_ids)) == 200
        final = await wait_final(http, list(job_ids), timeout_s=120)
    assert Counter(j["status"] for j in final.values()) == {"succeeded": 200}
    calls = Counter(r["messages"][-1]["content"] for r in fake_openai.requests)
    assert all(calls[t] == 1 for t in texts), "a job ran twice or not at all"
    assert all(j["attempts"] == 1 for j in final.values())

    writer = pg_jobs_host.ctx.request_log
    assert isinstance(writer, PostgresRequestLog)
    assert await writer.flush(timeout_s=30)
    async with writer.db.connection() as conn:
        cur = await conn.execute(
            "SELECT id, source, status FROM request_log WHERE split_part(id, '.', 1) = ANY(%s)", (list(job_ids),)
        )
        rows = await cur.fetchall()
    assert len(rows) == 200 and all(source == "job" and status == 200 for _, source, status in rows)
    assert {r[0] for r in rows} == {j["request_id"] for j in final.values()}
