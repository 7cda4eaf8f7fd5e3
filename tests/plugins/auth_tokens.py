"""pytest fixtures (plugin module, registered in tests/conftest.py): service tokens, locally made
RSA keys, a local JWKS server that looks like Entra ID's, and an app context with auth on."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.entra import EntraVerifier
from shared.auth.service_tokens import ServiceTokens
from shared.composition.services import Services
from shared.config import Settings
from tests.fakes.server import ServerThread

ENTRA_TENANT = "7f3c2a10-5b7e-4c1d-9a2e-3d4f5a6b7c8d"
OTHER_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ENTRA_CLIENT_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
V1_ISSUER = f"https://sts.windows.net/{ENTRA_TENANT}/"
V2_ISSUER = f"https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"
PUBLISHED_KID = "published-key"

Mint = Callable[..., str]


@dataclass
class JwksServer:
    """Serves `/{tenant}/discovery/v2.0/keys` like login.microsoftonline.com, counting fetches."""

    keys: dict[str, Any]  # kid -> RSA private key whose public half is published
    hits: int = 0
    url: str = ""
    tenants: set[str] = field(default_factory=lambda: {ENTRA_TENANT})

    def app(self) -> Starlette:
        async def keys(request: Request) -> Response:
            if request.path_params["tenant"] not in self.tenants:
                return JSONResponse({"error": "invalid_tenant"}, status_code=400)
            self.hits += 1
            out = []
            for kid, key in self.keys.items():
                jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                out.append({**jwk, "kid": kid, "use": "sig", "kty": "RSA", "alg": "RS256"})
            return JSONResponse({"keys": out})

        return Starlette(routes=[Route("/{tenant}/discovery/v2.0/keys", keys)])


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def service_tokens(jwt_secret: str) -> ServiceTokens:
    s = Settings()
    return ServiceTokens(jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience)


@pytest.fixture(scope="session")
def mint(service_tokens: ServiceTokens) -> Mint:
    """mint(tenant, roles, **claims) -> a valid service token."""

    def _mint(tenant: str, roles: list[str] | tuple[str, ...], **claims: Any) -> str:
        return service_tokens.mint(tenant, list(roles), **claims)

    return _mint


@pytest.fixture(scope="session")
def rsa_keys() -> dict[str, rsa.RSAPrivateKey]:
    """`published` is in the JWKS; `unpublished` signs tokens the JWKS cannot vouch for."""
    return {"published": rsa_key(), "unpublished": rsa_key()}


@pytest.fixture(scope="session")
def jwks_server_session(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[JwksServer]:
    fake = JwksServer(keys={PUBLISHED_KID: rsa_keys["published"]})
    with ServerThread(fake.app()) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def jwks_server(jwks_server_session: JwksServer, rsa_keys: dict[str, rsa.RSAPrivateKey]) -> JwksServer:
    jwks_server_session.keys = {PUBLISHED_KID: rsa_keys["published"]}
    jwks_server_session.hits = 0
    return jwks_server_session


@pytest.fixture
def entra_verifier(jwks_server: JwksServer) -> EntraVerifier:
    """A fresh verifier per test (its own key cache), pointed at the local JWKS server."""
    return EntraVerifier(tenant_id=ENTRA_TENANT, client_id=ENTRA_CLIENT_ID, authority_host=jwks_server.url)


@pytest.fixture
def entra_token(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> Callable[..., str]:
    """entra_token(roles=[...], version='v2', key='published', kid=PUBLISHED_KID, headers=None, **claims)."""

    def _token(
        roles: list[str] | None = None,
        *,
        version: str = "v2",
        key: str = "published",
        kid: str | None = PUBLISHED_KID,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": V2_ISSUER if version == "v2" else V1_ISSUER,
            "aud": ENTRA_CLIENT_ID if version == "v2" else f"api://{ENTRA_CLIENT_ID}",
            "tid": ENTRA_TENANT,
            "oid": str(uuid.uuid4()),
            "sub": "entra-subject",
            "roles": roles if roles is not None else ["LLMRouter.Invoke"],
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "ver": "2.0" if version == "v2" else "1.0",
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        hdr = dict(headers or {})
        if kid is not None:
            hdr["kid"] = kid
        return jwt.encode(payload, rsa_keys[key], algorithm="RS256", headers=hdr)

    return _token


@pytest.fixture
def authenticator(service_tokens: ServiceTokens, entra_verifier: EntraVerifier) -> BearerAuthenticator:
    return BearerAuthenticator(service_tokens, entra_verifier)


@pytest.fixture
def auth_settings(settings: Settings, jwt_secret: str) -> Settings:
    return settings.model_copy(update={"auth_enabled": True, "jwt_secret": SecretStr(jwt_secret)})


@pytest.fixture
async def auth_ctx(
    ctx: Services, make_context: Callable[..., Any], auth_settings: Settings, authenticator: BearerAuthenticator
) -> Services:
    """The process context with auth on (built after the default `ctx`, so it is the one installed)."""
    built: Services = await make_context(settings=auth_settings, authenticator=authenticator)
    return built


def asgi_client() -> httpx.AsyncClient:
    import function_app
    from devtools.localhost import build_app
    from shared.queue.local import LocalBus

    app = build_app(function_app.app, bus=LocalBus(), timers=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router.test")


@pytest.fixture
async def auth_client(auth_ctx: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client() as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
