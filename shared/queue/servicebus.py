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

from ..config import Settings
from .base import OutgoingMessage
from .servicebus_settings import TRIGGER_CONNECTION, TRIGGER_NAMESPACE, sender_source

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
