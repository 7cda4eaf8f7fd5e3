"""Backup checks as the triggers and the health report see them, whatever the backend: run one
(the timer, `cli backup-check`) and show the last one. The Weaviate checker is
shared/index/weaviate_backups.py; the checks are kept by shared/store/backup_checks.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .store.backup_checks import BackupCheck, BackupCheckStore

log = logging.getLogger(__name__)


class BackupCheckRunner(Protocol):
    async def run(self) -> BackupCheck: ...


async def run_backup_check(checker: BackupCheckRunner | None, *, past_due: bool = False) -> BackupCheck | None:
    """One check (the timer's and `cli backup-check`'s body); None when no Weaviate is configured."""
    if past_due:
        log.warning("the backup check timer is past due")
    if checker is None:
        log.info("WEAVIATE_URL is not set: no Weaviate backups to check")
        return None
    return await checker.run()


def health_details(store: BackupCheckStore) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The last check, as GET /api/v1/health shows it under "backup"."""

    async def details() -> dict[str, Any]:
        try:
            last = await store.latest()
        except Exception as exc:
            return {"backup": {"status": "unknown", "detail": f"cannot read backup checks: {type(exc).__name__}"}}
        if last is None:
            return {"backup": {"status": "unknown", "detail": "no backup check has run yet"}}
        return {"backup": {"status": "ok" if last.ok else "failing", **last.public()}}

    return details
