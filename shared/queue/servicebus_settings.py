"""Which Service Bus namespace the sender and the trigger use, from the settings alone (no SDK):
the sender follows the trigger's setting, so jobs are never sent to one namespace and listened for
on another; any split is a configuration problem (shared/config_checks.py)."""

from __future__ import annotations

from ..config import Settings, secret_value

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
