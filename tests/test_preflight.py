"""`python -m shared.cli preflight` against real and fake servers: embedded PostgreSQL and Redis
(tests/plugins/databases.py), the fake Weaviate (REST + gRPC), the fake Service Bus (AMQP) and
the fake Key Vault; and against each failure the checklist exists for, named with its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from devtools.embedded import free_port
from shared.config import Settings
from shared.encoders.hashing import HashingEncoder
from shared.index.weaviate import WeaviateIndex
from shared.preflight import preflight, report
from shared.preflight.base import CheckResult
from shared.store.db import Database
from tests.fakes.keyvault import FakeKeyVault, StaticTokenCredential, TlsServerThread, self_signed_cert
from tests.fakes.servicebus import FakeServiceBus
from tests.fakes.weaviate import FakeWeaviateServer

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "llm-router-requests"


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


@pytest.fixture
async def bus() -> AsyncIterator[FakeServiceBus]:
    fake = await FakeServiceBus(queue_names={QUEUE}).start()
    yield fake
    await fake.stop()


@pytest.fixture
def weaviate(weaviate_server: FakeWeaviateServer | None) -> FakeWeaviateServer:
    if weaviate_server is None:
        pytest.skip("scripts the fake Weaviate; WEAVIATE_URL points at a real one")
    weaviate_server.fake.reset()
    return weaviate_server


@pytest.fixture
async def migrated(pg_url: str) -> str:
    db = Database(pg_url, max_size=1)
    await db.open()
    try:
        await db.migrate()
    finally:
        await db.close()
    return pg_url


def environment(
    tmp_path: Path, pg: str, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer, **over: object
) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "auth_enabled": False,
        "embedded_data_dir": tmp_path / "data",
        "encoder": "hashing",
        "database_url": pg,
        "redis_url": redis_url,
        "service_bus_connection_string": bus.connection_string,
        "service_bus_queue": QUEUE,
        "weaviate_url": weaviate.url,
        "weaviate_grpc_host": "127.0.0.1",
        "weaviate_grpc_port": weaviate.grpc_port,
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


def trigger_environ(bus: FakeServiceBus) -> dict[str, str]:
    return {"ServiceBusConnection": bus.connection_string}


async def test_everything_configured_and_healthy_passes(
    tmp_path: Path, migrated: str, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer
) -> None:
    s = environment(tmp_path, migrated, redis_url, bus, weaviate)
    # the collection exists with this router's schema (as the app creates it)
    index = WeaviateIndex.from_settings(s, dim=32, encoder_name=HashingEncoder(dim=s.encoder_dim).name)
    try:
        assert await index.ensure_schema() == "created"
    finally:
        await index.close()
    results = by_name(await preflight(s, trigger_environ(bus), timeout_s=10))
    for name in ("postgres", "redis", "servicebus", "servicebus-trigger", "weaviate"):
        assert results[name].status == "pass", results[name].line()
    assert "migrations current" in results["postgres"].verdict
    assert "matches" in results["weaviate"].verdict
    assert all(r.status != "fail" for r in results.values()), [r.line() for r in results.values()]


def test_the_embedded_defaults_pass_from_the_command_line(tmp_path: Path) -> None:
    """What `make run` uses (nothing configured): every check passes or says why it is skipped."""
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env["EMBEDDED_DATA_DIR"] = str(tmp_path / "data")
    r = subprocess.run(
        [sys.executable, "-m", "shared.cli", "preflight", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert {c["check"] for c in doc["checks"]} >= {"postgres", "redis", "servicebus", "weaviate", "keyvault", "vertex"}
    assert all(c["status"] in ("pass", "skip") and c["verdict"] for c in doc["checks"])


def test_a_failure_exits_non_zero_and_names_the_check_in_json(tmp_path: Path) -> None:
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env.update(EMBEDDED_DATA_DIR=str(tmp_path / "data"), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    r = subprocess.run(
        [sys.executable, "-m", "shared.cli", "preflight", "--json", "--timeout", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    (redis_check,) = [c for c in doc["checks"] if c["check"] == "redis"]
    assert redis_check["status"] == "fail" and "unreachable" in redis_check["verdict"] and redis_check["fix"]


# --- each failure, named with its fix ------------------------------------------------------------------


async def test_stopped_postgres(
    tmp_path: Path, migrated: str, pg_control: object, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer
) -> None:
    s = environment(tmp_path, migrated, redis_url, bus, weaviate)
    pg_control.stop()  # type: ignore[attr-defined]
    try:
        results = by_name(await preflight(s, trigger_environ(bus), timeout_s=10))
    finally:
        pg_control.start()  # type: ignore[attr-defined]
    pg = results["postgres"]
    assert pg.status == "fail"
    assert "unreachable" in pg.verdict
    assert pg.fix and "DATABASE_URL" in pg.fix
    assert results["redis"].status == "pass"  # one failure does not hide the others' verdicts


async def test_wrong_redis_password(
    tmp_path: Path, migrated: str, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer
) -> None:
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", "the-right-one")
    try:
        wrong = redis_url.replace("redis://", "redis://:not-the-password@")
        s = environment(tmp_path, migrated, wrong, bus, weaviate)
        results = by_name(await preflight(s, trigger_environ(bus), timeout_s=10))
        right = environment(tmp_path, migrated, redis_url.replace("redis://", "redis://:the-right-one@"), bus, weaviate)
        results_right = by_name(await preflight(right, trigger_environ(bus), timeout_s=10))
    finally:
        redis.Redis.from_url(redis_url, password="the-right-one").config_set("requirepass", "")
    check = results["redis"]
    assert check.status == "fail"
    assert "AUTH refused" in check.verdict
    assert check.fix and "access key" in check.fix
    assert results_right["redis"].status == "pass"


async def test_missing_queue(
    tmp_path: Path, migrated: str, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer
) -> None:
    s = environment(tmp_path, migrated, redis_url, bus, weaviate, service_bus_queue="no-such-queue")
    results = by_name(await preflight(s, trigger_environ(bus), timeout_s=10))
    check = results["servicebus"]
    assert check.status == "fail"
    assert "'no-such-queue' does not exist" in check.verdict
    assert check.fix and "create the queue" in check.fix


async def test_weaviate_without_grpc(
    tmp_path: Path, migrated: str, redis_url: str, bus: FakeServiceBus, weaviate: FakeWeaviateServer
) -> None:
    s = environment(tmp_path, migrated, redis_url, bus, weaviate, weaviate_grpc_port=free_port())
    results = by_name(await preflight(s, trigger_environ(bus), timeout_s=6))
    check = results["weaviate"]
    assert check.status == "fail"
    assert "REST ok" in check.verdict and "gRPC unreachable" in check.verdict
    assert check.fix and "50051" in check.fix


# --- checks that need no server ----------------------------------------------------------------------------


async def test_trigger_on_another_namespace_than_the_sender() -> None:
    s = Settings(environment="test", auth_enabled=False, service_bus_namespace="prod-a.servicebus.windows.net")
    from shared.preflight.servicebus import ServiceBusTriggerCheck

    environ = {"ServiceBusConnection__fullyQualifiedNamespace": "prod-b.servicebus.windows.net"}
    results = by_name(await preflight(s, environ, checks=[ServiceBusTriggerCheck()]))
    check = results["servicebus-trigger"]
    assert check.status == "fail" and "prod-b" in check.verdict and "prod-a" in check.verdict
    assert check.fix


async def test_azure_redis_on_the_plain_port_and_unresolved_vault_reference_and_production_without_auth() -> None:
    from shared.preflight.auth import AuthCheck
    from shared.preflight.keyvault import KeyVaultCheck
    from shared.preflight.redis import RedisCheck

    s = Settings(
        environment="production",
        auth_enabled=False,
        redis_url="redis://:key@mycache.redis.cache.windows.net:6379/0",  # type: ignore[arg-type]
        database_url="@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/db)",  # type: ignore[arg-type]
    )
    results = by_name(await preflight(s, {}, checks=[RedisCheck(), KeyVaultCheck(), AuthCheck()]))
    assert results["redis"].status == "fail" and "6380" in (results["redis"].fix or "")
    assert results["keyvault"].status == "fail" and "DATABASE_URL" in results["keyvault"].verdict
    assert results["auth"].status == "fail" and "AUTH_ENABLED" in results["auth"].verdict


async def test_secrets_come_from_key_vault_before_the_checks(tmp_path: Path, redis_url: str) -> None:
    from shared.preflight.keyvault import KeyVaultCheck
    from shared.preflight.redis import RedisCheck

    cert, key = self_signed_cert(tmp_path)
    fake = FakeKeyVault({"llm-router-redis-url": redis_url})
    with TlsServerThread(fake.app, cert, key) as server:
        fake.url = server.url
        s = Settings(environment="test", auth_enabled=False, key_vault_url=server.url)
        results = by_name(
            await preflight(
                s,
                {},
                checks=[KeyVaultCheck(), RedisCheck()],
                vault_credential=StaticTokenCredential(),
                verify_challenge_resource=False,
                connection_verify=str(cert),
            )
        )
    assert results["keyvault"].status == "pass"
    assert results["redis"].status == "pass", results["redis"].line()


def test_report_lines_and_exit_code() -> None:
    import io

    out = io.StringIO()
    results = [CheckResult("a", "pass", "fine"), CheckResult("b", "fail", "broken", "do this")]
    assert report(results, False, out) == 1
    text = out.getvalue()
    assert "FAIL  b: broken  -> fix: do this" in text
    assert report(results[:1], False, io.StringIO()) == 0
