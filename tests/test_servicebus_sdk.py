"""The real azure-servicebus SDK against the fake Service Bus (tests/fakes/servicebus.py, AMQP 1.0
on 127.0.0.1): the job sender, the reply_to path, and the local host's real-queue receive loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient
from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from devtools.localhost import functions_message
from shared.auth.base import ANONYMOUS
from shared.composition.services import Services
from shared.config import Settings
from shared.jobs.service import JobService
from shared.queue.servicebus import ServiceBusJobQueue
from shared.store.job_store import MemoryJobStore
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread
from tests.fakes.servicebus import FakeServiceBus
from tests.requests import user_function

QUEUE = "llm-router-requests"


@pytest.fixture
async def fake_bus() -> AsyncIterator[FakeServiceBus]:
    fake = await FakeServiceBus(max_delivery_count=3).start()
    try:
        yield fake
    finally:
        await fake.stop()


def sb_settings(settings: Settings, fake: FakeServiceBus) -> Settings:
    return settings.model_copy(
        update={
            "service_bus_connection_string": SecretStr(fake.connection_string),
            "max_attempts_per_model": 1,
            "service_bus_max_delivery_count": 3,
        }
    )


@pytest.fixture
async def sb_ctx(make_context: ContextFactory, settings: Settings, fake_bus: FakeServiceBus) -> AsyncIterator[Services]:
    s = sb_settings(settings, fake_bus)
    queue = ServiceBusJobQueue.from_settings(s)
    ctx = await make_context(settings=s, jobs=JobService(s, MemoryJobStore(), queue))
    # the local host closes the context (so the queue) on its own loop, where the queue was used
    ctx.closers.append(queue.close)
    try:
        yield ctx
    finally:
        await queue.close()


async def receive_one(fake: FakeServiceBus, queue: str) -> Any:
    async with (
        ServiceBusClient.from_connection_string(fake.connection_string, retry_total=0) as client,
        client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK) as receiver,
    ):
        [msg] = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        await receiver.complete_message(msg)
        return msg


async def test_the_sender_puts_the_job_message_on_the_queue(sb_ctx: Services, fake_bus: FakeServiceBus) -> None:
    svc: JobService = sb_ctx.jobs
    tracer = TracerProvider().get_tracer("test")
    body = {"model": "small", "messages": [{"role": "user", "content": "over amqp"}], "metadata": {"k": "v"}}
    with tracer.start_as_current_span("caller") as span:
        job = await svc.submit(orjson.dumps(body), ANONYMOUS)
        trace_id = format(span.get_span_context().trace_id, "032x")
    [stored] = fake_bus.sent[QUEUE]
    assert stored.message_id == job.id and stored.correlation_id == job.id
    props = stored.application_properties
    assert props["tenant"] == "default" and props["schema_version"] == "1"
    assert trace_id in props["traceparent"] and props["Diagnostic-Id"] == props["traceparent"]
    assert orjson.loads(stored.body) == body
    # the one client is reused: a second job goes through the cached sender
    job2 = await svc.submit(orjson.dumps(body), ANONYMOUS)
    assert [m.message_id for m in fake_bus.sent[QUEUE]] == [job.id, job2.id]
    assert len(fake_bus.connections) == 1
    # the received message carries the same properties through the SDK's receiver
    received = await receive_one(fake_bus, QUEUE)
    fn_msg = functions_message(received)
    assert fn_msg.message_id == job.id and fn_msg.delivery_count == 1
    assert fn_msg.application_properties["tenant"] == "default"


async def test_the_trigger_replies_to_the_reply_queue(
    sb_ctx: Services, fake_bus: FakeServiceBus, fake_openai: FakeOpenAI
) -> None:
    svc: JobService = sb_ctx.jobs
    body = {"model": "small", "messages": [{"role": "user", "content": "answer me back"}], "reply_to": "replies"}
    job = await svc.submit(orjson.dumps(body), ANONYMOUS)
    received = await receive_one(fake_bus, QUEUE)
    await user_function("route_job_message")(msg=functions_message(received))
    [reply] = fake_bus.sent["replies"]
    assert reply.correlation_id == job.id and reply.message_id == job.id
    assert reply.application_properties["status"] == "succeeded"
    data = orjson.loads(reply.body)
    assert data["id"] == job.id and data["result"]["object"] == "chat.completion"
    assert (await svc.get(job.id, ANONYMOUS)).status == "succeeded"


async def test_the_local_host_receives_from_the_real_queue(
    sb_ctx: Services, fake_bus: FakeServiceBus, fake_openai: FakeOpenAI
) -> None:
    import function_app
    from devtools.localhost import build_app

    fake_openai.push("small-upstream", "500")  # the first delivery fails: abandoned, redelivered
    app = build_app(function_app.app, timers=False, service_bus_connection=fake_bus.connection_string)
    server = ServerThread(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            r = await http.post(
                "/api/v1/jobs", json={"model": "small", "messages": [{"role": "user", "content": "via the queue"}]}
            )
            assert r.status_code == 202
            job_id = r.json()["id"]
            deadline = time.monotonic() + 30
            job: dict[str, Any] = {}
            while time.monotonic() < deadline:
                job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
                if job["status"] in {"succeeded", "failed", "dead_lettered"}:
                    break
                await asyncio.sleep(0.1)
    finally:
        server.stop()
    assert job["status"] == "succeeded" and job["attempts"] == 2
    [done] = [m for m in fake_bus.completed if m.message_id == job_id]
    assert done.delivery_count == 1  # one abandon before the completion
    assert fake_bus.depth(QUEUE) == 0 and fake_bus.dead_letters == {}
