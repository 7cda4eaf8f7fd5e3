"""The PostgreSQL connection pool (psycopg 3), its health probe, and the migration runner.

Migrations are the numbered files in migrations/ (`0001_init.sql`, ...). They are applied in
order inside ONE transaction that first takes a transaction-scoped advisory lock, so replicas
that start together queue on the lock and the later ones find the versions already recorded
in `schema_migrations`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from psycopg import AsyncConnection, DataError, IntegrityError
from psycopg import Error as PsycopgError
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..probe import DependencyStatus
from .base import StoreRejected, StoreUnavailable

# jsonb parameters (decision summaries, fallbacks, job bodies) are dumped with orjson: the stdlib
# json encoder was a measurable share of the request-log writer's time under load
set_json_dumps(lambda obj: orjson.dumps(obj).decode())

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works as long as every replica uses the same one; this is "llmr-mig" in ASCII.
MIGRATION_LOCK_KEY = 0x6C6C6D722D6D6967
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        m = _MIGRATION_NAME.match(path.name)
        if m is None:
            continue
        found.append(Migration(int(m.group(1)), path.stem, path.read_text(encoding="utf-8")))
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {directory}: {versions}")
    return found


async def apply_migrations(conn: AsyncConnection[TupleRow], directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the pending migrations on `conn` (which must not be inside a transaction).

    Returns the versions this call applied (empty when another replica got there first).
    """
    migrations = load_migrations(directory)
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {int(r[0]) for r in await cur.fetchall()}
        for mig in migrations:
            if mig.version in done:
                continue
            # no parameters: psycopg sends the file as one simple query, several statements allowed
            await conn.execute(mig.sql.encode("utf-8"))
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name))
            applied_now.append(mig.version)
    if applied_now:
        log.info("applied migrations %s", applied_now)
    return applied_now


# Client-side adaptation failures (a value psycopg or orjson cannot encode) are row faults too.
_ROW_FAULTS = (DataError, IntegrityError, TypeError, ValueError, ArithmeticError)


def is_row_fault(exc: BaseException) -> bool:
    """True when the failure belongs to the values written (retrying them cannot help), False for
    an outage (connection lost, pool exhausted, server restarting)."""
    return isinstance(exc, _ROW_FAULTS)


def driver_error_summary(exc: BaseException) -> str:
    """The error's class and SQLSTATE, e.g. `UntranslatableCharacter [22P05]`: what operators need,
    without the message, detail or context, which may quote the row's values."""
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} [{sqlstate}]" if sqlstate else type(exc).__name__


@asynccontextmanager
async def unavailable_as(what: str) -> AsyncIterator[None]:
    """Driver and pool failures become StoreUnavailable (an outage) or StoreRejected (a value the
    database refuses), so no caller above store/ knows the driver. The driver's exception is not
    chained: its text can quote the values of the statement, which must not reach any log."""
    try:
        yield
    except (PsycopgError, PoolTimeout, OSError) as exc:
        summary = driver_error_summary(exc)
        if isinstance(exc, DataError | IntegrityError):
            log.warning("the %s database refused a value: %s", what, summary)
            raise StoreRejected(f"A value in the {what} request cannot be stored.") from None
        log.warning("the %s database failed: %s", what, summary)
        raise StoreUnavailable(f"The {what} database is unavailable; try again shortly.") from None


async def applied_versions(conn: AsyncConnection[TupleRow]) -> set[int]:
    """The migration versions a database has (none when it was never migrated)."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not (row and row[0]):
        return set()
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {int(r[0]) for r in await cur.fetchall()}


class Database:
    """An async connection pool that opens without waiting, so the app starts with Postgres down."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout_s: float = 5.0,
        connect_timeout_s: int = 5,
        migrations_dir: Path = MIGRATIONS_DIR,
    ) -> None:
        self.migrations_dir = migrations_dir
        self.acquire_timeout_s = acquire_timeout_s
        self.schema_ready = False
        self._schema_lock = asyncio.Lock()
        self.pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max(min_size, max_size),
            open=False,
            timeout=acquire_timeout_s,
            # connections that died with a server restart are replaced on checkout, not handed out
            check=AsyncConnectionPool.check_connection,
            # a short ceiling between reconnect attempts, so recovery after an outage is quick
            reconnect_timeout=60.0,
            kwargs={"autocommit": True, "connect_timeout": connect_timeout_s, "application_name": "llm-router"},
            name="llm-router",
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, timeout_s: float | None = None) -> AsyncIterator[AsyncConnection[TupleRow]]:
        async with self.pool.connection(timeout=timeout_s or self.acquire_timeout_s) as conn:
            yield conn

    async def migrate(self) -> list[int]:
        async with self.connection() as conn:
            applied = await apply_migrations(conn, self.migrations_dir)
        self.schema_ready = True
        return applied

    async def ensure_schema(self) -> None:
        """Migrate once; used by writers when Postgres was down at start."""
        if self.schema_ready:
            return
        async with self._schema_lock:
            if not self.schema_ready:
                await self.migrate()

    async def ping(self) -> float:
        t0 = time.perf_counter()
        async with self.connection(timeout_s=2.0) as conn:
            await conn.execute("SELECT 1")
        return (time.perf_counter() - t0) * 1000

    async def probe(self) -> DependencyStatus:
        """Health probe. Not critical: with Postgres down requests are served and logs wait."""
        try:
            ms = await self.ping()
        except Exception as exc:
            return DependencyStatus("down", None, f"postgres: {type(exc).__name__}")
        if not self.schema_ready:
            return DependencyStatus("degraded", round(ms, 2), "postgres: migrations not applied yet")
        return DependencyStatus("up", round(ms, 2), "postgres")
