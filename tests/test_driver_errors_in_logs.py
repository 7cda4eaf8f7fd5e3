"""Prompt text stays out of the logs with LOG_PROMPTS=false, even inside driver errors (issue 16,
finding 5): a job whose content held a NUL once logged a PostgreSQL traceback quoting the content.

The edge check rejects such a body now, so these tests go below it, to the stores and to the
Service Bus trigger (whose messages come from outside producers): a refused value is logged by
its class and row id only, and no exception the store raises carries the driver's text."""

from __future__ import annotations

import logging
import traceback
import uuid

import orjson
import pytest

from shared.config import Settings
from shared.jobs.message import JobMessage
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.store.base import StoreRejected
from shared.store.db import Database
from shared.store.feedback import FeedbackStore
from shared.store.job_store import Job, PostgresJobStore


def every_text(exc: BaseException) -> str:
    """The exception as any logger would print it: message, traceback and its whole chain."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture
def secret() -> str:
    return f"my confidential prompt {uuid.uuid4().hex}"


async def test_a_refused_job_row_raises_without_quoting_its_content(
    database: Database, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = PostgresJobStore(database)
    job = Job(id=str(uuid.uuid4()), tenant="acme", request={"messages": [{"role": "user", "content": secret + "\x00"}]})
    with pytest.raises(StoreRejected) as caught:
        await store.create(job)
    assert secret not in every_text(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert secret not in caplog.text
    assert "UntranslatableCharacter [22P05]" in caplog.text  # the class and SQLSTATE, for operators


async def test_a_refused_feedback_row_raises_without_quoting_its_comment(
    database: Database, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreRejected) as caught:
        await FeedbackStore(database).add("acme", "req-" + secret + "\x00", 1.0, comment=secret + "\x00")
    assert secret not in every_text(caught.value)
    assert secret not in caplog.text


async def test_a_job_message_with_a_nul_is_failed_and_logged_without_its_content(
    database: Database, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside producer's message: a raw NUL byte (not even JSON) and a NUL escape in content."""
    caplog.set_level(logging.DEBUG)
    settings = Settings(environment="test", auth_enabled=False, database_enabled=False, log_prompts=False)
    store = PostgresJobStore(database)
    service = JobService(settings, store, LocalBus())
    bodies = {
        "raw-nul": b'{"model": "small", "messages": [{"role": "user", "content": "' + secret.encode() + b'\x00"}]}',
        "escaped-nul": orjson.dumps({"model": "small", "messages": [{"role": "user", "content": secret + "\x00"}]}),
    }
    for name, body in bodies.items():
        message_id = str(uuid.uuid4())
        msg = JobMessage(body=body, message_id=message_id, delivery_count=1, reply_to=None, properties={})
        await service.handle_message(msg, chat=None)  # type: ignore[arg-type]  # never reached: the body is refused
        job = await store.get(message_id)
        assert job is not None and job.status == "failed", name
        assert job.error is not None and job.error["status"] == 400, (name, job.error)
        assert "\x00" not in orjson.dumps(job.request).decode(), name
    assert secret not in caplog.text
