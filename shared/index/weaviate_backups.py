"""The Weaviate backup check, run by the timer (BACKUP_CHECK_SCHEDULE) and `cli backup-check`
(through shared/backups.py, which knows no Weaviate).

One check:
1. lists the backups on WEAVIATE_BACKUP_BACKEND that hold the examples collection;
2. finds the newest SUCCESS and its age (hours since it completed);
3. when a backup is still in progress, follows it (reads its status) instead of starting
   another; otherwise, when the newest success is older than BACKUP_MAX_AGE_HOURS (or there is
   none), starts `llm-router-<UTC timestamp>`;
4. records the check in `backup_checks`, sets `llm_router_backup_age_hours` (-1: none), and logs
   an error inside a trace span when the newest backup failed or no success is recent.

The last check is what GET /api/v1/health shows under "backup".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from weaviate.backup.backup import BackupStatus, BackupStorage
from weaviate.client import WeaviateAsyncClient
from weaviate.exceptions import WeaviateBaseError

from ..config import Settings
from ..metrics import BACKUP_AGE_HOURS
from ..store.backup_checks import BackupCheck, BackupCheckStore

log = logging.getLogger(__name__)

IN_PROGRESS = {
    BackupStatus.STARTED,
    BackupStatus.TRANSFERRING,
    BackupStatus.TRANSFERRED,
    BackupStatus.FINALIZING,
    BackupStatus.CANCELLING,
}
FAILED = {BackupStatus.FAILED, BackupStatus.CANCELED}


def new_backup_id(now: datetime) -> str:
    # Weaviate backup ids are lowercase [a-z0-9_-]
    return "llm-router-" + now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


class BackupChecker:
    def __init__(
        self,
        client: WeaviateAsyncClient,
        store: BackupCheckStore,
        *,
        backend: str,
        collection: str,
        max_age_hours: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracer_provider: Any = None,
    ) -> None:
        self.client = client
        self.store = store
        self.backend = BackupStorage(backend)
        self.collection = collection
        self.max_age_hours = max_age_hours
        self.clock = clock
        self.tracer_provider = tracer_provider

    @classmethod
    def from_settings(cls, s: Settings, client: WeaviateAsyncClient, store: BackupCheckStore) -> BackupChecker:
        return cls(
            client,
            store,
            backend=s.weaviate_backup_backend,
            collection=s.weaviate_collection,
            max_age_hours=s.backup_max_age_hours,
        )

    async def run(self) -> BackupCheck:
        tracer = trace.get_tracer(__name__, tracer_provider=self.tracer_provider)
        with tracer.start_as_current_span("weaviate.backup_check") as span:
            check = await self._check()
            span.set_attribute("backup.action", check.action)
            span.set_attribute("backup.ok", check.ok)
            if check.age_hours is not None:
                span.set_attribute("backup.age_hours", check.age_hours)
            BACKUP_AGE_HOURS.set(check.age_hours if check.age_hours is not None else -1)
            if not check.ok:
                span.set_status(trace.Status(trace.StatusCode.ERROR, check.detail))
                # logged inside the span: the JSON log line carries its trace and span ids
                log.error(
                    "Weaviate backup check failed: %s",
                    check.detail,
                    extra={"backup_action": check.action, "backup_backend": check.backend},
                )
            else:
                log.info("Weaviate backup check: %s", check.detail)
            try:
                await self.store.record(check)
            except Exception as exc:
                log.error("could not record the backup check: %s", type(exc).__name__)
        return check

    async def _check(self) -> BackupCheck:
        now = self.clock()
        backend = self.backend.value
        try:
            if not self.client.is_connected():
                await self.client.connect()
            backups = await self.client.backup.list_backups(backend=self.backend)
        except (WeaviateBaseError, OSError) as exc:
            return BackupCheck(backend, "unreachable", False, f"cannot list backups: {exc}", checked_at=now)
        mine = [b for b in backups if not b.collections or self.collection in b.collections]
        mine.sort(key=lambda b: _when(b.started_at, b.completed_at), reverse=True)
        newest = mine[0] if mine else None
        success = next((b for b in mine if b.status == BackupStatus.SUCCESS), None)
        check = BackupCheck(backend, "none", True, "", checked_at=now)
        if newest is not None:
            check.latest_backup_id, check.latest_status = newest.backup_id, newest.status.value
        if success is not None:
            done = success.completed_at or success.started_at
            check.latest_completed_at = done
            check.age_hours = max(0.0, (now - done).total_seconds() / 3600) if done else None
        recent = check.age_hours is not None and check.age_hours <= self.max_age_hours
        running = next((b for b in mine if b.status in IN_PROGRESS), None)
        problems: list[str] = []
        if newest is not None and newest.status in FAILED:
            problems.append(f"the latest backup {newest.backup_id} is {newest.status.value}")
        if running is not None:
            status = await self._follow(running.backup_id)
            check.action, check.started_backup_id = "following", running.backup_id
            problems_or_note = f"backup {running.backup_id} is in progress ({status})"
            if not recent:
                problems.append(_age_text(check.age_hours, self.max_age_hours) + "; " + problems_or_note)
            else:
                check.detail = problems_or_note
        elif not recent:
            backup_id = new_backup_id(now)
            try:
                await self.client.backup.create(
                    backup_id=backup_id,
                    backend=self.backend,
                    include_collections=[self.collection],
                    wait_for_completion=False,
                )
                check.action, check.started_backup_id = "started", backup_id
                problems.append(_age_text(check.age_hours, self.max_age_hours) + f"; started {backup_id}")
            except (WeaviateBaseError, OSError) as exc:
                check.action = "start_failed"
                problems.append(_age_text(check.age_hours, self.max_age_hours) + f"; could not start a backup: {exc}")
        if problems:
            check.ok = False
            check.detail = "; ".join(problems)
        elif not check.detail:
            check.detail = (
                f"newest successful backup {success.backup_id if success else '?'} is {check.age_hours:.1f} h old"
            )
        return check

    async def _follow(self, backup_id: str) -> str:
        try:
            status = await self.client.backup.get_create_status(backup_id=backup_id, backend=self.backend)
        except (WeaviateBaseError, OSError) as exc:
            return f"status unknown: {type(exc).__name__}"
        return str(status.status.value)


def _when(started: datetime | None, completed: datetime | None) -> datetime:
    return started or completed or datetime.min.replace(tzinfo=UTC)


def _age_text(age: float | None, limit: float) -> str:
    if age is None:
        return "no successful backup found"
    return f"newest successful backup is {age:.1f} h old (limit {limit:g} h)"
