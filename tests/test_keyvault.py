"""Key Vault: the real SecretClient (aio) against a local fake vault over TLS; unresolved
`@Microsoft.KeyVault(...)` references fail readiness naming the setting, never its value; the
Google credentials secret is handed to google-auth in memory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from shared.auth.authenticator import BearerAuthenticator
from shared.composition.assemble import Parts
from shared.composition.backends import wire_auth
from shared.config import Settings
from shared.keyvault import SECRET_SETTINGS, load_secrets, unresolved_references
from tests.fakes.keyvault import ACCESS_TOKEN, FakeKeyVault, StaticTokenCredential, TlsServerThread, self_signed_cert
from tests.plugins.auth_tokens import asgi_client

VAULT_SECRETS = {
    "llm-router-database-url": "postgresql://router:db-pass-51c2@db.example:5432/router",
    "llm-router-redis-url": "rediss://:redis-pass-9a7e@cache.example:6380/0",
    "llm-router-jwt-secret": "jwt-secret-from-the-vault-0123456789abcdef",
    "WEAVIATE-API-KEY": "weaviate-key-44ee",
    "llm-router-weaviate-url": "https://weaviate.example",
    "llm-router-azure-client-secret": "client-secret-7b7b",
    "llm-router-service-bus-connection-string": "Endpoint=sb://bus.example/;SharedAccessKeyName=k;SharedAccessKey=sb-3f3f",
    "llm-router-applicationinsights-connection-string": "InstrumentationKey=ai-1234",
}


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKeyVault, Path]]:
    cert, key = self_signed_cert(tmp_path_factory.mktemp("kv-tls"))
    fake = FakeKeyVault()
    with TlsServerThread(fake.app, cert, key) as server:
        fake.url = server.url
        yield fake, cert


@pytest.fixture
def fake_vault(vault: tuple[FakeKeyVault, Path]) -> tuple[FakeKeyVault, Path]:
    fake, cert = vault
    fake.secrets = dict(VAULT_SECRETS)
    fake.requests.clear()
    return fake, cert


async def load(settings: Settings, cert: Path) -> Settings:
    return await load_secrets(
        settings, StaticTokenCredential(), verify_challenge_resource=False, connection_verify=str(cert)
    )


async def test_secrets_are_loaded_into_settings(fake_vault: tuple[FakeKeyVault, Path]) -> None:
    fake, cert = fake_vault
    before = Settings(key_vault_url=fake.url, weaviate_url="http://old.example")
    after = await load(before, cert)
    assert after is not before
    assert after.database_url == SecretStr(VAULT_SECRETS["llm-router-database-url"])
    assert after.redis_url == SecretStr(VAULT_SECRETS["llm-router-redis-url"])
    assert after.jwt_secret == SecretStr(VAULT_SECRETS["llm-router-jwt-secret"])
    assert after.weaviate_api_key == SecretStr(VAULT_SECRETS["WEAVIATE-API-KEY"])
    assert after.weaviate_url == "https://weaviate.example"  # a plain string setting
    assert after.azure_client_secret == SecretStr(VAULT_SECRETS["llm-router-azure-client-secret"])
    assert isinstance(after.service_bus_connection_string, SecretStr)
    assert isinstance(after.applicationinsights_connection_string, SecretStr)
    assert before.weaviate_url == "http://old.example"  # the original is untouched
    # the SDK's challenge flow: first an unauthenticated request, then the bearer token
    assert fake.requests[0]["authorization"] is None
    assert any(r["authorization"] == f"Bearer {ACCESS_TOKEN}" for r in fake.requests)
    assert all("api-version" in r["query"] for r in fake.requests)
    asked = {r["path"].split("/")[2] for r in fake.requests}
    assert asked == set(SECRET_SETTINGS)


async def test_missing_secret_keeps_the_setting(fake_vault: tuple[FakeKeyVault, Path]) -> None:
    fake, cert = fake_vault
    del fake.secrets["llm-router-redis-url"]
    before = Settings(key_vault_url=fake.url, redis_url=SecretStr("redis://local:6379/0"))
    after = await load(before, cert)
    assert after.redis_url == SecretStr("redis://local:6379/0")
    assert after.google_application_credentials_json is None
    assert after.database_url is not None


async def test_without_key_vault_url_nothing_is_fetched() -> None:
    s = Settings(key_vault_url=None)
    assert await load_secrets(s) is s


async def test_every_guide_secret_maps_to_a_setting() -> None:
    for setting in SECRET_SETTINGS.values():
        assert setting.lower() in Settings.model_fields, setting


def test_unresolved_references_are_named() -> None:
    ref = "@Microsoft.KeyVault(SecretUri=https://kv-router.vault.azure.net/secrets/llm-router-database-url/)"
    s = Settings(
        database_url=SecretStr(ref),
        weaviate_url="@Microsoft.KeyVault(VaultName=kv-router;SecretName=llm-router-weaviate-url)",
        jwt_secret=SecretStr("a-real-secret-that-is-long-enough-0123456789"),
    )
    assert unresolved_references(s) == ["DATABASE_URL", "WEAVIATE_URL"]
    assert unresolved_references(Settings()) == []


async def test_unresolved_reference_fails_readiness_naming_the_setting(
    ctx: Any, make_context: Callable[..., Any], settings: Settings, jwt_secret: str
) -> None:
    ref = "@Microsoft.KeyVault(SecretUri=https://kv-router.vault.azure.net/secrets/WEAVIATE-API-KEY/abc123)"
    s = settings.model_copy(
        update={"auth_enabled": True, "jwt_secret": SecretStr(jwt_secret), "weaviate_api_key": SecretStr(ref)}
    )
    parts = Parts()
    await wire_auth(s, parts)
    assert isinstance(parts.authenticator, BearerAuthenticator)
    await make_context(settings=s, parts=parts)
    async with asgi_client() as client:
        r = await client.get("/health/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "down"
    assert any(p.startswith("WEAVIATE_API_KEY:") for p in body["problems"])
    assert "kv-router" not in r.text and "abc123" not in r.text and "SecretUri" not in r.text


# --- Vertex AI credentials from the vault, in memory -------------------------------------------


def service_account_json() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "router-test",
            "private_key_id": "k1",
            "private_key": pem.decode(),
            "client_email": "router@router-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


async def test_google_credentials_from_the_vault_stay_in_memory(
    fake_vault: tuple[FakeKeyVault, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.providers.vertex_credentials import credentials_from_json

    fake, cert = fake_vault
    # (an external_account JSON is not loaded here: google-auth resolves its project at load
    # time, which means calls to the Azure metadata endpoint and Google STS)
    raw = service_account_json()
    fake.secrets["llm-router-google-application-credentials"] = raw
    monkeypatch.chdir(tmp_path)
    settings = await load(Settings(key_vault_url=fake.url), cert)
    secret = settings.google_application_credentials_json
    assert secret is not None and secret.get_secret_value() == raw
    creds = credentials_from_json(secret.get_secret_value())
    assert type(creds).__module__ == "google.oauth2.service_account"
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ
    assert list(tmp_path.iterdir()) == []  # nothing was written where the process runs
    assert raw not in repr(settings)


async def test_vault_over_the_wire_keeps_secrets_out_of_settings_repr(fake_vault: tuple[FakeKeyVault, Path]) -> None:
    fake, cert = fake_vault
    after = await load(Settings(key_vault_url=fake.url), cert)
    text = repr(after) + str(after.model_dump())
    for name, value in VAULT_SECRETS.items():
        if name != "llm-router-weaviate-url":
            assert value not in text, name
