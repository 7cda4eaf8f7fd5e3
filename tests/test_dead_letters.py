"""One row the database refuses never blocks another: the batched request-log writer on real
PostgreSQL bisects a failing batch, writes every good row (and its usage), and moves the refused
row to `dead_letters`; readiness and /metrics report it."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from shared.store.db import Database
from shared.store.dead_letters import DeadLetterStore, write_backlog_probe
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore
from tests.plugins.databases import PgControl
from tests.test_request_log import count_rows, make_row


def dead_letters_total(kind: str = "request_log") -> float:
    return REGISTRY.get_sample_value("llm_router_dead_letters_total", {"kind": kind}) or 0.0


async def dead_letter_rows(db: Database) -> list[tuple[str, str, str | None, dict[str, object], str, str]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, row_id, tenant, payload, error_class, error_message FROM dead_letters ORDER BY id"
        )
        return list(await cur.fetchall())


@pytest.mark.parametrize(
    "poison",
    [
        {"requested_model": "auto\x00"},  # NUL: PostgreSQL text refuses it
        {"requested_model": "auto\ud800"},  # a lone surrogate cannot be encoded as UTF-8
        {"prompt_tokens": 3_000_000_000},  # beyond the integer column (an upstream's absurd usage)
        {"decision": {"why": "x\x00y"}},  # NUL inside jsonb
    ],
    ids=["nul", "surrogate", "int-overflow", "jsonb-nul"],
)
async def test_a_refused_row_is_dead_lettered_and_every_other_row_lands(
    database: Database, poison: dict[str, object]
) -> None:
    writer = PostgresRequestLog(database, batch_size=50, flush_interval_s=3600.0, retry_initial_s=0.05)
    before = dead_letters_total()
    good_a = [make_row(tenant="tenant-a") for _ in range(5)]
    good_b = [make_row(tenant="tenant-b", model="small") for _ in range(5)]
    bad = make_row(tenant="tenant-a", **poison)
    for row in [*good_a[:3], *good_b[:3], bad, *good_a[3:], *good_b[3:]]:
        writer.record(row)
    try:
        assert await writer.flush(timeout_s=30)
        ids = [r.id for r in good_a + good_b]
        assert await count_rows(database, ids) == {i: 1 for i in ids}
        assert await count_rows(database, [bad.id]) == {}
        assert writer.pending_count == 0 and writer.dead_lettered == 1 and writer.dropped == 0
        assert dead_letters_total() == before + 1

        letters = await dead_letter_rows(database)
        assert len(letters) == 1
        kind, row_id, tenant, payload, error_class, message = letters[0]
        assert (kind, row_id, tenant) == ("request_log", bad.id, "tenant-a")
        assert payload["id"] == bad.id and payload["tenant"] == "tenant-a"
        assert error_class and message
        if "requested_model" in poison:
            assert payload["requested_model"] == "auto\ufffd"  # stored, made storable

        # usage is exact: the refused row counts nowhere, every good one exactly once
        usage = UsageStore(database, writer)
        now = datetime.now(UTC)
        rows = await usage.query(None, now - timedelta(hours=1), now + timedelta(hours=1), "tenant")
        by_tenant = {r["tenant"]: r for r in rows}
        assert by_tenant["tenant-a"]["requests"] == 5
        assert by_tenant["tenant-b"]["requests"] == 5
        assert by_tenant["tenant-a"]["prompt_tokens"] == 50

        # the writer keeps going: rows recorded after the refused one land as usual
        later = make_row(tenant="tenant-b")
        writer.record(later)
        assert await writer.flush(timeout_s=10)
        assert await count_rows(database, [later.id]) == {later.id: 1}
    finally:
        await writer.close()


async def test_many_refused_rows_in_one_batch_are_each_isolated(database: Database) -> None:
    writer = PostgresRequestLog(database, batch_size=200, flush_interval_s=3600.0)
    rows = [make_row(requested_model="bad\x00" if i % 17 == 0 else "auto") for i in range(200)]
    for row in rows:
        writer.record(row)
    try:
        assert await writer.flush(timeout_s=60)
        good = [r.id for r in rows if r.requested_model == "auto"]
        bad = [r.id for r in rows if r.requested_model != "auto"]
        assert await count_rows(database, good) == {i: 1 for i in good}
        letters = await dead_letter_rows(database)
        assert sorted(letter[1] for letter in letters) == sorted(bad)
        assert writer.written == len(good) and writer.dead_lettered == len(bad)
    finally:
        await writer.close()


async def test_an_outage_is_still_retried_not_dead_lettered(database: Database, pg_control: PgControl) -> None:
    pg_control.require_stoppable()
    writer = PostgresRequestLog(database, batch_size=10, flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
    rows = [make_row() for _ in range(5)]
    try:
        pg_control.stop()
        for row in rows:
            writer.record(row)
        assert not await writer.flush(timeout_s=10)
        assert writer.pending_count == 5 and writer.dead_lettered == 0
        pg_control.start()
        ok = False
        for _ in range(100):
            if await writer.flush(timeout_s=10):
                ok = True
                break
        assert ok
        ids = [r.id for r in rows]
        assert await count_rows(database, ids) == {i: 1 for i in ids}
        assert await dead_letter_rows(database) == []
    finally:
        await writer.close()


async def test_readiness_reports_dead_letters_and_backlog_past_their_thresholds(database: Database) -> None:
    writer = PostgresRequestLog(database, batch_size=10, flush_interval_s=3600.0)
    store = DeadLetterStore(database)
    try:
        probe = write_backlog_probe(writer, store, backlog_max=3, dead_letters_max=0)
        assert (await probe()).status == "up"
        for _ in range(4):
            writer.record(make_row())
        waiting = await probe()
        assert waiting.status == "degraded" and "4 rows waiting" in waiting.detail
        writer.record(make_row(requested_model="x\x00"))
        assert await writer.flush(timeout_s=30)
        dead = await probe()
        assert dead.status == "degraded" and "1 dead letters" in dead.detail
        tolerant = write_backlog_probe(writer, store, backlog_max=3, dead_letters_max=1)
        assert (await tolerant()).status == "up"
    finally:
        await writer.close()


async def test_a_refused_row_is_logged_by_class_and_id_never_by_value(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    secret_prompt = f"my private prompt {uuid.uuid4().hex}"
    writer = PostgresRequestLog(database, batch_size=10, flush_interval_s=3600.0)
    bad = make_row(prompt_text=secret_prompt + "\x00", requested_model="auto")
    caplog.set_level(logging.DEBUG)
    try:
        writer.record(bad)
        writer.record(make_row())
        assert await writer.flush(timeout_s=30)
    finally:
        await writer.close()
    assert writer.dead_lettered == 1
    assert bad.id in caplog.text
    assert secret_prompt not in caplog.text
