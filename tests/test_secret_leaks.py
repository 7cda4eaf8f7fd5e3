"""No secret value reaches the logs: every record of every logger (DEBUG and up) is captured and
formatted with the app's JSON formatter while requests run with secrets set, while
authentication fails, and while secrets are loaded from (fake) Key Vault."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.auth.base import Role
from shared.composition.assemble import Parts
from shared.composition.backends import wire_auth
from shared.config import Settings
from shared.keyvault import load_secrets
from shared.telemetry import JsonFormatter
from tests.fakes.keyvault import ACCESS_TOKEN, FakeKeyVault, StaticTokenCredential, TlsServerThread, self_signed_cert
from tests.fakes.openai_upstream import FakeOpenAI
from tests.plugins.auth_tokens import asgi_client, bearer

DB_PASSWORD = "db-pw-Zq81xx"
REDIS_PASSWORD = "redis-pw-Lk22yy"
WEAVIATE_KEY = "weaviate-key-Pp93zz"
CLIENT_SECRET = "client-secret-Mm47ww"
SB_KEY = "sb-key-Tt55vv"
AI_KEY = "ai-key-Rr66uu"

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "temperature": 0}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter_ = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter_.format(record))
        self.lines.append(repr(record.args))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # the SDKs are quiet by default in production; here every logger talks at DEBUG
    noisy = {name: logging.getLogger(name).level for name in ("azure", "httpx", "httpcore", "urllib3", "shared")}
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for name, level in noisy.items():
            logging.getLogger(name).setLevel(level)


def secret_settings(settings: Settings, jwt_secret: str) -> Settings:
    return settings.model_copy(
        update={
            "auth_enabled": True,
            "jwt_secret": SecretStr(jwt_secret),
            "database_url": SecretStr(f"postgresql://router:{DB_PASSWORD}@127.0.0.1:1/router"),
            "weaviate_api_key": SecretStr(WEAVIATE_KEY),
            "azure_client_secret": SecretStr(CLIENT_SECRET),
            "service_bus_connection_string": SecretStr(
                f"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey={SB_KEY}"
            ),
            "applicationinsights_connection_string": SecretStr(f"InstrumentationKey={AI_KEY}"),
        }
    )


def assert_clean(text: str, *secrets: str) -> None:
    assert text, "nothing was captured: the check would be empty"
    for secret in secrets:
        assert secret not in text


async def test_requests_and_failed_auth_log_no_secret(
    captured: Capture,
    ctx: Any,
    make_context: Callable[..., Any],
    settings: Settings,
    jwt_secret: str,
    authenticator: Any,
    mint: Callable[..., str],
    entra_token: Callable[..., str],
    fake_openai: FakeOpenAI,
) -> None:
    s = secret_settings(settings, jwt_secret)
    parts = Parts()
    await wire_auth(s, parts)
    parts.authenticator = authenticator
    await make_context(settings=s, parts=parts)
    good = mint("acme", [Role.INVOKE.value, Role.OPS.value])
    entra = entra_token([Role.INVOKE.value])
    expired = mint("acme", [Role.INVOKE.value], exp=1)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    fake_openai.push("big-upstream", "500", "500")
    async with asgi_client() as client:
        await client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(good))
        await client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(entra))
        await client.post("/api/v1/chat/completions", json={**CHAT, "stream": True}, headers=bearer(good))
        for token in (expired, forged, "not-a-token", good + "x"):
            r = await client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(token))
            assert r.status_code == 401
        await client.post("/api/v1/route", content=b"{not json", headers=bearer(good))
        await client.get("/api/v1/health", headers=bearer(good))
        await client.get("/health/ready")
        await client.get("/metrics", headers=bearer(good))
    assert_clean(
        captured.text,
        jwt_secret,
        good,
        entra,
        expired,
        forged,
        DB_PASSWORD,
        WEAVIATE_KEY,
        CLIENT_SECRET,
        SB_KEY,
        AI_KEY,
    )


async def test_key_vault_loading_logs_no_secret(captured: Capture, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    fake = FakeKeyVault(
        {
            "llm-router-database-url": f"postgresql://router:{DB_PASSWORD}@db/router",
            "llm-router-redis-url": f"rediss://:{REDIS_PASSWORD}@cache:6380/0",
            "WEAVIATE-API-KEY": WEAVIATE_KEY,
            "llm-router-azure-client-secret": CLIENT_SECRET,
        }
    )
    with TlsServerThread(fake.app, cert, key) as server:
        fake.url = server.url
        loaded = await load_secrets(
            Settings(key_vault_url=server.url),
            StaticTokenCredential(),
            verify_challenge_resource=False,
            connection_verify=str(cert),
            logging_enable=True,  # asked for the SDK's body tracing: load_secrets must refuse it
        )
    assert loaded.weaviate_api_key == SecretStr(WEAVIATE_KEY)
    assert "Key Vault" in captured.text
    assert_clean(captured.text, DB_PASSWORD, REDIS_PASSWORD, WEAVIATE_KEY, CLIENT_SECRET, ACCESS_TOKEN)


def test_settings_repr_hides_secrets(jwt_secret: str, settings: Settings) -> None:
    s = secret_settings(settings, jwt_secret)
    text = repr(s) + str(s)
    assert_clean(text, jwt_secret, DB_PASSWORD, WEAVIATE_KEY, CLIENT_SECRET, SB_KEY, AI_KEY)
