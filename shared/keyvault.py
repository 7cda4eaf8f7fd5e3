"""Secrets from Azure Key Vault, loaded once at start when KEY_VAULT_URL is set.

The secret names are the deployment guide's; each maps to one setting. A secret present in the
vault replaces the setting; a missing one leaves the setting as it is (and is logged by name).
App settings may also hold `@Microsoft.KeyVault(...)` references that the platform resolves;
one that reaches the app unresolved is reported by `unresolved_references` (names only), and
readiness fails naming it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient
from pydantic import SecretStr

from .config import Settings

log = logging.getLogger(__name__)

# Key Vault secret name -> setting (app-setting name as in the deployment guide).
SECRET_SETTINGS: dict[str, str] = {
    "llm-router-database-url": "DATABASE_URL",
    "llm-router-redis-url": "REDIS_URL",
    "llm-router-jwt-secret": "JWT_SECRET",
    "WEAVIATE-API-KEY": "WEAVIATE_API_KEY",
    "llm-router-weaviate-url": "WEAVIATE_URL",
    "WEAVIATE-URL": "WEAVIATE_URL",  # the guide's own name; wins when both exist
    "llm-router-azure-client-secret": "AZURE_CLIENT_SECRET",
    "llm-router-google-application-credentials": "GOOGLE_APPLICATION_CREDENTIALS_JSON",
    "llm-router-service-bus-connection-string": "SERVICE_BUS_CONNECTION_STRING",
    "llm-router-applicationinsights-connection-string": "APPLICATIONINSIGHTS_CONNECTION_STRING",
}

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


async def load_secrets(settings: Settings, credential: Any = None, **client_kwargs: Any) -> Settings:
    """A new Settings with the vault's secrets applied. `credential` defaults to
    DefaultAzureCredential (managed identity in Azure); `client_kwargs` go to SecretClient."""
    if not settings.key_vault_url:
        return settings
    # the SDK's network trace logs response bodies, which here are the secrets themselves
    client_kwargs["logging_enable"] = False
    own_credential = credential is None
    if own_credential:
        credential = DefaultAzureCredential()
    try:
        async with SecretClient(vault_url=settings.key_vault_url, credential=credential, **client_kwargs) as client:

            async def fetch(name: str) -> str | None:
                try:
                    secret = await client.get_secret(name)
                except ResourceNotFoundError:
                    return None
                return secret.value

            values = await asyncio.gather(*(fetch(name) for name in SECRET_SETTINGS))
    finally:
        if own_credential:
            await credential.close()
    update: dict[str, Any] = {}
    missing: list[str] = []
    for (name, setting), value in zip(SECRET_SETTINGS.items(), values, strict=True):
        if value is None:
            missing.append(name)
            continue
        field = setting.lower()
        update[field] = SecretStr(value) if _is_secret_field(field) else value
    if missing:
        log.info("Key Vault has no secret named %s; those settings keep their values", ", ".join(missing))
    log.info("loaded %d settings from Key Vault: %s", len(update), ", ".join(sorted(f.upper() for f in update)))
    return settings.model_copy(update=update)


def _is_secret_field(field: str) -> bool:
    return "SecretStr" in str(Settings.model_fields[field].annotation)


def unresolved_references(settings: Settings) -> list[str]:
    """Settings that still hold an unresolved `@Microsoft.KeyVault(...)` reference (names only)."""
    names: list[str] = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and value.strip().startswith(KEY_VAULT_REFERENCE):
            names.append(field.upper())
    return names


def reference_problems(settings: Settings) -> list[str]:
    return [
        f"{name}: holds an unresolved Key Vault reference (check the app's identity and access to the vault)"
        for name in unresolved_references(settings)
    ]
