"""The request log on PostgreSQL, written off the hot path by a batched background writer.

`record()` only appends to a bounded in-memory buffer. A background task drains it in
batches, each batch ONE statement: a multi-row INSERT ... ON CONFLICT (id) DO NOTHING whose
RETURNING rows (only the ones really inserted) feed the per-(tenant, day, model) rollup. So a
batch sent twice (the commit reached the server but the answer did not reach us) is neither
duplicated nor counted twice. When Postgres is down the rows stay buffered and the writer
retries with backoff; when the buffer is full the oldest rows are dropped, counted in
LOG_ROWS_DROPPED and logged. A row PostgreSQL refuses (a value it cannot store) is isolated by
bisecting its batch and moved to `dead_letters` (store/dead_letters.py): the other rows are
written, and no row waits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

import orjson
from opentelemetry import trace

from ..metrics import LOG_BACKLOG, LOG_ROWS_DROPPED
from .base import RequestLogRow
from .db import Database, is_row_fault
from .dead_letters import DeadLetter, DeadLetterStore, count_dead_letter, write_isolating

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("llm-router")

NO_MODEL = "none"
DEAD_LETTER_KIND = "request_log"
# The whole batch travels as ONE json parameter that PostgreSQL unpacks (jsonb_to_recordset), so
# the statement is the same for any batch size and encoding it is one orjson call: one array per
# column cost ~0.9 ms of the router's CPU per request in psycopg's Python list dumpers at c=1
# (docs/performance.md). The RETURNING rows are the ones really inserted and feed the rollup.
INSERT_BATCH = (
    "WITH ins AS ("
    " INSERT INTO request_log (id, tenant, requested_model, policy, chosen_model, decision, cache,"
    " prompt_tokens, completion_tokens, cost_usd, latency_ms, upstream_ms, overhead_ms, status, error_code,"
    " stream, usage_source, fallbacks, source, prompt_text, created_at, purpose, parent_request_id)"
    " SELECT id, tenant, requested_model, policy, chosen_model, decision, cache,"
    " prompt_tokens, completion_tokens, cost_usd, latency_ms, upstream_ms, overhead_ms, status, error_code,"
    " stream, usage_source, fallbacks, source, prompt_text, created_at, purpose, parent_request_id"
    " FROM jsonb_to_recordset(%s::jsonb) AS r(id text, tenant text, requested_model text, policy text,"
    " chosen_model text, decision jsonb, cache text, prompt_tokens int, completion_tokens int, cost_usd numeric,"
    " latency_ms float8, upstream_ms float8, overhead_ms float8, status int, error_code text, stream bool,"
    " usage_source text, fallbacks jsonb, source text, prompt_text text, created_at timestamptz, purpose text,"
    " parent_request_id text)"
    " ON CONFLICT (id) DO NOTHING"
    " RETURNING tenant, created_at, chosen_model, prompt_tokens, completion_tokens, cost_usd, purpose)"
    " INSERT INTO usage_daily AS u"
    " (tenant, day, model, purpose, requests, prompt_tokens, completion_tokens, cost_usd)"
    " SELECT coalesce(tenant, ''), (created_at AT TIME ZONE 'UTC')::date, coalesce(chosen_model, 'none'), purpose,"
    " count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
    " FROM ins GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    " ON CONFLICT (tenant, day, model, purpose) DO UPDATE SET"
    " requests = u.requests + EXCLUDED.requests,"
    " prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,"
    " completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,"
    " cost_usd = u.cost_usd + EXCLUDED.cost_usd"
)
# orjson raises (a TypeError: a row fault, isolated by bisection) on what JSON cannot carry, such
# as a lone surrogate; a value of a type it does not know is written as its text
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _batch_json(rows: list[RequestLogRow]) -> str:
    """The batch as the one parameter of INSERT_BATCH."""
    return orjson.dumps([_record(r) for r in rows], default=str, option=_JSON_OPTIONS).decode()


def _record(row: RequestLogRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant": row.tenant,
        "requested_model": row.requested_model,
        "policy": row.policy,
        "chosen_model": row.chosen_model,
        "decision": row.decision,
        "cache": row.cache,
        "prompt_tokens": int(row.prompt_tokens),
        "completion_tokens": int(row.completion_tokens),
        "cost_usd": float(row.cost_usd),
        "latency_ms": float(row.latency_ms),
        "upstream_ms": float(row.upstream_ms),
        "overhead_ms": float(row.overhead_ms),
        "status": int(row.status),
        "error_code": row.error_code,
        "stream": bool(row.stream),
        "usage_source": row.usage_source,
        "fallbacks": row.fallbacks or [],
        "source": row.source,
        "prompt_text": row.prompt_text,
        "created_at": row.created_at,
        "purpose": row.purpose,
        "parent_request_id": row.parent_request_id,
    }


class PostgresRequestLog:
    """A RequestLogSink that batches rows into PostgreSQL and never blocks or raises on record()."""

    def __init__(
        self,
        db: Database,
        *,
        buffer_max: int = 100_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.25,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.db = db
        self.buffer_max = max(1, buffer_max)
        self.batch_size = max(1, batch_size)
        self.flush_interval_s = flush_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.close_timeout_s = close_timeout_s
        self.dead_letters = DeadLetterStore(db)
        self.dropped = 0
        self.written = 0
        self.dead_lettered = 0
        self.last_error: str | None = None
        self._buffer: OrderedDict[str, RequestLogRow] = OrderedDict()
        self._inflight: OrderedDict[str, RequestLogRow] = OrderedDict()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- the hot path ------------------------------------------------------------------------
    def record(self, row: RequestLogRow) -> None:
        try:
            if self._closed:
                self._drop(row, "the request log is closed")
                return
            if len(self._buffer) + len(self._inflight) >= self.buffer_max:
                if self._buffer:
                    _, oldest = self._buffer.popitem(last=False)
                    self._drop(oldest, "the buffer is full")
                else:  # everything buffered is being written right now: the new row has no room
                    self._drop(row, "the buffer is full")
                    return
            self._buffer[row.id] = row
            LOG_BACKLOG.set(self.pending_count)
            self._ensure_task()
            if len(self._buffer) >= self.batch_size:
                self._wake.set()
        except Exception:  # the request log must never fail a request
            log.exception("request log: could not buffer row %s", getattr(row, "id", "?"))

    def _drop(self, row: RequestLogRow, why: str) -> None:
        self.dropped += 1
        LOG_ROWS_DROPPED.inc()
        log.warning(
            "request log: dropped row %s (tenant %s, model %s) because %s; %d dropped so far",
            row.id,
            row.tenant,
            row.chosen_model,
            why,
            self.dropped,
        )

    def _ensure_task(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the next record() or start() starts the writer
        self._task = loop.create_task(self._run(), name="request-log-writer")

    def start(self) -> None:
        self._ensure_task()

    # -- what is not written yet ---------------------------------------------------------------
    def pending(self, request_id: str) -> RequestLogRow | None:
        return self._buffer.get(request_id) or self._inflight.get(request_id)

    @property
    def pending_count(self) -> int:
        return len(self._buffer) + len(self._inflight)

    # -- the writer ----------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.flush_interval_s
        while not self._stop.is_set():
            if delay == self.flush_interval_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
            else:  # backing off: only close() cuts the wait short
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
            self._wake.clear()
            if self._stop.is_set():
                break
            if await self._drain():
                delay = self.flush_interval_s
            else:
                base = self.retry_initial_s if delay == self.flush_interval_s else delay * 2
                delay = min(self.retry_max_s, base) * random.uniform(0.8, 1.2)

    async def _drain(self) -> bool:
        """Write everything buffered now. False when the database failed (rows kept)."""
        async with self._write_lock:
            while self._buffer:
                n = min(self.batch_size, len(self._buffer))
                for _ in range(n):
                    key, row = self._buffer.popitem(last=False)
                    self._inflight[key] = row
                try:
                    await write_isolating(list(self._inflight.values()), self._write, self._landed, self._refused)
                except BaseException as exc:
                    self._requeue_inflight()
                    if not isinstance(exc, Exception):  # cancelled: the rows are back in the buffer
                        raise
                    if self.last_error is None:
                        log.warning(
                            "request log: postgres write failed (%s); %d rows kept, retrying with backoff",
                            type(exc).__name__,
                            self.pending_count,
                        )
                    self.last_error = type(exc).__name__
                    return False
                LOG_BACKLOG.set(self.pending_count)
                if self.last_error is not None:
                    log.info("request log: postgres writes recovered; %d rows still buffered", len(self._buffer))
                    self.last_error = None
            return True

    def _landed(self, rows: list[RequestLogRow]) -> None:
        for row in rows:
            self._inflight.pop(row.id, None)
        self.written += len(rows)

    async def _refused(self, row: RequestLogRow, exc: BaseException) -> None:
        """The database refused this row alone: keep it in dead_letters (an outage there raises,
        and the row is retried with the rest)."""
        letter = DeadLetter(DEAD_LETTER_KIND, row.id, row.tenant, asdict(row))
        try:
            await self.dead_letters.add(letter, exc)
        except Exception as dl_exc:
            if not is_row_fault(dl_exc):
                raise
            self._inflight.pop(row.id, None)
            self._drop(row, "the database refused it, and its dead letter too")
            return
        self._inflight.pop(row.id, None)
        self.dead_lettered += 1
        count_dead_letter(DEAD_LETTER_KIND, row.id, exc)

    def _requeue_inflight(self) -> None:
        merged = OrderedDict(self._inflight)
        for key, row in self._buffer.items():
            merged.setdefault(key, row)
        self._inflight.clear()
        self._buffer = merged

    async def _write(self, rows: list[RequestLogRow]) -> None:
        with _tracer.start_as_current_span(
            "request_log flush",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "llm_router.rows": len(rows)},
        ):
            await self.db.ensure_schema()
            async with self.db.connection() as conn, conn.transaction():
                await conn.execute(INSERT_BATCH, (_batch_json(rows),))

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Write what is buffered now (read-your-writes for usage queries). True when all written."""
        try:
            if timeout_s is None:
                return await self._drain()
            return await asyncio.wait_for(self._drain(), timeout_s)
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Stop the writer and flush what can be written within close_timeout_s."""
        if self._closed:
            return
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        deadline = time.monotonic() + self.close_timeout_s
        while self.pending_count and time.monotonic() < deadline:
            remaining = max(0.1, deadline - time.monotonic())
            if not await self.flush(remaining):
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        self._closed = True
        leftovers = list(self._buffer.values())
        self._buffer.clear()
        for row in leftovers:
            self._drop(row, "postgres was unreachable at shutdown")
