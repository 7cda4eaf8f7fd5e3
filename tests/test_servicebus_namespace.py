"""One Service Bus namespace: the sender reads the setting the Functions trigger reads, and any
setting that names another namespace is a readiness problem (issue #15: a connection-string secret
in Key Vault used to win for the sender while the trigger listened on the template's namespace)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from shared.config import Settings
from shared.config_checks import config_problems
from shared.queue import servicebus, servicebus_settings
from tests.plugins.auth_tokens import asgi_client

NS = "llmrouter-sb-abc.servicebus.windows.net"
OTHER = "guide-bus.servicebus.windows.net"


def conn(ns: str) -> str:
    return f"Endpoint=sb://{ns}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0"


def test_the_trigger_settings_are_read_under_the_names_the_functions_host_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", NS)
    monkeypatch.setenv("ServiceBusConnection", conn(NS))
    s = Settings()
    assert s.service_bus_trigger_namespace == NS
    assert s.service_bus_trigger_connection is not None
    assert s.service_bus_trigger_connection.get_secret_value() == conn(NS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (conn(NS), NS),
        (f"sb://{NS}/", NS),
        (f"https://{NS.upper()}:443/", NS),
        (NS, NS),
        ("", None),
    ],
)
def test_namespace_of(value: str, expected: str | None) -> None:
    assert servicebus_settings.namespace_of(value) == expected


async def test_the_sender_follows_the_trigger_even_when_a_vault_connection_string_is_loaded() -> None:
    s = Settings(
        service_bus_trigger_namespace=NS,
        service_bus_connection_string=SecretStr(conn(NS)),  # what the Key Vault secret loads
    )
    assert servicebus_settings.sender_source(s) == (servicebus_settings.TRIGGER_NAMESPACE, None, NS)
    client, credential = servicebus.build_client(s)
    try:
        assert client.fully_qualified_namespace == NS
        assert credential is not None, "identity-based, like the trigger"
    finally:
        await client.close()
        await credential.close()
    assert servicebus_settings.namespace_problems(s) == []


async def test_a_trigger_connection_string_is_used_as_it_is() -> None:
    s = Settings(service_bus_trigger_connection=SecretStr(conn(OTHER)))
    client, credential = servicebus.build_client(s)
    try:
        assert client.fully_qualified_namespace == OTHER
        assert credential is None
    finally:
        await client.close()
    assert servicebus_settings.configured(s)
    assert not servicebus_settings.configured(Settings(service_bus_namespace=None, service_bus_connection_string=None))


def test_a_second_namespace_is_named_in_a_problem_without_the_secret() -> None:
    s = Settings(service_bus_trigger_namespace=NS, service_bus_connection_string=SecretStr(conn(OTHER)))
    problems = servicebus_settings.namespace_problems(s)
    assert len(problems) == 1
    assert f"ServiceBusConnection__fullyQualifiedNamespace -> {NS}" in problems[0]
    assert f"SERVICE_BUS_CONNECTION_STRING -> {OTHER}" in problems[0]
    assert "c2VjcmV0" not in problems[0] and "SharedAccessKey" not in problems[0]


def test_a_sender_without_a_trigger_setting_is_a_problem_in_production() -> None:
    s = Settings(environment="production", service_bus_namespace=NS)
    assert any("trigger's ServiceBusConnection" in p for p in servicebus_settings.namespace_problems(s))
    assert servicebus_settings.namespace_problems(Settings(environment="development", service_bus_namespace=NS)) == []


async def test_a_split_namespace_fails_readiness(make_context: Callable[..., Any], settings: Settings) -> None:
    s = settings.model_copy(update={"service_bus_trigger_namespace": NS, "service_bus_namespace": OTHER})
    assert config_problems(s)
    await make_context(settings=s)
    async with asgi_client() as client:
        r = await client.get("/health/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "down"
    assert any("different namespaces" in p and OTHER in p for p in body["problems"])
