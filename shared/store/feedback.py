"""Outcome labels for past requests (POST /api/v1/feedback), stored in `feedback`.

A request is known when its request_log row exists, or is still waiting in the log writer's
buffer. Another tenant's request is reported exactly like an unknown one (404), so request
ids cannot be probed across tenants.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import NotFound
from .db import Database
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
        await self.db.ensure_schema()
        known, logged_model = await self._request_model(tenant, request_id)
        if not known:
            raise NotFound(f"No request with id '{request_id}'.", param="request_id", code="request_not_found")
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
