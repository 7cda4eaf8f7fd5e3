"""Outcome labels for past requests (POST /api/v1/feedback), stored in `feedback`.

A request is known when its request_log row exists, or is still waiting in the log writer's
buffer. Another tenant's request is reported exactly like an unknown one (404), so request
ids cannot be probed across tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import NotFound, shorten
from .db import Database, unavailable_as
from .request_log import PostgresRequestLog


class FeedbackStore:
    def __init__(self, db: Database, writer: PostgresRequestLog | None = None) -> None:
        self.db = db
        self.writer = writer

    async def _request_model(self, tenant: str, request_id: str) -> tuple[bool, str | None]:
        if self.writer is not None:
            row = self.writer.pending(request_id)
            if row is not None:
                return (row.tenant or "") == tenant, row.chosen_model
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT tenant, chosen_model FROM request_log WHERE id = %s", (request_id,))
            found = await cur.fetchone()
        if found is None:
            return False, None
        return (found[0] or "") == tenant, found[1]

    async def add(
        self, tenant: str, request_id: str, score: float, model: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        async with unavailable_as("feedback"):
            return await self._add(tenant, request_id, score, model, comment)

    async def _add(
        self, tenant: str, request_id: str, score: float, model: str | None, comment: str | None
    ) -> dict[str, Any]:
        await self.db.ensure_schema()
        known, logged_model = await self._request_model(tenant, request_id)
        if not known:
            raise NotFound(f"No request with id '{shorten(request_id)}'.", param="request_id", code="request_not_found")
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO feedback (request_id, tenant, score, model, comment) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING id, request_id, tenant, score, model, comment, created_at",
                (request_id, tenant, score, model or logged_model, comment),
            )
            row = await cur.fetchone()
        assert row is not None
        created: datetime = row[6]
        return {
            "id": row[0],
            "object": "feedback",
            "request_id": row[1],
            "tenant": row[2],
            "score": row[3],
            "model": row[4],
            "comment": row[5],
            "created_at": created.isoformat(),
        }


# -- the feedback timer's view: unprocessed rows, joined to the request they label ---------------


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    request_id: str
    tenant: str | None
    score: float
    model: str | None  # the feedback's model, else the model that answered
    prompt_text: str | None = None  # from request_log (LOG_PROMPTS=true only)


class FeedbackSource(Protocol):
    async def pending(self, limit: int) -> list[FeedbackRow]: ...

    async def mark_processed(self, ids: Sequence[int]) -> None: ...


class MemoryFeedbackSource:
    def __init__(self) -> None:
        self.rows: list[FeedbackRow] = []
        self.processed: set[int] = set()

    def add(self, row: FeedbackRow) -> None:
        self.rows.append(row)

    async def pending(self, limit: int) -> list[FeedbackRow]:
        return [r for r in self.rows if r.id not in self.processed][:limit]

    async def mark_processed(self, ids: Sequence[int]) -> None:
        self.processed.update(ids)


class PostgresFeedbackSource:
    """Reads the `feedback` table (written by POST /api/v1/feedback) joined to request_log."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self, limit: int) -> list[FeedbackRow]:
        await self.db.ensure_schema()
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT f.id, f.request_id, f.tenant, f.score, COALESCE(f.model, r.chosen_model), r.prompt_text"
                " FROM feedback f LEFT JOIN request_log r ON r.id = f.request_id"
                " WHERE f.processed_at IS NULL ORDER BY f.id LIMIT %s",
                (limit,),
            )
            rows = await cur.fetchall()
        return [FeedbackRow(int(r[0]), r[1], r[2], float(r[3]), r[4], r[5]) for r in rows]

    async def mark_processed(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.db.connection() as conn:
            await conn.execute("UPDATE feedback SET processed_at = now() WHERE id = ANY(%s)", (list(ids),))
