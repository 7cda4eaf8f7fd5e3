"""The batched request-log writer on real PostgreSQL: batching, idempotency, the buffer bound,
and the daily rollup that usage queries read."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from shared.store.base import RequestLogRow
from shared.store.db import Database
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore


def make_row(tenant: str = "acme", model: str = "big", **kw: object) -> RequestLogRow:
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "tenant": tenant,
        "requested_model": "auto",
        "policy": "balanced",
        "chosen_model": model,
        "decision": {"chosen": model},
        "cache": "miss",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost_usd": 0.000123,
    }
    fields.update(kw)
    return RequestLogRow(**fields)  # type: ignore[arg-type]


async def count_rows(db: Database, ids: list[str]) -> dict[str, int]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id, count(*) FROM request_log WHERE id = ANY(%s) GROUP BY id", (ids,))
        return {r[0]: r[1] for r in await cur.fetchall()}


def dropped_total() -> float:
    return REGISTRY.get_sample_value("llm_router_log_rows_dropped_total") or 0.0


async def test_rows_are_written_in_batches_of_batch_size(database: Database) -> None:
    writer = PostgresRequestLog(database, batch_size=3, flush_interval_s=60.0)
    rows = [make_row() for _ in range(7)]
    for r in rows:
        writer.record(r)
    assert await writer.flush()
    await writer.close()

    ids = [r.id for r in rows]
    assert await count_rows(database, ids) == {i: 1 for i in ids}
    async with database.connection() as conn:
        # every batch is one statement in one transaction: rows of a batch share their xmin
        cur = await conn.execute("SELECT count(DISTINCT xmin::text) FROM request_log WHERE id = ANY(%s)", (ids,))
        row = await cur.fetchone()
    assert row is not None and row[0] == 3  # 3 + 3 + 1


async def test_a_full_batch_is_written_without_waiting_for_the_interval(database: Database) -> None:
    writer = PostgresRequestLog(database, batch_size=4, flush_interval_s=3600.0)
    rows = [make_row() for _ in range(4)]
    try:
        for r in rows:
            writer.record(r)
        ids = [r.id for r in rows]
        deadline = time.monotonic() + 20
        while len(await count_rows(database, ids)) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await count_rows(database, ids) == {i: 1 for i in ids}
    finally:
        await writer.close()


async def test_a_row_sent_twice_is_stored_and_counted_once(database: Database) -> None:
    writer = PostgresRequestLog(database, flush_interval_s=60.0)
    a, b = make_row(tenant="idem"), make_row(tenant="idem")
    writer.record(a)
    assert await writer.flush()
    # the same batch again (as after a commit whose answer was lost), plus a new row
    writer.record(a)
    writer.record(b)
    assert await writer.flush()
    await writer.close()

    assert await count_rows(database, [a.id, b.id]) == {a.id: 1, b.id: 1}
    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
            " FROM usage_daily WHERE tenant = 'idem'"
        )
        totals = await cur.fetchone()
    assert totals is not None
    assert int(totals[0]) == 2
    assert int(totals[1]) == a.prompt_tokens + b.prompt_tokens
    assert int(totals[2]) == a.completion_tokens + b.completion_tokens
    assert float(totals[3]) == pytest.approx(a.cost_usd + b.cost_usd)


async def test_every_field_round_trips(database: Database) -> None:
    writer = PostgresRequestLog(database, flush_interval_s=60.0)
    row = make_row(
        stream=True,
        usage_source="estimated",
        fallbacks=[{"from": "big", "to": "small", "reason": "rate_limited"}],
        status=502,
        error_code="upstream_unavailable",
        source="job",
        prompt_text="hello",
        latency_ms=12.5,
        upstream_ms=10.0,
        overhead_ms=2.5,
    )
    writer.record(row)
    assert await writer.flush()
    await writer.close()
    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant, requested_model, policy, chosen_model, decision, cache, prompt_tokens, completion_tokens,"
            " cost_usd, latency_ms, upstream_ms, overhead_ms, status, error_code, stream, usage_source, fallbacks,"
            " source, prompt_text, created_at FROM request_log WHERE id = %s",
            (row.id,),
        )
        got = await cur.fetchone()
    assert got is not None
    assert got[:8] == (
        row.tenant, row.requested_model, row.policy, row.chosen_model, row.decision, row.cache,
        row.prompt_tokens, row.completion_tokens,
    )  # fmt: skip
    assert float(got[8]) == pytest.approx(row.cost_usd)
    assert got[9:] == (
        row.latency_ms, row.upstream_ms, row.overhead_ms, row.status, row.error_code, row.stream,
        row.usage_source, row.fallbacks, row.source, row.prompt_text, row.created_at,
    )  # fmt: skip


async def test_a_full_buffer_drops_the_oldest_rows_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # a real server that is not there: nothing listens on port 1
    db = Database("postgresql://postgres@127.0.0.1:1/postgres", acquire_timeout_s=0.5, connect_timeout_s=1)
    await db.open()
    writer = PostgresRequestLog(db, buffer_max=5, batch_size=100, flush_interval_s=60.0, close_timeout_s=0.5)
    rows = [make_row() for _ in range(8)]
    before = dropped_total()
    try:
        with caplog.at_level(logging.WARNING, logger="shared.store.request_log"):
            for r in rows:
                writer.record(r)  # never raises, never blocks
        assert writer.pending_count == 5
        assert dropped_total() - before == 3
        assert [writer.pending(r.id) for r in rows[:3]] == [None, None, None]
        assert all(writer.pending(r.id) is r for r in rows[3:])
        logged = "\n".join(rec.getMessage() for rec in caplog.records)
        assert all(r.id in logged for r in rows[:3])

        assert not await writer.flush()  # the database is down: the rows stay
        assert writer.pending_count == 5
    finally:
        with caplog.at_level(logging.WARNING, logger="shared.store.request_log"):
            await writer.close()
        await db.close()
    # what could not be written at shutdown is dropped loudly, not silently
    assert dropped_total() - before == 8
    assert writer.pending_count == 0
    assert all(r.id in caplog.text for r in rows)


async def test_buffered_rows_are_visible_and_close_writes_them(database: Database) -> None:
    writer = PostgresRequestLog(database, flush_interval_s=3600.0)
    rows = [make_row() for _ in range(5)]
    for r in rows:
        writer.record(r)
    assert all(writer.pending(r.id) is r for r in rows)  # visible before it is written
    await writer.close()
    ids = [r.id for r in rows]
    assert await count_rows(database, ids) == {i: 1 for i in ids}


async def test_usage_from_rollup_and_edges_matches_the_raw_rows(database: Database) -> None:
    day0 = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for hours in (1, 13, 25, 30, 49, 50, 60, 73, 80, 95):
        for model in ("big", "small"):
            rows.append(
                make_row(
                    tenant="roll",
                    model=model,
                    created_at=day0 + timedelta(hours=hours),
                    prompt_tokens=hours,
                    completion_tokens=2 * hours,
                    cost_usd=hours / 1000,
                )
            )
    rows.append(make_row(tenant="other", created_at=day0 + timedelta(hours=30)))
    writer = PostgresRequestLog(database, flush_interval_s=60.0)
    for r in rows:
        writer.record(r)
    assert await writer.flush()
    await writer.close()
    store = UsageStore(database)

    start, end = day0 + timedelta(hours=12), day0 + timedelta(hours=74)  # partial, 2 whole days, partial
    inside = [r for r in rows if r.tenant == "roll" and start <= r.created_at < end]
    got = await store.query("roll", start, end, "model")
    assert [g["model"] for g in got] == ["big", "small"]
    for g in got:
        mine = [r for r in inside if r.chosen_model == g["model"]]
        assert g["requests"] == len(mine)
        assert g["prompt_tokens"] == sum(r.prompt_tokens for r in mine)
        assert g["completion_tokens"] == sum(r.completion_tokens for r in mine)
        assert g["total_tokens"] == g["prompt_tokens"] + g["completion_tokens"]
        assert g["cost_usd"] == pytest.approx(sum(r.cost_usd for r in mine))

    by_day = await store.query("roll", start, end, "day")
    assert [d["day"] for d in by_day] == sorted({r.created_at.date().isoformat() for r in inside})
    assert sum(d["requests"] for d in by_day) == len(inside)

    by_tenant = await store.query(None, start, end, "tenant")
    assert {t["tenant"]: t["requests"] for t in by_tenant} == {"other": 1, "roll": len(inside)}
