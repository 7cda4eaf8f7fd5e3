"""PostgreSQL: reachable, TLS when not on loopback, migrations current."""

from __future__ import annotations

from urllib.parse import urlparse

import psycopg

from ..config import secret_value
from ..store.db import applied_versions, load_migrations
from .base import CheckResult, Environment, describe, failed, is_loopback, passed, skipped

NAME = "postgres"


class PostgresCheck:
    name = NAME
    timeout_fix = "check that the server is running and DATABASE_URL's host and port are reachable from here (firewall, private endpoint)"

    async def run(self, env: Environment) -> CheckResult:

        s = env.settings
        if not s.database_enabled:
            return skipped(NAME, "DATABASE_ENABLED=false: the request log is not written")
        url = secret_value(s.database_url)
        if not url:
            return skipped(NAME, "DATABASE_URL unset: the local host starts its embedded server")
        timeout = max(1, int(env.timeout_s / 2))
        try:
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=timeout, autocommit=True)
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "password authentication failed" in text or "authentication" in text.lower():
                return failed(
                    NAME,
                    f"authentication refused: {describe(exc)}",
                    "fix the user/password in DATABASE_URL (Key Vault secret llm-router-database-url)",
                )
            return failed(NAME, f"unreachable: {describe(exc)}", self.timeout_fix)
        try:
            host = conn.info.host
            tls = bool(conn.pgconn.ssl_in_use)
            if not tls and not is_loopback(host) and not host.startswith("/"):
                return failed(
                    NAME,
                    f"connected to {host} without TLS",
                    "add sslmode=require to DATABASE_URL (Azure Database for PostgreSQL requires it)",
                )
            done = await applied_versions(conn)
        finally:
            await conn.close()
        pending = [m.name for m in load_migrations() if m.version not in done]
        if pending:
            return failed(
                NAME,
                f"migrations pending: {', '.join(pending)}",
                "run `python -m shared.cli migrate` against DATABASE_URL before switching the image",
            )
        where = urlparse(url).hostname or host
        return passed(NAME, f"{where}: {'TLS' if tls else 'loopback, no TLS'}, migrations current ({len(done)})")
