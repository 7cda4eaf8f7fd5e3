"""Async jobs (POST /api/v1/jobs and the Service Bus trigger), stored in `jobs`.

Every state change is one conditional statement, so it is atomic and safe to repeat: a job in a
final state (succeeded, failed, dead_lettered) is never moved again, whoever asks. `claim()`
accepts `running` as well as `queued` because a worker that died mid-job leaves the row
`running`, and the broker's redelivery must be able to take it over.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .db import Database, unavailable_as

JobStatus = Literal["queued", "running", "succeeded", "failed", "dead_lettered"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "dead_lettered"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    id: str
    tenant: str
    request: dict[str, Any]
    status: str = "queued"
    reply_to: str | None = None
    metadata: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    request_id: str | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def public(self) -> dict[str, Any]:
        """What GET /api/v1/jobs/{id} answers (the request body itself is not echoed)."""
        queued_ms = run_ms = None
        if self.started_at is not None:
            queued_ms = round((self.started_at - self.created_at).total_seconds() * 1000, 2)
            if self.finished_at is not None:
                run_ms = round((self.finished_at - self.started_at).total_seconds() * 1000, 2)
        return {
            "id": self.id,
            "object": "router.job",
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "metadata": self.metadata,
            "reply_to": self.reply_to,
            "request_id": self.request_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "timings": {"queued_ms": queued_ms, "run_ms": run_ms},
        }


class JobStore(Protocol):
    kind: str

    async def create(self, job: Job) -> Job:
        """Insert the job unless its id exists; returns the stored row either way."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def claim(self, job_id: str) -> Job | None:
        """queued/running -> running, attempts + 1. None when the job is unknown or final."""
        ...

    async def succeed(self, job_id: str, result: dict[str, Any], request_id: str) -> Job | None:
        """-> succeeded with the result. None when the job was already final."""
        ...

    async def finish_failed(self, job_id: str, error: dict[str, Any], status: str = "failed") -> Job | None:
        """-> failed or dead_lettered with the error. None when the job was already final."""
        ...

    async def release(self, job_id: str, error: dict[str, Any]) -> Job | None:
        """A transient failure: running -> queued, the error kept, waiting for redelivery."""
        ...

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs in a dict (no database). Each method runs without awaiting, so it is atomic on the loop."""

    kind = "memory"

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    async def create(self, job: Job) -> Job:
        stored = self.jobs.setdefault(job.id, copy.deepcopy(job))
        return copy.deepcopy(stored)

    async def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return copy.deepcopy(job) if job is not None else None

    async def claim(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.final:
            return None
        now = _now()
        job.status, job.attempts, job.updated_at = "running", job.attempts + 1, now
        job.started_at = job.started_at or now
        return copy.deepcopy(job)

    def _finish(self, job_id: str, status: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.final:
            return None
        now = _now()
        job.status, job.updated_at, job.finished_at = status, now, now
        return job

    async def succeed(self, job_id: str, result: dict[str, Any], request_id: str) -> Job | None:
        job = self._finish(job_id, "succeeded")
        if job is None:
            return None
        job.result, job.error, job.request_id = copy.deepcopy(result), None, request_id
        return copy.deepcopy(job)

    async def finish_failed(self, job_id: str, error: dict[str, Any], status: str = "failed") -> Job | None:
        job = self._finish(job_id, status)
        if job is None:
            return None
        job.error = copy.deepcopy(error)
        return copy.deepcopy(job)

    async def release(self, job_id: str, error: dict[str, Any]) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.status != "running":
            return None
        job.status, job.error, job.updated_at = "queued", copy.deepcopy(error), _now()
        return copy.deepcopy(job)

    async def close(self) -> None:
        return None


_FIELDS = frozenset(Job.__dataclass_fields__)


def _job(row: dict[str, Any]) -> Job:
    # columns added by later migrations are not the Job's business
    known = {k: v for k, v in row.items() if k in _FIELDS}
    known["id"] = str(known["id"])
    return Job(**known)


class PostgresJobStore:
    kind = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Job | None:
        async with unavailable_as("job"):
            await self.db.ensure_schema()
            async with self.db.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(sql, params)
                row = await cur.fetchone()
        return _job(row) if row is not None else None

    async def create(self, job: Job) -> Job:
        created = await self._one(
            "INSERT INTO jobs (id, tenant, status, request, reply_to, metadata, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING *",
            (
                job.id,
                job.tenant,
                job.status,
                Jsonb(job.request),
                job.reply_to,
                Jsonb(job.metadata) if job.metadata is not None else None,
                job.created_at,
                job.updated_at,
            ),
        )
        if created is not None:
            return created
        existing = await self.get(job.id)
        if existing is None:  # inserted and deleted in between: nothing sane to return
            raise RuntimeError(f"job {job.id} vanished while being created")
        return existing

    async def get(self, job_id: str) -> Job | None:
        return await self._one("SELECT * FROM jobs WHERE id = %s", (job_id,))

    async def claim(self, job_id: str) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = now(),"
            " started_at = coalesce(started_at, now())"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *",
            (job_id,),
        )

    async def succeed(self, job_id: str, result: dict[str, Any], request_id: str) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'succeeded', result = %s, error = NULL, request_id = %s,"
            " updated_at = now(), finished_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *",
            (Jsonb(result), request_id, job_id),
        )

    async def finish_failed(self, job_id: str, error: dict[str, Any], status: str = "failed") -> Job | None:
        if status not in {"failed", "dead_lettered"}:
            raise ValueError(f"not a failure status: {status}")
        return await self._one(
            "UPDATE jobs SET status = %s, error = %s, updated_at = now(), finished_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *",
            (status, Jsonb(error), job_id),
        )

    async def release(self, job_id: str, error: dict[str, Any]) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'queued', error = %s, updated_at = now()"
            " WHERE id = %s AND status = 'running' RETURNING *",
            (Jsonb(error), job_id),
        )

    async def close(self) -> None:
        return None  # the Database belongs to the store wiring, which closes it
