"""Async routing through a queue: submit a job, run it from the Service Bus trigger, read it back.

The message body has the shape of the POST body (a chat-completions body plus optional
`reply_to` and `metadata`), so an outside producer sends exactly what it would POST. Service Bus
delivers at least once; the job row makes processing idempotent:

- a job already in a final state is acknowledged without running again;
- a permanent failure (bad body, unknown model, bad request) marks the job `failed` and returns,
  so the message is completed and not retried;
- a transient failure (upstream 429/5xx, timeout, a dependency down) records the attempt and
  raises, so Service Bus redelivers; on the last delivery the job is marked `dead_lettered`
  first, because the broker moves the message to the dead-letter queue next.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
from opentelemetry import propagate, trace

from ..auth.base import ANONYMOUS, Principal, Role
from ..chat.pipeline import ChatService
from ..config import Settings
from ..errors import (
    DependencyUnavailable,
    InvalidRequest,
    NoEligibleModel,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RouterError,
    UpstreamError,
    shorten,
)
from ..queue.base import JobQueue, OutgoingMessage
from ..queue.local import Delivery
from ..schemas import ChatCompletionRequest, check_limits, parse_chat_request
from ..storable_text import check_storable, storable
from ..store.base import StoreRejected
from ..store.job_store import Job, JobStore
from .message import JobMessage, str_props

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SCHEMA_VERSION = "1"
# Service Bus entity names: letters, digits, '.', '-', '_', '/' (up to 260 characters).
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$")
# Ids of messages from outside producers that are not UUIDs map to a stable UUID in this namespace.
_MESSAGE_ID_NAMESPACE = uuid.UUID("0d5c5e4e-8a59-4c1b-9d0e-6f1c2b7a9e31")
_KEPT_BODY_CHARS = 64_000


class PermanentJobError(Exception):
    """The message can never succeed; `error` is what the job records."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "permanent failure"))
        self.error = error


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, RouterError):
        return {**exc.body()["error"], "status": exc.status}
    return {"message": f"{type(exc).__name__}: {exc}"[:1000], "type": "server_error", "param": None, "code": "error"}


def is_transient(exc: BaseException) -> bool:
    """Would a later delivery of the same message possibly succeed?"""
    if isinstance(exc, UpstreamError):
        return exc.transient
    if isinstance(exc, QuotaExceeded | DependencyUnavailable):
        return True
    if isinstance(exc, StoreRejected):
        return False
    if isinstance(exc, NoEligibleModel):
        # an open circuit empties the candidate list for a while; other constraints never change
        return "circuit open" in exc.message
    if isinstance(exc, RouterError):
        return exc.status >= 500
    # timeouts, connection errors, a database down, and anything unforeseen: let the broker
    # retry and dead-letter rather than lose the job
    return True


def job_uuid(message_id: str) -> str:
    try:
        return str(uuid.UUID(message_id))
    except ValueError:
        return str(uuid.uuid5(_MESSAGE_ID_NAMESPACE, message_id))


