"""The Service Bus trigger of function_app.py called directly with azure.functions ServiceBusMessage
objects, as the Functions host calls it: success, duplicates, transient failures and redelivery,
poison messages, messages from outside producers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from azure.functions.servicebus import ServiceBusMessage

from shared.auth.base import ANONYMOUS, Principal
from shared.composition.services import Services
from shared.config import Settings
from shared.errors import InvalidRequest, NotFound, UpstreamError
from shared.jobs.service import JobService
from shared.queue.local import Delivery, LocalBus
from shared.store.base import MemoryRequestLog
from shared.store.db import Database
from shared.store.job_store import JobStore, MemoryJobStore, PostgresJobStore
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.requests import http_request, user_function

QUEUE = "llm-router-requests"


def trigger() -> Any:
    return user_function("route_job_message")


def sb_message(
    body: bytes | dict[str, Any],
    *,
    message_id: str,
    delivery_count: int = 1,
    properties: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
) -> ServiceBusMessage:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    props = properties or {}
    return ServiceBusMessage(
        body=raw,
        message_id=message_id,
        delivery_count=delivery_count,
        application_properties=props,
        user_properties=props,
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type="application/json",
    )


def from_delivery(d: Delivery, delivery_count: int = 1) -> ServiceBusMessage:
    return sb_message(
        d.body,
        message_id=d.message_id,
        delivery_count=delivery_count,
        properties=d.application_properties,
        correlation_id=d.correlation_id,
        reply_to=d.reply_to,
    )


def job_rows(ctx: Services, job_id: str) -> list[Any]:
    assert isinstance(ctx.request_log, MemoryRequestLog)
    return [r for r in ctx.request_log.rows if r.id.startswith(job_id)]


def chat_body(text: str, model: str = "small", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def bus() -> LocalBus:
    return LocalBus(max_delivery_count=3)  # never started: it only records what is sent


@pytest.fixture(params=["memory", "postgres"])
async def jobs_ctx(
    request: pytest.FixtureRequest, make_context: ContextFactory, settings: Settings, bus: LocalBus
) -> AsyncIterator[Services]:
    """Every trigger test runs on both job stores: in memory, and in PostgreSQL (pg_url)."""
    s = settings.model_copy(update={"max_attempts_per_model": 1, "service_bus_max_delivery_count": 3})
    db: Database | None = None
    store: JobStore = MemoryJobStore()
    if request.param == "postgres":
        db = Database(request.getfixturevalue("pg_url"), max_size=4)
        await db.open()
        await db.migrate()
        store = PostgresJobStore(db)
    try:
        yield await make_context(settings=s, jobs=JobService(s, store, bus))
    finally:
        if db is not None:
            await db.close()


def service_of(ctx: Services) -> JobService:
    svc = ctx.jobs
    assert isinstance(svc, JobService)
    return svc


async def test_a_submitted_job_succeeds_with_its_message_properties(
    jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI
) -> None:
    svc = service_of(jobs_ctx)
    job = await svc.submit(orjson.dumps(chat_body("job one please", metadata={"batch": 7})), ANONYMOUS)
    assert job.status == "queued"
    [sent] = bus.sent[QUEUE]
    assert sent.message_id == job.id and sent.correlation_id == job.id
    assert sent.application_properties["tenant"] == "default"
    assert sent.application_properties["schema_version"] == "1"

    await trigger()(msg=from_delivery(sent))

    done = await svc.get(job.id, ANONYMOUS)
    assert done.status == "succeeded" and done.attempts == 1
    assert done.result is not None and done.result["object"] == "chat.completion"
    assert done.result["choices"][0]["message"]["content"].startswith("Answer from small-upstream")
    assert done.metadata == {"batch": 7}
    assert done.started_at is not None and done.finished_at is not None
    [row] = job_rows(jobs_ctx, job.id)
    assert row.source == "job" and row.status == 200 and row.id == done.request_id
    assert len(fake_openai.calls("small-upstream")) == 1


async def test_a_duplicate_delivery_runs_once(jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI) -> None:
    svc = service_of(jobs_ctx)
    job = await svc.submit(orjson.dumps(chat_body("duplicate me")), ANONYMOUS)
    [sent] = bus.sent[QUEUE]
    await trigger()(msg=from_delivery(sent, 1))
    # the broker lost the completion and delivers again
    await trigger()(msg=from_delivery(sent, 2))
    await trigger()(msg=from_delivery(sent, 1))
    assert len(fake_openai.calls("small-upstream")) == 1
    assert len(job_rows(jobs_ctx, job.id)) == 1
    done = await svc.get(job.id, ANONYMOUS)
    assert done.status == "succeeded" and done.attempts == 1


async def test_a_transient_failure_raises_then_succeeds_on_redelivery(
    jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI
) -> None:
    svc = service_of(jobs_ctx)
    job = await svc.submit(orjson.dumps(chat_body("flaky upstream")), ANONYMOUS)
    [sent] = bus.sent[QUEUE]
    fake_openai.push("small-upstream", "500")
    with pytest.raises(UpstreamError):
        await trigger()(msg=from_delivery(sent, 1))
    waiting = await svc.get(job.id, ANONYMOUS)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert waiting.error is not None and waiting.error["transient"] is True

    await trigger()(msg=from_delivery(sent, 2))
    done = await svc.get(job.id, ANONYMOUS)
    assert done.status == "succeeded" and done.attempts == 2 and done.error is None
    rows = job_rows(jobs_ctx, job.id)
    assert sorted(r.status for r in rows) == [200, 503]
    assert [r.id for r in rows if r.status == 200] == [done.request_id]


async def test_the_last_transient_failure_dead_letters_the_job(
    jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI
) -> None:
    svc = service_of(jobs_ctx)
    job = await svc.submit(orjson.dumps(chat_body("always down")), ANONYMOUS)
    [sent] = bus.sent[QUEUE]
    fake_openai.push("small-upstream", "500", "500", "500")
    for delivery in (1, 2, 3):
        with pytest.raises(UpstreamError):
            await trigger()(msg=from_delivery(sent, delivery))
    dead = await svc.get(job.id, ANONYMOUS)
    assert dead.status == "dead_lettered" and dead.attempts == 3
    assert dead.error is not None and "3 deliveries" in dead.error["message"]
    # a delivery after that (a resubmitted dead letter) does not run it again
    await trigger()(msg=from_delivery(sent, 1))
    assert len(fake_openai.calls("small-upstream")) == 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (orjson.dumps({"model": "small", "prompt": "no messages"}), "missing_field"),
        (orjson.dumps([1, 2]), "invalid_body"),
        (orjson.dumps(chat_body("x", stream=True)), "stream_not_supported"),
        (orjson.dumps(chat_body("y" * 300_000)), "message_too_large"),
    ],
)
async def test_a_poison_message_is_recorded_as_failed_and_not_raised(
    jobs_ctx: Services, fake_openai: FakeOpenAI, body: bytes, code: str
) -> None:
    svc = service_of(jobs_ctx)
    message_id = str(uuid.uuid4())
    await trigger()(msg=sb_message(body, message_id=message_id, properties={"tenant": "default"}))
    job = await svc.get(message_id, ANONYMOUS)
    assert job.status == "failed"
    assert job.error is not None and job.error["code"] == code and job.error["message"]
    assert job.request["raw_bytes"] == len(body)  # the body is kept for inspection
    assert job.request["raw_body"].startswith(body.decode()[:20])
    assert fake_openai.calls() == []


async def test_a_permanent_routing_failure_completes_without_retry(
    jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI
) -> None:
    svc = service_of(jobs_ctx)
    job = await svc.submit(orjson.dumps(chat_body("who are you", model="no-such-model")), ANONYMOUS)
    [sent] = bus.sent[QUEUE]
    await trigger()(msg=from_delivery(sent))
    failed = await svc.get(job.id, ANONYMOUS)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "model_not_found" and failed.error["status"] == 404
    assert fake_openai.calls() == []


async def test_a_message_from_an_outside_producer_creates_its_job(
    jobs_ctx: Services, bus: LocalBus, fake_openai: FakeOpenAI
) -> None:
    svc = service_of(jobs_ctx)
    msg = sb_message(
        chat_body("from another system", reply_to="acme-replies", metadata={"order": 42}),
        message_id="order-42",
        properties={"tenant": "acme", "schema_version": "1"},
    )
    await trigger()(msg=msg)
    acme = Principal(subject="svc", tenant="acme")
    [reply] = bus.sent["acme-replies"]
    job = await svc.get(reply.correlation_id or "", acme)
    assert job.tenant == "acme" and job.status == "succeeded" and job.metadata == {"order": 42}
    body = orjson.loads(reply.body)
    assert body["id"] == job.id and body["status"] == "succeeded"
    assert body["result"]["object"] == "chat.completion" and body["metadata"] == {"order": 42}
    assert reply.message_id == job.id
    # the same outside message again maps to the same job and does not run again
    await trigger()(msg=msg)
    assert len(fake_openai.calls("small-upstream")) == 1
    # another tenant cannot see it: 404, not 403
    with pytest.raises(NotFound):
        await svc.get(job.id, ANONYMOUS)


async def test_http_submit_validates_like_chat_completions(jobs_ctx: Services, bus: LocalBus) -> None:
    submit, get = user_function("submit_job"), user_function("get_job")
    ok = await submit(http_request("POST", "/api/v1/jobs", chat_body("queue this", reply_to="my-replies")))
    assert ok.status_code == 202
    data = orjson.loads(ok.body)
    assert data["status"] == "queued" and ok.headers["location"] == data["status_url"] == f"/api/v1/jobs/{data['id']}"
    assert bus.sent[QUEUE][0].reply_to == "my-replies"

    status = await get(http_request("GET", data["status_url"], path_params={"id": data["id"]}))
    assert status.status_code == 200 and orjson.loads(status.body)["status"] == "queued"
    # without path_params (the Azure worker fills them; the path is the fallback)
    assert (await get(http_request("GET", data["status_url"]))).status_code == 200

    cases = [
        (b"{oops", 400, "invalid_json"),
        (b"", 400, "empty_body"),
        (orjson.dumps({"messages": []}), 400, "invalid_value"),
        (orjson.dumps(chat_body("x", stream=True)), 400, "stream_not_supported"),
        (orjson.dumps(chat_body("x", reply_to="bad queue name!")), 400, "invalid_value"),
        (orjson.dumps(chat_body("x", metadata=[1])), 400, "invalid_type"),
        (orjson.dumps(chat_body("z" * 300_000)), 413, "payload_too_large"),
    ]
    for raw, status_code, code in cases:
        resp = await submit(http_request("POST", "/api/v1/jobs", raw))
        assert resp.status_code == status_code, raw[:40]
        assert orjson.loads(resp.body)["error"]["code"] == code
    assert len(bus.sent[QUEUE]) == 1

    for job_id in ("not-a-uuid", str(uuid.uuid4())):
        missing = await get(http_request("GET", f"/api/v1/jobs/{job_id}", path_params={"id": job_id}))
        assert missing.status_code == 404 and orjson.loads(missing.body)["error"]["code"] == "not_found"


async def test_submit_refuses_a_stream_request_before_queueing(jobs_ctx: Services, bus: LocalBus) -> None:
    with pytest.raises(InvalidRequest) as err:
        await service_of(jobs_ctx).submit(orjson.dumps(chat_body("s", stream=True)), ANONYMOUS)
    assert err.value.code == "stream_not_supported"
    assert bus.sent == {}


async def test_state_transitions_are_atomic_and_final_states_stick(jobs_ctx: Services) -> None:
    from shared.store.job_store import Job

    store = service_of(jobs_ctx).store
    job_id = str(uuid.uuid4())
    created = await store.create(Job(id=job_id, tenant="t", request={"model": "small"}, metadata={"a": 1}))
    again = await store.create(Job(id=job_id, tenant="other", request={}))
    assert again.tenant == "t" and again.created_at == created.created_at  # the first row wins
    claims = await asyncio.gather(*(store.claim(job_id) for _ in range(5)))
    assert sorted(c.attempts for c in claims if c is not None) == [1, 2, 3, 4, 5]
    assert (await store.release(job_id, {"message": "later"})) is not None
    done = await store.succeed(job_id, {"object": "chat.completion"}, f"{job_id}.5")
    assert done is not None and done.status == "succeeded" and done.error is None
    assert await store.claim(job_id) is None
    assert await store.finish_failed(job_id, {"message": "too late"}, "dead_lettered") is None
    assert await store.succeed(job_id, {"other": True}, "x") is None
    final = await store.get(job_id)
    assert final is not None and final.status == "succeeded" and final.result == {"object": "chat.completion"}
    assert final.attempts == 5 and final.metadata == {"a": 1} and final.request_id == f"{job_id}.5"
    assert await store.claim(str(uuid.uuid4())) is None
