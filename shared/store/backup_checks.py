"""Weaviate backup checks (shared/backups.py runs them), kept in `backup_checks`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .db import Database


@dataclass
class BackupCheck:
    """One row of backup_checks. `latest_*` describe the newest backup of any status;
    `latest_completed_at` / `age_hours` the newest successful one."""

    backend: str
    action: str  # none | started | following | start_failed | unreachable
    ok: bool
    detail: str
    latest_backup_id: str | None = None
    latest_status: str | None = None
    latest_completed_at: datetime | None = None
    age_hours: float | None = None
    started_backup_id: str | None = None
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("checked_at", "latest_completed_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        if out["age_hours"] is not None:
            out["age_hours"] = round(out["age_hours"], 3)
        return out


class BackupCheckStore(Protocol):
    async def record(self, check: BackupCheck) -> None: ...

    async def latest(self) -> BackupCheck | None: ...


class MemoryBackupCheckStore:
    def __init__(self, keep: int = 1000) -> None:
        self.checks: list[BackupCheck] = []
        self.keep = keep

    async def record(self, check: BackupCheck) -> None:
        self.checks.append(check)
        del self.checks[: -self.keep]

    async def latest(self) -> BackupCheck | None:
        return self.checks[-1] if self.checks else None


_COLUMNS = (
    "checked_at, backend, latest_backup_id, latest_status, latest_completed_at, age_hours, action,"
    " started_backup_id, ok, detail"
)


class PostgresBackupCheckStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, check: BackupCheck) -> None:
        await self.db.ensure_schema()
        async with self.db.connection() as conn:
            await conn.execute(
                f"INSERT INTO backup_checks ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
                (
                    check.checked_at,
                    check.backend,
                    check.latest_backup_id,
                    check.latest_status,
                    check.latest_completed_at,
                    check.age_hours,
                    check.action,
                    check.started_backup_id,
                    check.ok,
                    check.detail,
                ),
            )

    async def latest(self) -> BackupCheck | None:
        await self.db.ensure_schema()
        async with self.db.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM backup_checks ORDER BY checked_at DESC, id DESC LIMIT 1")  # noqa: S608
            row = await cur.fetchone()
        if row is None:
            return None
        return BackupCheck(
            checked_at=row[0],
            backend=row[1],
            latest_backup_id=row[2],
            latest_status=row[3],
            latest_completed_at=row[4],
            age_hours=row[5],
            action=row[6],
            started_backup_id=row[7],
            ok=row[8],
            detail=row[9] or "",
        )
