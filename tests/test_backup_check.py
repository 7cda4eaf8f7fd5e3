"""The backup timer's decisions, through the real weaviate-client against the fake Weaviate's
backup API (list, create, status): no backups, a recent one, a stale one, a failed one, one in
progress; plus Weaviate unreachable, the recorded rows, the metric, the traced error log, and
the last check on GET /api/v1/health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import REGISTRY

from shared.backups import health_details
from shared.config import Settings
from shared.index.weaviate_backups import BackupChecker
from shared.index.weaviate_connection import build_client
from shared.store.backup_checks import BackupCheck, MemoryBackupCheckStore
from shared.telemetry import JsonFormatter
from tests.fakes.weaviate import FakeWeaviate

MAX_AGE = 24.0


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def checker(
    fake_weaviate: FakeWeaviate, weaviate_settings: Settings, spans: InMemorySpanExporter
) -> AsyncIterator[BackupChecker]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    client = build_client(weaviate_settings)
    c = BackupChecker(
        client,
        MemoryBackupCheckStore(),
        backend="azure",
        collection=weaviate_settings.weaviate_collection,
        max_age_hours=MAX_AGE,
        tracer_provider=provider,
    )
    yield c
    await client.close()


def metric_age() -> float | None:
    return REGISTRY.get_sample_value("llm_router_backup_age_hours")


def azure_backups(fake: FakeWeaviate) -> dict[str, Any]:
    return dict(fake.backups.get("azure", {}))


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (inside the span), as the app's console handler does."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))


@pytest.fixture
def json_errors() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("shared.index.weaviate_backups")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_no_backups_starts_one_and_alerts(
    checker: BackupChecker, fake_weaviate: FakeWeaviate, json_errors: JsonLines, spans: InMemorySpanExporter
) -> None:
    check = await checker.run()
    assert check.action == "started"
    assert check.ok is False
    assert check.age_hours is None
    assert check.latest_backup_id is None
    assert check.started_backup_id is not None and check.started_backup_id.startswith("llm-router-")
    created = azure_backups(fake_weaviate)
    assert list(created) == [check.started_backup_id]
    assert created[check.started_backup_id].classes == [checker.collection]
    assert metric_age() == -1
    assert "no successful backup" in check.detail
    # the error is logged inside the check's span, so the JSON line carries its trace id
    [line] = json_errors.lines
    [span] = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    assert "no successful backup" in line["message"]
    assert await checker.store.latest() == check


async def test_recent_success_does_nothing(
    checker: BackupChecker, fake_weaviate: FakeWeaviate, caplog: pytest.LogCaptureFixture
) -> None:
    fake_weaviate.add_backup("llm-router-recent", "SUCCESS", age_hours=2.0)
    with caplog.at_level(logging.INFO, logger="shared.index.weaviate_backups"):
        check = await checker.run()
    assert check.action == "none"
    assert check.ok is True
    assert check.latest_backup_id == "llm-router-recent"
    assert check.latest_status == "SUCCESS"
    assert check.age_hours is not None and 1.9 < check.age_hours < 2.1
    assert list(azure_backups(fake_weaviate)) == ["llm-router-recent"]
    assert metric_age() == pytest.approx(check.age_hours)
    assert error_lines(caplog) == []


async def test_stale_success_starts_a_new_backup(
    checker: BackupChecker, fake_weaviate: FakeWeaviate, caplog: pytest.LogCaptureFixture
) -> None:
    fake_weaviate.add_backup("llm-router-old", "SUCCESS", age_hours=30.0)
    with caplog.at_level(logging.INFO, logger="shared.index.weaviate_backups"):
        check = await checker.run()
    assert check.action == "started"
    assert check.ok is False
    assert check.age_hours is not None and check.age_hours > MAX_AGE
    assert check.latest_backup_id == "llm-router-old"
    started = azure_backups(fake_weaviate)[check.started_backup_id or ""]
    assert started.status == "STARTED"
    assert "h old (limit 24 h)" in check.detail
    assert len(error_lines(caplog)) == 1


async def test_failed_backup_alerts_and_retries_when_nothing_is_recent(
    checker: BackupChecker, fake_weaviate: FakeWeaviate, caplog: pytest.LogCaptureFixture
) -> None:
    fake_weaviate.add_backup("llm-router-broken", "FAILED", age_hours=1.0, error="disk full")
    with caplog.at_level(logging.INFO, logger="shared.index.weaviate_backups"):
        check = await checker.run()
    assert check.ok is False
    assert check.latest_backup_id == "llm-router-broken"
    assert check.latest_status == "FAILED"
    assert check.action == "started"
    assert "llm-router-broken is FAILED" in check.detail
    assert len(azure_backups(fake_weaviate)) == 2
    assert "FAILED" in error_lines(caplog)[0]


async def test_failed_backup_after_a_recent_success_alerts_without_starting(
    checker: BackupChecker, fake_weaviate: FakeWeaviate
) -> None:
    fake_weaviate.add_backup("llm-router-good", "SUCCESS", age_hours=5.0)
    fake_weaviate.add_backup("llm-router-broken", "FAILED", age_hours=1.0)
    check = await checker.run()
    assert check.ok is False
    assert check.action == "none"
    assert check.latest_status == "FAILED"
    assert check.age_hours is not None and 4.9 < check.age_hours < 5.1
    assert len(azure_backups(fake_weaviate)) == 2


async def test_in_progress_backup_is_followed_not_duplicated(
    checker: BackupChecker, fake_weaviate: FakeWeaviate
) -> None:
    fake_weaviate.add_backup("llm-router-old", "SUCCESS", age_hours=30.0)
    fake_weaviate.add_backup("llm-router-running", "TRANSFERRING", age_hours=0.5)
    check = await checker.run()
    assert check.action == "following"
    assert check.started_backup_id == "llm-router-running"
    assert check.latest_status == "TRANSFERRING"
    assert "in progress (TRANSFERRING)" in check.detail
    assert check.ok is False  # the newest success is still stale
    assert set(azure_backups(fake_weaviate)) == {"llm-router-old", "llm-router-running"}
    assert "GET /v1/backups/azure/llm-router-running" in fake_weaviate.calls


async def test_in_progress_with_a_recent_success_is_fine(checker: BackupChecker, fake_weaviate: FakeWeaviate) -> None:
    fake_weaviate.add_backup("llm-router-good", "SUCCESS", age_hours=3.0)
    fake_weaviate.add_backup("llm-router-running", "STARTED", age_hours=0.1)
    check = await checker.run()
    assert (check.action, check.ok) == ("following", True)
    assert len(azure_backups(fake_weaviate)) == 2


async def test_backups_of_other_collections_do_not_count(checker: BackupChecker, fake_weaviate: FakeWeaviate) -> None:
    other = fake_weaviate.add_backup("someone-else", "SUCCESS", age_hours=1.0)
    other.classes = ["SomeOtherCollection"]
    check = await checker.run()
    assert check.action == "started"
    assert check.latest_backup_id is None


async def test_unreachable_weaviate_is_recorded(
    checker: BackupChecker, fake_weaviate: FakeWeaviate, caplog: pytest.LogCaptureFixture
) -> None:
    fake_weaviate.mode = "error"
    with caplog.at_level(logging.INFO, logger="shared.index.weaviate_backups"):
        check = await checker.run()
    assert (check.action, check.ok) == ("unreachable", False)
    assert "cannot list backups" in check.detail
    assert fake_weaviate.backups == {}
    assert await checker.store.latest() == check
    assert len(error_lines(caplog)) == 1


async def test_every_check_is_recorded_in_order(checker: BackupChecker, fake_weaviate: FakeWeaviate) -> None:
    first = await checker.run()  # none -> starts one (STARTED)
    second = await checker.run()  # follows it
    store = checker.store
    assert isinstance(store, MemoryBackupCheckStore)
    assert store.checks == [first, second]
    assert second.action == "following"
    assert second.started_backup_id == first.started_backup_id


async def test_health_shows_the_last_check(make_context: Any, client: Any, checker: BackupChecker) -> None:
    store = checker.store
    details = health_details(store)
    assert (await details())["backup"]["status"] == "unknown"
    check = await checker.run()
    ctx = await make_context(health_details=details)
    assert ctx.health.details is details
    r = await client.get("/api/v1/health")
    body = r.json()
    assert body["backup"]["status"] == "failing"
    assert body["backup"]["action"] == check.action
    assert body["backup"]["started_backup_id"] == check.started_backup_id


def test_check_rows_have_the_table_columns() -> None:
    from pathlib import Path

    sql = (Path(__file__).resolve().parent.parent / "shared/store/migrations/0001_init.sql").read_text()
    table = sql.split("CREATE TABLE IF NOT EXISTS backup_checks", 1)[1].split(");", 1)[0]
    columns = {line.split()[0] for line in table.strip("( \n").splitlines() if line.strip()}
    fields = set(BackupCheck.__dataclass_fields__)
    assert fields == columns - {"id"}
