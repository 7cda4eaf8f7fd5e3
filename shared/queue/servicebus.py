"""Azure Service Bus as the job queue: ONE async ServiceBusClient per process, senders cached.

The sender is built from the same setting the Functions host's trigger reads
(connection="ServiceBusConnection"): ServiceBusConnection__fullyQualifiedNamespace with
DefaultAzureCredential (managed identity in Azure), or the ServiceBusConnection connection string.
SERVICE_BUS_CONNECTION_STRING / SERVICE_BUS_NAMESPACE are the fallback where no trigger setting
exists (local host, tools). A namespace that differs between them is a readiness problem
(`namespace_problems`), never a silent split where jobs queue on one namespace and the trigger
listens on another. The SDK's own retries are kept short: the
caller is an HTTP request that answers a clear 503 when the queue cannot be reached, rather than
hanging through the SDK's default minute of retries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from azure.identity.aio import DefaultAzureCredential
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from ..config import Settings, secret_value
from .base import OutgoingMessage

log = logging.getLogger(__name__)

RETRY_TOTAL = 2
RETRY_BACKOFF_FACTOR = 0.2
RETRY_BACKOFF_MAX = 2.0


def client_options() -> dict[str, Any]:
    return {
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
    }


TRIGGER_NAMESPACE = "ServiceBusConnection__fullyQualifiedNamespace"
TRIGGER_CONNECTION = "ServiceBusConnection"


def namespace_of(value: str | None) -> str | None:
    """'Endpoint=sb://ns.servicebus.windows.net/;...', 'sb://ns...', 'https://ns...:443/' or 'ns...'
    -> 'ns.servicebus.windows.net' (lower case); None when empty or not parseable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if "=" in text:  # a connection string
        parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
        text = {k.lower(): v for k, v in parts.items()}.get("endpoint", "")
    text = text.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return text.lower() or None


def sender_source(settings: Settings) -> tuple[str, str | None, str | None]:
    """(setting name, connection string, namespace) the sender uses: the trigger's setting first."""
    if settings.service_bus_trigger_namespace:
        return TRIGGER_NAMESPACE, None, settings.service_bus_trigger_namespace.strip()
    trigger_conn = secret_value(settings.service_bus_trigger_connection)
    if trigger_conn:
        return TRIGGER_CONNECTION, trigger_conn, None
    conn = secret_value(settings.service_bus_connection_string)
    if conn:
        return "SERVICE_BUS_CONNECTION_STRING", conn, None
    return "SERVICE_BUS_NAMESPACE", None, settings.service_bus_namespace


def configured(settings: Settings) -> bool:
    """Whether jobs go to Service Bus (else the in-process queue)."""
    _, conn, namespace = sender_source(settings)
    return bool(conn or namespace)


def namespace_problems(settings: Settings) -> list[str]:
    """Every way the sender and the trigger could end up on different namespaces (names, no secrets)."""
    seen: dict[str, str] = {}
    for name, value in (
        (TRIGGER_NAMESPACE, settings.service_bus_trigger_namespace),
        (TRIGGER_CONNECTION, secret_value(settings.service_bus_trigger_connection)),
        ("SERVICE_BUS_NAMESPACE", settings.service_bus_namespace),
        ("SERVICE_BUS_CONNECTION_STRING", secret_value(settings.service_bus_connection_string)),
    ):
        if value and value.strip():
            ns = namespace_of(value)
            seen[name] = ns or "?"
            if ns is None or "@microsoft.keyvault(" in value.lower():
                seen[name] = "?"
    problems: list[str] = []
    trigger = {k: v for k, v in seen.items() if k in (TRIGGER_NAMESPACE, TRIGGER_CONNECTION)}
    if len(set(seen.values())) > 1:
        listing = ", ".join(f"{k} -> {v}" for k, v in seen.items())
        problems.append(
            f"Service Bus: the settings name different namespaces ({listing}); the trigger listens where "
            f"{' and '.join(trigger) or TRIGGER_CONNECTION} says and the sender follows it, so jobs sent with the "
            "others would never be processed: make them name one namespace (or remove the extra ones)"
        )
    if seen and not trigger and settings.is_production:
        problems.append(
            f"Service Bus: {', '.join(seen)} is set but the trigger's {TRIGGER_CONNECTION} / {TRIGGER_NAMESPACE} "
            "is not: the Functions host would not listen where jobs are sent"
        )
    return problems


def build_client(settings: Settings) -> tuple[ServiceBusClient, Any]:
    """The client, and the credential to close with it (None with a connection string)."""
    _, conn, namespace = sender_source(settings)
    if conn:
        return ServiceBusClient.from_connection_string(conn, **client_options()), None
    if not namespace:
        raise RuntimeError(f"set {TRIGGER_NAMESPACE} (or {TRIGGER_CONNECTION}, SERVICE_BUS_NAMESPACE)")

    credential = DefaultAzureCredential()
    return ServiceBusClient(namespace, credential, **client_options()), credential


def to_sdk_message(message: OutgoingMessage) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        application_properties={str(k): v for k, v in message.application_properties.items()},
        content_type=message.content_type,
        reply_to=message.reply_to,
    )


class ServiceBusJobQueue:
    kind = "servicebus"

    def __init__(self, client: ServiceBusClient, credential: Any = None) -> None:
        self.client = client
        self.credential = credential
        self._senders: dict[str, ServiceBusSender] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceBusJobQueue:
        client, credential = build_client(settings)
        return cls(client, credential)

    async def _sender(self, queue: str) -> ServiceBusSender:
        sender = self._senders.get(queue)
        if sender is None:
            async with self._lock:
                sender = self._senders.get(queue)
                if sender is None:
                    sender = self.client.get_queue_sender(queue)
                    self._senders[queue] = sender
        return sender

    async def send(self, queue: str, message: OutgoingMessage) -> None:
        sender = await self._sender(queue)
        await sender.send_messages(to_sdk_message(message))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sender in self._senders.values():
            try:
                await sender.close()
            except Exception:
                log.exception("closing a Service Bus sender failed")
        self._senders.clear()
        await self.client.close()
        if self.credential is not None:
            await self.credential.close()
