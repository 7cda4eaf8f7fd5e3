"""Rows the database refused, kept in `dead_letters` so one bad row never blocks the others.

`write_isolating` writes a batch; when PostgreSQL refuses a value (its data or integrity error
classes, or a value the driver cannot encode) it splits the batch in halves until the refused row
is alone, writes every other row, and hands that one row to the dead-letter table. An outage
(connection lost, pool exhausted) is not a row's fault: it propagates, and the caller retries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from psycopg.types.json import Jsonb

from ..metrics import DEAD_LETTERS
from ..probe import DependencyStatus, Probe
from ..storable_text import storable
from .db import Database, driver_error_summary, is_row_fault

log = logging.getLogger(__name__)

Row = TypeVar("Row")
# readiness counts the dead letters of the last day: an old one, already looked at, stops counting
RECENT_HOURS = 24
_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class DeadLetter:
    kind: str  # what the row was: request_log, ...
    row_id: str | None
    tenant: str | None
    payload: dict[str, Any]


def error_message(exc: BaseException) -> str:
    """The driver's primary message (never its detail or context) or the exception's text, bounded."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc) or type(exc).__name__
    return str(storable(text))[:_MESSAGE_CHARS]


class DeadLetterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, letter: DeadLetter, exc: BaseException) -> None:
        await self.db.ensure_schema()
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO dead_letters (kind, row_id, tenant, payload, error_class, error_message)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    letter.kind,
                    storable(letter.row_id),
                    storable(letter.tenant),
                    Jsonb(storable(letter.payload)),
                    driver_error_summary(exc),
                    error_message(exc),
                ),
            )

    async def recent_count(self, hours: int = RECENT_HOURS) -> int:
        await self.db.ensure_schema()
        async with self.db.connection(timeout_s=2.0) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM dead_letters WHERE created_at > now() - make_interval(hours => %s)", (hours,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0


async def write_isolating(
    rows: Sequence[Row],
    write: Callable[[list[Row]], Awaitable[None]],
    written: Callable[[list[Row]], None],
    refused: Callable[[Row, BaseException], Awaitable[None]],
) -> None:
    """Write `rows` in as few statements as the faults allow. `written` hears of every batch that
    landed, `refused` of every row the database refused on its own. An outage raises; what was
    reported before it stays reported, the rest is the caller's to retry."""
    pending: list[list[Row]] = [list(rows)]
    while pending:
        batch = pending.pop()
        try:
            await write(batch)
        except Exception as exc:
            if not is_row_fault(exc):
                raise
            if len(batch) == 1:
                await refused(batch[0], exc)
            else:  # bisect: the first half is written (or split) first, so order is kept
                mid = len(batch) // 2
                pending += [batch[mid:], batch[:mid]]
            continue
        written(batch)


def count_dead_letter(kind: str, row_id: str | None, exc: BaseException) -> None:
    DEAD_LETTERS.labels(kind).inc()
    # the class and SQLSTATE only: the driver's text can quote the row's values
    log.error("%s row %s refused by the database (%s): moved to dead_letters", kind, row_id, driver_error_summary(exc))


class WriteBacklog(Protocol):
    """What readiness asks of a batched writer: how many rows wait."""

    @property
    def pending_count(self) -> int: ...


def write_backlog_probe(
    writer: WriteBacklog, dead_letters: DeadLetterStore, *, backlog_max: int, dead_letters_max: int
) -> Probe:
    """Degraded when more than `backlog_max` rows wait to be written, or more than
    `dead_letters_max` rows were dead-lettered in the last RECENT_HOURS hours."""

    async def probe() -> DependencyStatus:
        backlog = writer.pending_count
        try:
            dead = await dead_letters.recent_count()
        except Exception as exc:  # the postgres probe reports the outage itself
            return DependencyStatus("degraded", None, f"request log: {backlog} rows waiting; {type(exc).__name__}")
        detail = f"request log: {backlog} rows waiting, {dead} dead letters in {RECENT_HOURS} h"
        bad = backlog > backlog_max or dead > dead_letters_max
        return DependencyStatus("degraded" if bad else "up", None, detail)

    return probe
