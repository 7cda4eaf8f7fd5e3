"""Service Bus: the namespace reachable, the queue present, send and receive rights for the
identity in use, and the trigger listening on the namespace the app sends to."""

from __future__ import annotations

import re
from collections.abc import Mapping

from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
)

from ..config import Settings, secret_value
from ..queue.servicebus import build_client
from .base import CheckResult, Environment, describe, failed, passed, skipped

NAME = "servicebus"
TRIGGER_NAME = "servicebus-trigger"
CONNECTION = "ServiceBusConnection"  # the trigger's `connection=` in function_app.py

_ENDPOINT = re.compile(r"Endpoint=sb://([^/;]+)", re.IGNORECASE)


def sender_namespace(s: Settings) -> str | None:
    conn = secret_value(s.service_bus_connection_string)
    if conn:
        m = _ENDPOINT.search(conn)
        return m.group(1).lower() if m else None
    return s.service_bus_namespace.lower() if s.service_bus_namespace else None


def trigger_namespace(environ: Mapping[str, str]) -> str | None:
    """What the Functions host's Service Bus trigger listens on: `ServiceBusConnection` (a
    connection string) or `ServiceBusConnection__fullyQualifiedNamespace` (identity)."""
    fq = environ.get(f"{CONNECTION}__fullyQualifiedNamespace")
    if fq:
        return fq.lower()
    conn = environ.get(CONNECTION)
    if conn:
        m = _ENDPOINT.search(conn)
        return m.group(1).lower() if m else conn.lower()
    return None


class ServiceBusCheck:
    name = NAME
    timeout_fix = "check the namespace name and that this network may reach it on 5671/443 (AMQP)"

    async def run(self, env: Environment) -> CheckResult:

        s = env.settings
        namespace = sender_namespace(s)
        if namespace is None:
            return skipped(
                NAME, "SERVICE_BUS_CONNECTION_STRING and SERVICE_BUS_NAMESPACE unset: jobs use the in-process queue"
            )
        queue = s.service_bus_queue
        client, credential = build_client(s)
        step = "connect"
        try:
            async with client:
                step = "send"
                async with client.get_queue_sender(queue):
                    pass
                step = "receive"
                # opening the link is what needs the rights; nothing is received or locked
                async with client.get_queue_receiver(queue, prefetch_count=0):
                    pass
        except MessagingEntityNotFoundError as exc:
            return failed(
                NAME,
                f"queue {queue!r} does not exist in {namespace}: {describe(exc)}",
                f"create the queue {queue!r} (infra/main.bicep creates it) or set SERVICE_BUS_QUEUE to the existing one",
            )
        except (ServiceBusAuthorizationError, ServiceBusAuthenticationError) as exc:
            role = "Azure Service Bus Data Sender" if step == "send" else "Azure Service Bus Data Receiver"
            return failed(
                NAME,
                f"the identity may not {step} on {queue!r}: {describe(exc)}",
                f"assign {role} on the queue (or namespace) to the app's identity, or use a connection string with Send and Listen",
            )
        except ServiceBusConnectionError as exc:
            return failed(NAME, f"cannot reach {namespace}: {describe(exc)}", self.timeout_fix)
        finally:
            if credential is not None:
                await credential.close()
        return passed(NAME, f"{namespace}: queue {queue!r} present, send and receive links open")


class ServiceBusTriggerCheck:
    name = TRIGGER_NAME
    timeout_fix = "compare ServiceBusConnection__fullyQualifiedNamespace with SERVICE_BUS_NAMESPACE"

    async def run(self, env: Environment) -> CheckResult:
        sender = sender_namespace(env.settings)
        if sender is None:
            return skipped(TRIGGER_NAME, "no Service Bus configured for the app")
        trigger = trigger_namespace(env.environ)
        if trigger is None:
            return failed(
                TRIGGER_NAME,
                f"the app sends jobs to {sender} but the trigger has no {CONNECTION} setting",
                f"set {CONNECTION}__fullyQualifiedNamespace={sender} (with __credential=managedidentity and __clientId)",
            )
        if trigger != sender:
            return failed(
                TRIGGER_NAME,
                f"the app sends jobs to {sender} but the trigger listens on {trigger}",
                f"point {CONNECTION}__fullyQualifiedNamespace and SERVICE_BUS_NAMESPACE at the same namespace",
            )
        return passed(TRIGGER_NAME, f"the trigger listens on {trigger}, where the app sends")
