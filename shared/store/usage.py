"""Usage and cost over a time range, grouped by model, day, tenant or purpose.

Rows have a purpose: `answer` (the caller's own requests) or `shadow`/`judge` (calls the router
made after an answer to label traffic, shared/shadow/). A query counts the purposes it is given.

Whole UTC days inside the range are read from the `usage_daily` rollup; only the partial days
at the edges read the request log (through its (tenant, created_at) index). The range is
half-open: from <= created_at < to.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from psycopg import sql

from .db import Database, unavailable_as
from .request_log import PostgresRequestLog

GroupBy = Literal["model", "day", "tenant", "purpose"]
GROUP_BY: tuple[GroupBy, ...] = ("model", "day", "tenant", "purpose")
PURPOSES = ("answer", "shadow", "judge")


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


def whole_days(start: datetime, end: datetime) -> tuple[date, date] | None:
    """The whole UTC days [first, last) inside [start, end), or None when there are none."""
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    first = s.date() if s == _day_start(s.date()) else s.date() + timedelta(days=1)
    last = e.date()
    return (first, last) if first < last else None


# Partial days at the edges come from the log, whole days from the rollup; an empty range
# selects nothing. {key} is the group_by column, composed with psycopg.sql.
USAGE_QUERY = """
SELECT {key} AS key, sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) FROM (
  SELECT coalesce(tenant, '') AS tenant, (created_at AT TIME ZONE 'UTC')::date AS day,
         coalesce(chosen_model, 'none') AS model, purpose, 1::bigint AS requests,
         prompt_tokens::bigint AS prompt_tokens, completion_tokens::bigint AS completion_tokens, cost_usd
    FROM request_log
   WHERE created_at >= %(a0)s AND created_at < %(b0)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
     AND purpose = ANY(%(purposes)s::text[])
  UNION ALL
  SELECT tenant, day, model, purpose, requests, prompt_tokens, completion_tokens, cost_usd
    FROM usage_daily
   WHERE day >= %(d0)s AND day < %(d1)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
     AND purpose = ANY(%(purposes)s::text[])
  UNION ALL
  SELECT coalesce(tenant, ''), (created_at AT TIME ZONE 'UTC')::date, coalesce(chosen_model, 'none'), purpose,
         1::bigint, prompt_tokens::bigint, completion_tokens::bigint, cost_usd
    FROM request_log
   WHERE created_at >= %(a1)s AND created_at < %(b1)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s::text)
     AND purpose = ANY(%(purposes)s::text[])
) AS t GROUP BY {key} ORDER BY {key}
"""


class UsageStore:
    def __init__(self, db: Database, writer: PostgresRequestLog | None = None) -> None:
        self.db = db
        self.writer = writer

    async def query(
        self,
        tenant: str | None,
        start: datetime,
        end: datetime,
        group_by: GroupBy,
        purposes: tuple[str, ...] = ("answer",),
    ) -> list[dict[str, Any]]:
        if group_by not in GROUP_BY:
            raise ValueError(f"group_by must be one of {GROUP_BY}")
        if self.writer is not None and self.writer.last_error is None:
            # read-your-writes: rows still in the writer's buffer belong in the answer (skipped
            # while the writer is failing: the query would fail the same way)
            await self.writer.flush(timeout_s=2.0)
        async with unavailable_as("usage"):
            rows = await self._rows(tenant, start, end, group_by, purposes)
        out: list[dict[str, Any]] = []
        for key, requests, prompt, completion, cost in rows:
            pt, ct = int(prompt or 0), int(completion or 0)
            out.append(
                {
                    group_by: key.isoformat() if isinstance(key, date) else key,
                    "requests": int(requests or 0),
                    "prompt_tokens": pt,
                    "completion_tokens": ct,
                    "total_tokens": pt + ct,
                    "cost_usd": round(float(cost or 0), 10),
                }
            )
        return out

    async def _rows(
        self, tenant: str | None, start: datetime, end: datetime, group_by: GroupBy, purposes: tuple[str, ...]
    ) -> list[Any]:
        await self.db.ensure_schema()
        params: dict[str, Any] = {"tenant": tenant, "purposes": list(purposes)}
        days = whole_days(start, end)
        if days is None:
            params.update(a0=start, b0=end, a1=end, b1=end, d0=date.min, d1=date.min)
        else:
            first, last = days
            params.update(a0=start, b0=_day_start(first), a1=_day_start(last), b1=end, d0=first, d1=last)
        query = sql.SQL(USAGE_QUERY).format(key=sql.Identifier(group_by))
        async with self.db.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        return rows