def parse_job_body(body: bytes, settings: Settings) -> tuple[dict[str, Any], ChatCompletionRequest, str | None, Any]:
    """Validate a job body exactly like a chat-completions body, plus `reply_to` and `metadata`.

    Returns (the chat body without the job fields, the parsed request, reply_to, metadata).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        parse_chat_request(body)  # raises the same error chat completions would
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    reply_to = data.pop("reply_to", None)
    metadata = data.pop("metadata", None)
    if reply_to is not None and not (isinstance(reply_to, str) and _QUEUE_NAME.match(reply_to)):
        raise InvalidRequest(
            "Invalid 'reply_to': a Service Bus queue name (letters, digits, '.', '-', '_', '/').",
            param="reply_to",
            code="invalid_value",
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("Invalid 'metadata': must be a JSON object.", param="metadata", code="invalid_type")
    check_storable(metadata, "metadata")
    req = parse_chat_request(orjson.dumps(data))
    if req.stream:
        raise InvalidRequest(
            "Jobs do not stream: the result is stored (and sent to reply_to). Remove 'stream' or use "
            "POST /api/v1/chat/completions.",
            param="stream",
            code="stream_not_supported",
        )
    check_limits(req, settings.max_messages, settings.max_total_chars)
    return data, req, reply_to, metadata


def _kept_body(body: bytes) -> dict[str, Any]:
    # storable: a body that failed validation for its NUL must still be recorded on its job
    text = storable(body.decode("utf-8", errors="replace"))
    return {"raw_body": text[:_KEPT_BODY_CHARS], "raw_bytes": len(body), "truncated": len(text) > _KEPT_BODY_CHARS}


class JobService:
    def __init__(self, settings: Settings, store: JobStore, queue: JobQueue) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue

    # -- HTTP side --------------------------------------------------------------------------------
    async def submit(self, body: bytes, principal: Principal) -> Job:
        s = self.settings
        if len(body) > s.max_job_message_bytes:
            raise PayloadTooLarge(
                f"A job body is at most {s.max_job_message_bytes} bytes (the queue message limit).",
                code="payload_too_large",
            )
        chat_body, _req, reply_to, metadata = parse_job_body(body, s)
        job = Job(
            id=str(uuid.uuid4()), tenant=principal.tenant, request=chat_body, reply_to=reply_to, metadata=metadata
        )
        try:
            job = await self.store.create(job)
        except RouterError:
            raise
        except StoreRejected as exc:
            raise InvalidRequest(str(exc), code="unstorable_value") from None
        except Exception as exc:
            # the class only: a driver's text can quote the job's content
            log.warning("job store unavailable (%s)", type(exc).__name__)
            raise DependencyUnavailable("The job store is unavailable; try again later.") from None
        props: dict[str, Any] = {"tenant": principal.tenant, "schema_version": SCHEMA_VERSION}
        try:
            with tracer.start_as_current_span(
                "servicebus send",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "servicebus",
                    "messaging.destination.name": self.settings.service_bus_queue,
                    "messaging.message.id": job.id,
                },
            ):
                # the producer span's context travels with the message: one job is one trace
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                props.update(carrier)
                if "traceparent" in carrier:
                    props["Diagnostic-Id"] = carrier["traceparent"]
                message = OutgoingMessage(
                    body=body, message_id=job.id, correlation_id=job.id, application_properties=props, reply_to=reply_to
                )
                await self.queue.send(self.settings.service_bus_queue, message)
        except Exception as exc:
            log.exception("could not enqueue job %s", job.id)
            failed = {"message": "The job could not be queued.", "type": "server_error", "code": "enqueue_failed"}
            try:
                await self.store.finish_failed(job.id, failed)
            except Exception:
                log.exception("could not mark job %s failed", job.id)
            raise DependencyUnavailable("The job queue is unavailable; try again later.") from exc
        return job

    async def get(self, job_id: str, principal: Principal) -> Job:
        try:
            key = str(uuid.UUID(job_id))
        except ValueError:
            raise NotFound(f"No job {shorten(job_id)}.", param="id") from None
        try:
            job = await self.store.get(key)
        except Exception as exc:
            raise DependencyUnavailable("The job store is unavailable; try again later.") from exc
        # another tenant's job answers exactly like an unknown one, so ids cannot be probed
        if job is None or job.tenant != principal.tenant:
            raise NotFound(f"No job {shorten(job_id)}.", param="id")
        return job

    # -- the trigger -----------------------------------------------------------------------------
    async def handle_message(self, msg: JobMessage, chat: ChatService) -> None:
        """The Service Bus trigger body. Returns when the message may be completed; raises when it
        must be redelivered."""
        props = msg.properties
        with tracer.start_as_current_span(
            "servicebus process", context=propagate.extract(props), kind=trace.SpanKind.CONSUMER
        ) as span:
            job_id = job_uuid(str(msg.message_id))
            span.set_attributes(
                {
                    "messaging.system": "servicebus",
                    "messaging.destination.name": self.settings.service_bus_queue,
                    "messaging.message.id": str(msg.message_id),
                    "llm_router.job_id": job_id,
                }
            )
            await self._handle(msg, props, job_id, chat)

    async def _handle(self, msg: JobMessage, props: dict[str, str], job_id: str, chat: ChatService) -> None:
        s = self.settings
        body = msg.body
        delivery = int(msg.delivery_count or 1)
        job = await self.store.get(job_id)
        if job is not None and job.final:
            log.info("job %s is already %s: delivery %d acknowledged", job_id, job.status, delivery)
            await self._reply(job)  # the reply may be what failed last time; see docs/jobs.md
            return
        tenant = job.tenant if job is not None else (props.get("tenant") or ANONYMOUS.tenant)
        try:
            chat_body, req, reply_to, metadata = self._validate(body)
        except PermanentJobError as exc:
            if job is None:
                job = await self.store.create(
                    Job(id=job_id, tenant=tenant, request=_kept_body(body), reply_to=msg.reply_to)
                )
            await self._fail(job_id, exc.error, "failed")
            return
        if job is None:
            job = await self.store.create(
                Job(
                    id=job_id,
                    tenant=tenant,
                    request=chat_body,
                    reply_to=reply_to or msg.reply_to,
                    metadata=metadata,
                )
            )
            log.info("job %s created from an outside message (tenant %s)", job_id, tenant)
        claimed = await self.store.claim(job_id)
        if claimed is None:
            log.info("job %s was finished by another delivery", job_id)
            return
        principal = Principal(
            subject=f"job:{job_id}", tenant=claimed.tenant, roles=frozenset({Role.INVOKE.value}), issuer="servicebus"
        )
        # one request-log row per attempt; the job row keeps the successful attempt's id
        request_id = f"{job_id}.{claimed.attempts}"
        try:
            outcome = await chat.chat(req, principal, request_id=request_id, source="job")
        except Exception as exc:
            if not is_transient(exc):
                await self._fail(job_id, error_body(exc), "failed")
                return
            await self._transient(job_id, exc, delivery, s.service_bus_max_delivery_count)
            raise
        assert outcome.completion is not None  # jobs never stream
        done = await self.store.succeed(job_id, outcome.completion, request_id)
        if done is not None:
            await self._reply(done)

    def _validate(self, body: bytes) -> tuple[dict[str, Any], ChatCompletionRequest, str | None, Any]:
        limit = self.settings.max_job_message_bytes
        if len(body) > limit:
            raise PermanentJobError(
                {
                    "message": f"The message body is {len(body)} bytes; at most {limit} bytes are accepted.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "message_too_large",
                    "status": 413,
                }
            )
        try:
            return parse_job_body(body, self.settings)
        except InvalidRequest as exc:
            raise PermanentJobError(error_body(exc)) from exc

    async def _fail(self, job_id: str, error: dict[str, Any], status: str) -> None:
        log.warning("job %s %s: %s", job_id, status, error.get("message"))
        job = await self.store.finish_failed(job_id, error, status)
        if job is not None:
            await self._reply(job)

    async def _transient(self, job_id: str, exc: Exception, delivery: int, max_delivery: int) -> None:
        error = {**error_body(exc), "transient": True, "delivery_count": delivery}
        try:
            if delivery >= max_delivery:
                error["message"] = f"Gave up after {delivery} deliveries; last error: {error['message']}"
                await self._fail(job_id, error, "dead_lettered")
            else:
                log.warning("job %s attempt failed (delivery %d): %s", job_id, delivery, error["message"])
                await self.store.release(job_id, error)
        except Exception:
            # the store is down too: the broker still redelivers, the row catches up later
            log.exception("could not record the failed attempt of job %s", job_id)

    async def _reply(self, job: Job) -> None:
        if not job.reply_to:
            return
        body = {
            "id": job.id,
            "object": "router.job",
            "status": job.status,
            "result": job.result,
            "error": job.error,
            "metadata": job.metadata,
        }
        await self.queue.send(
            job.reply_to,
            OutgoingMessage(
                body=orjson.dumps(body),
                # the reply's id is the job's, so the reply queue's duplicate detection drops a resend
                message_id=job.id,
                correlation_id=job.id,
                application_properties={"tenant": job.tenant, "schema_version": SCHEMA_VERSION, "status": job.status},
            ),
        )

    # -- the local host's dead-letter queue --------------------------------------------------------
    async def on_local_dead_letter(self, d: Delivery) -> None:
        """LocalBus hook: a message the bus dead-lettered is recorded on its job, never dropped."""
        if d.queue != self.settings.service_bus_queue:
            return
        error = {
            "message": f"Dead-lettered after {d.delivery_count} deliveries: {d.dead_letter_description}",
            "type": "server_error",
            "param": None,
            "code": "dead_lettered",
            "reason": d.dead_letter_reason,
        }
        job_id = job_uuid(d.message_id)
        job = await self.store.get(job_id)
        if job is None:
            tenant = str_props(d.application_properties).get("tenant") or ANONYMOUS.tenant
            await self.store.create(Job(id=job_id, tenant=tenant, request=_kept_body(d.body)))
        await self._fail(job_id, error, "dead_lettered")
