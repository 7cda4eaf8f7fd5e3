"""Token attacks against the real verifiers (PyJWT, a local JWKS server, locally made RSA keys):
each is a 401 over HTTP with a generic message; valid Entra v1/v2 and service tokens pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from shared.auth.authenticator import BearerAuthenticator, InsecureConfiguration, check_auth_settings
from shared.auth.base import Role
from shared.auth.entra import EntraVerifier
from shared.auth.service_tokens import ServiceTokens
from shared.cli import COMMANDS, build_parser
from shared.config import Settings
from shared.errors import AuthenticationFailed
from tests.plugins.auth_tokens import (
    ENTRA_CLIENT_ID,
    ENTRA_TENANT,
    OTHER_TENANT,
    PUBLISHED_KID,
    V1_ISSUER,
    V2_ISSUER,
    JwksServer,
    bearer,
)

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "temperature": 0}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes] | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def entra_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": V2_ISSUER,
        "aud": ENTRA_CLIENT_ID,
        "tid": ENTRA_TENANT,
        "sub": "attacker",
        "roles": [Role.INVOKE.value, Role.ADMIN.value, Role.OPS.value],
        "exp": now + 3600,
        "nbf": now,
        "iat": now,
    }
    claims.update(over)
    return claims


def service_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "llm-router",
        "aud": "llm-router",
        "tenant": "acme",
        "roles": [Role.INVOKE.value],
        "exp": now + 3600,
        "iat": now,
    }
    claims.update(over)
    return claims


def tamper_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0xFF
    return f"{head}.{payload}.{b64(bytes(raw))}"


def tamper_payload(token: str, **over: Any) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(over)
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


@pytest.fixture
def attacks(
    entra_token: Callable[..., str], mint: Callable[..., str], rsa_keys: dict[str, Any], jwt_secret: str
) -> dict[str, str]:
    public_pem = (
        rsa_keys["published"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())

    def hs256_with(key: bytes) -> Callable[[bytes], bytes]:
        return lambda data: hmac.new(key, data, hashlib.sha256).digest()

    return {
        "alg_none_entra": hand_made({"alg": "none", "typ": "JWT", "kid": PUBLISHED_KID}, entra_claims(), None),
        "alg_none_service": hand_made({"alg": "none", "typ": "JWT"}, service_claims(), None),
        "alg_None_case": hand_made({"alg": "None", "typ": "JWT"}, service_claims(), None),
        "hs256_signed_with_rsa_public_key_entra_iss": hand_made(
            {"alg": "HS256", "typ": "JWT", "kid": PUBLISHED_KID}, entra_claims(), hs256_with(public_pem)
        ),
        "hs256_signed_with_rsa_public_key_service_iss": hand_made(
            {"alg": "HS256", "typ": "JWT"}, service_claims(), hs256_with(public_pem)
        ),
        "rs256_header_on_service_token": hand_made(
            {"alg": "RS256", "typ": "JWT"}, service_claims(), hs256_with(jwt_secret.encode())
        ),
        "expired_entra": entra_token(exp=now - 3600, nbf=now - 7200, iat=now - 7200),
        "expired_service": mint("acme", [Role.INVOKE.value], exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "nbf_future_entra": entra_token(nbf=now + 3600),
        "nbf_future_service": mint("acme", [Role.INVOKE.value], nbf=now + 3600),
        "wrong_aud_entra": entra_token(aud="api://some-other-app"),
        "wrong_aud_service": mint("acme", [Role.INVOKE.value], aud="another-service"),
        "wrong_iss_entra": entra_token(iss="https://login.example.net/evil/v2.0"),
        "wrong_iss_service": mint("acme", [Role.INVOKE.value], iss="someone-else"),
        "tampered_signature_entra": tamper_signature(entra_token()),
        "tampered_signature_service": tamper_signature(mint("acme", [Role.INVOKE.value])),
        "tampered_payload_entra": tamper_payload(entra_token(roles=[]), roles=[Role.INVOKE.value]),
        "tampered_payload_service": tamper_payload(mint("acme", []), roles=[Role.INVOKE.value]),
        "missing_kid": entra_token(kid=None),
        "unknown_kid": entra_token(key="unpublished", kid="rotated-away"),
        "published_kid_wrong_key": entra_token(key="unpublished"),
        "other_azure_tenant": entra_token(
            iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0", tid=OTHER_TENANT
        ),
        "other_azure_tenant_v1": entra_token(version="v1", iss=f"https://sts.windows.net/{OTHER_TENANT}/"),
        "our_issuer_other_tid": entra_token(tid=OTHER_TENANT),
        "missing_exp_entra": entra_token(exp=None),
        "missing_aud_service": mint("acme", [Role.INVOKE.value], aud=None),
        "missing_tenant_service": mint("", [Role.INVOKE.value]),
        "not_a_jwt": "definitely-not-a-token",
        "garbage_segments": "a.b.c",
    }


ATTACK_NAMES = [
    "alg_none_entra",
    "alg_none_service",
    "alg_None_case",
    "hs256_signed_with_rsa_public_key_entra_iss",
    "hs256_signed_with_rsa_public_key_service_iss",
    "rs256_header_on_service_token",
    "expired_entra",
    "expired_service",
    "nbf_future_entra",
    "nbf_future_service",
    "wrong_aud_entra",
    "wrong_aud_service",
    "wrong_iss_entra",
    "wrong_iss_service",
    "tampered_signature_entra",
    "tampered_signature_service",
    "tampered_payload_entra",
    "tampered_payload_service",
    "missing_kid",
    "unknown_kid",
    "published_kid_wrong_key",
    "other_azure_tenant",
    "other_azure_tenant_v1",
    "our_issuer_other_tid",
    "missing_exp_entra",
    "missing_aud_service",
    "missing_tenant_service",
    "not_a_jwt",
    "garbage_segments",
]


@pytest.mark.parametrize("name", ATTACK_NAMES)
async def test_attack_is_401(name: str, attacks: dict[str, str], auth_client: httpx.AsyncClient) -> None:
    token = attacks[name]
    r = await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(token))
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert err["type"] == "authentication_error"
    assert err["message"] == "A valid bearer token is required."
    assert token not in r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_every_attack_is_tested(attacks: dict[str, str]) -> None:
    assert set(attacks) == set(ATTACK_NAMES)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer " + "a" * 20_000]
)
async def test_malformed_authorization_header_is_401(
    header: str | None, authenticator: BearerAuthenticator, auth_client: httpx.AsyncClient
) -> None:
    with pytest.raises(AuthenticationFailed):
        await authenticator.authenticate(header)
    headers = {"authorization": header} if header is not None else {}
    r = await auth_client.post("/api/v1/route", json=CHAT, headers=headers)
    assert r.status_code == 401


async def test_unknown_kid_refreshes_jwks_at_most_once(
    authenticator: BearerAuthenticator, entra_token: Callable[..., str], jwks_server: JwksServer
) -> None:
    principal = await authenticator.authenticate("Bearer " + entra_token())
    assert principal.tenant == ENTRA_TENANT
    hits_after_first = jwks_server.hits
    assert hits_after_first == 1
    for i in range(25):
        with pytest.raises(AuthenticationFailed):
            await authenticator.authenticate("Bearer " + entra_token(key="unpublished", kid=f"unknown-{i}"))
    assert jwks_server.hits <= hits_after_first + 1
    # the cached keys still serve valid tokens without another fetch
    await authenticator.authenticate("Bearer " + entra_token())
    assert jwks_server.hits <= hits_after_first + 1


async def test_unknown_kid_flood_on_cold_cache_fetches_once(
    authenticator: BearerAuthenticator, entra_token: Callable[..., str], jwks_server: JwksServer
) -> None:
    for i in range(25):
        with pytest.raises(AuthenticationFailed):
            await authenticator.authenticate("Bearer " + entra_token(key="unpublished", kid=f"cold-{i}"))
    assert 1 <= jwks_server.hits <= 2


async def test_rotated_key_is_picked_up_after_the_cooldown(
    jwks_server: JwksServer, entra_token: Callable[..., str], rsa_keys: dict[str, Any]
) -> None:
    verifier = EntraVerifier(
        tenant_id=ENTRA_TENANT, client_id=ENTRA_CLIENT_ID, authority_host=jwks_server.url, refresh_cooldown_s=0.2
    )
    auth = BearerAuthenticator(entra=verifier)
    await auth.authenticate("Bearer " + entra_token())
    jwks_server.keys = {**jwks_server.keys, "new-key": rsa_keys["unpublished"]}
    rotated = entra_token(key="unpublished", kid="new-key")
    principal = None
    for _ in range(40):  # bounded: the cooldown is 0.2 s
        try:
            principal = await auth.authenticate("Bearer " + rotated)
            break
        except AuthenticationFailed:
            time.sleep(0.05)
    assert principal is not None and principal.tenant == ENTRA_TENANT
    assert jwks_server.hits >= 2


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_valid_entra_tokens_pass(
    version: str, authenticator: BearerAuthenticator, entra_token: Callable[..., str], auth_client: httpx.AsyncClient
) -> None:
    token = entra_token([Role.INVOKE.value], version=version)
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal.tenant == ENTRA_TENANT
    assert principal.roles == frozenset({Role.INVOKE.value})
    assert principal.issuer == (V1_ISSUER if version == "v1" else V2_ISSUER)
    r = await auth_client.post("/api/v1/route", json=CHAT, headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_entra_accepts_app_id_uri_and_clock_skew_within_leeway(
    authenticator: BearerAuthenticator, entra_token: Callable[..., str]
) -> None:
    now = int(time.time())
    token = entra_token(aud=f"api://{ENTRA_CLIENT_ID}", exp=now - 30, nbf=now + 30)
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal.tenant == ENTRA_TENANT


async def test_custom_app_id_uri(jwks_server: JwksServer, entra_token: Callable[..., str]) -> None:
    verifier = EntraVerifier(
        tenant_id=ENTRA_TENANT,
        client_id=ENTRA_CLIENT_ID,
        app_id_uri="api://llm-router.contoso",
        authority_host=jwks_server.url,
    )
    auth = BearerAuthenticator(entra=verifier)
    assert (await auth.authenticate("Bearer " + entra_token(aud="api://llm-router.contoso"))).tenant == ENTRA_TENANT
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate("Bearer " + entra_token(aud=f"api://{ENTRA_CLIENT_ID}"))


async def test_valid_service_token_passes(
    mint: Callable[..., str], authenticator: BearerAuthenticator, auth_client: httpx.AsyncClient
) -> None:
    token = mint("acme", [Role.INVOKE.value, Role.OPS.value])
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal.tenant == "acme"
    assert principal.roles == frozenset({Role.INVOKE.value, Role.OPS.value})
    r = await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_expired_beyond_leeway_fails_but_inside_passes(
    service_tokens: ServiceTokens, authenticator: BearerAuthenticator
) -> None:
    now = int(time.time())
    inside = service_tokens.mint("acme", [Role.INVOKE.value], exp=now - 10)
    assert (await authenticator.authenticate(f"Bearer {inside}")).tenant == "acme"
    outside = service_tokens.mint("acme", [Role.INVOKE.value], exp=now - 120)
    with pytest.raises(AuthenticationFailed):
        await authenticator.authenticate(f"Bearer {outside}")


def test_cli_token_command_mints_a_verifiable_token(
    capsys: pytest.CaptureFixture[str], jwt_secret: str, service_tokens: ServiceTokens
) -> None:
    settings = Settings(jwt_secret=SecretStr(jwt_secret))
    args = build_parser().parse_args(["token", "--tenant", "contoso", "--role", "admin", "--ttl", "2h"])
    assert COMMANDS["token"](args, settings) == 0
    token = capsys.readouterr().out.strip()
    principal = service_tokens.verify(token)
    assert principal.tenant == "contoso"
    assert principal.roles == frozenset({Role.ADMIN.value})
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 7200


@pytest.mark.parametrize("ttl", ["0", "-5m", "soon"])
def test_cli_token_rejects_bad_ttl(ttl: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["token", "--tenant", "t", "--role", "invoke", "--ttl", ttl])


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({"auth_enabled": False}, False),
        ({"jwt_secret": SecretStr("short-secret")}, False),
        ({"jwt_secret": SecretStr("x" * 31)}, False),
        ({"jwt_secret": None}, False),
        ({"jwt_secret": SecretStr("x" * 32)}, True),
        ({"jwt_secret": None, "azure_tenant_id": ENTRA_TENANT, "azure_client_id": ENTRA_CLIENT_ID}, True),
    ],
)
def test_production_guard(overrides: dict[str, Any], ok: bool) -> None:
    base = Settings(environment="production", auth_enabled=True, jwt_secret=SecretStr("y" * 48))
    settings = base.model_copy(update=overrides)
    if ok:
        check_auth_settings(settings)
    else:
        with pytest.raises(InsecureConfiguration) as err:
            check_auth_settings(settings)
        assert "short-secret" not in str(err.value)


def test_development_allows_auth_disabled() -> None:
    check_auth_settings(Settings(environment="development", auth_enabled=False))


async def test_production_bootstrap_refuses_to_start(tmp_path: Any) -> None:
    from shared.composition.backends import build_services

    settings = Settings(
        environment="production", auth_enabled=False, embedded_data_dir=tmp_path, database_enabled=False
    )
    with pytest.raises(InsecureConfiguration):
        await build_services(settings)
