"""Migrations on real PostgreSQL: concurrent runners apply each version once, atomically."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shared.store.db import MIGRATIONS_DIR, Database, apply_migrations, load_migrations


@pytest.fixture
async def fresh_db_url(pg_url: str) -> AsyncIterator[str]:
    """A brand-new empty database next to the session's, dropped afterwards."""
    name = f"llmr_mig_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(pg_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def _run_on_own_connection(url: str, directory: Path = MIGRATIONS_DIR) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await apply_migrations(conn, directory)


async def _tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return {r[0] for r in await cur.fetchall()}


async def test_concurrent_runs_apply_each_migration_once(fresh_db_url: str) -> None:
    expected = [m.version for m in load_migrations()]
    results = await asyncio.gather(*(_run_on_own_connection(fresh_db_url) for _ in range(4)))

    applied = [v for r in results for v in r]
    assert sorted(applied) == expected  # every version applied exactly once, by one runner
    assert sum(1 for r in results if r) == 1
    async with await psycopg.AsyncConnection.connect(fresh_db_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version")
        rows = await cur.fetchall()
    assert [r[0] for r in rows] == expected
    assert all(r[1] == 1 for r in rows)
    assert {"request_log", "usage_daily", "feedback", "jobs", "backup_checks"} <= await _tables(fresh_db_url)


async def test_second_run_is_a_no_op_through_the_pool(fresh_db_url: str) -> None:
    first, second = Database(fresh_db_url, max_size=2), Database(fresh_db_url, max_size=2)
    await first.open()
    await second.open()
    try:
        a, b = await asyncio.gather(first.migrate(), second.migrate())
        assert sorted(a + b) == [m.version for m in load_migrations()]
        assert await first.migrate() == []
        assert first.schema_ready and second.schema_ready
    finally:
        await first.close()
        await second.close()


async def test_a_failing_migration_leaves_nothing_behind(fresh_db_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE first_table (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE second_table (id int); SELECT * FROM no_such_table;")

    with pytest.raises(psycopg.errors.UndefinedTable):
        await _run_on_own_connection(fresh_db_url, tmp_path)

    tables = await _tables(fresh_db_url)
    assert "first_table" not in tables and "second_table" not in tables
    assert "schema_migrations" not in tables  # the whole run was one transaction


async def test_jobs_and_backup_checks_have_the_agreed_columns(fresh_db_url: str) -> None:
    await _run_on_own_connection(fresh_db_url)
    async with await psycopg.AsyncConnection.connect(fresh_db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_name IN ('jobs', 'backup_checks') ORDER BY table_name, ordinal_position"
        )
        cols: dict[str, list[str]] = {}
        for table, column in await cur.fetchall():
            cols.setdefault(table, []).append(column)
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "INSERT INTO jobs (id, tenant, status, request) VALUES (gen_random_uuid(), 't', 'bogus', '{}')"
            )
    assert cols["jobs"] == [
        "id", "tenant", "status", "request", "reply_to", "metadata", "result", "error", "attempts",
        "request_id", "created_at", "updated_at", "started_at", "finished_at",
    ]  # fmt: skip
    assert cols["backup_checks"] == [
        "id", "checked_at", "backend", "latest_backup_id", "latest_status", "latest_completed_at",
        "age_hours", "action", "started_backup_id", "ok", "detail",
    ]  # fmt: skip
