"""Every HTTP endpoint of function_app.py x role: 401 without a token, 403 with a wrong role, let
through with the right one. Routes are read from the app itself, so a new endpoint without an
entry in ROLES fails here until someone decides who may call it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import function_app
from devtools.localhost import index_functions
from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.config import Settings
from tests.plugins.auth_tokens import asgi_client, bearer

ANONYMOUS = None

# (METHOD, route as in function_app.py) -> the role it needs (None: anonymous)
ROLES: dict[tuple[str, str], Role | None] = {
    ("POST", "api/v1/chat/completions"): Role.INVOKE,
    ("POST", "api/v1/route"): Role.INVOKE,
    ("GET", "api/v1/models"): Role.INVOKE,
    ("GET", "api/v1/health"): Role.OPS,
    ("GET", "health/live"): ANONYMOUS,
    ("GET", "health/ready"): ANONYMOUS,
    ("GET", "metrics"): Role.OPS,
    ("GET", "api/v1/openapi.json"): ANONYMOUS,
    ("POST", "api/v1/jobs"): Role.INVOKE,
    ("GET", "api/v1/jobs/{id}"): Role.INVOKE,
    ("POST", "api/v1/feedback"): Role.INVOKE,
    ("GET", "api/v1/usage"): Role.INVOKE,
    ("GET", "api/v1/examples"): Role.ADMIN,
    ("POST", "api/v1/examples"): Role.ADMIN,
    ("GET", "api/v1/judge/agreement"): Role.ADMIN,
}

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "temperature": 0}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "api/v1/chat/completions"): CHAT,
    ("POST", "api/v1/route"): CHAT,
    ("POST", "api/v1/jobs"): CHAT,
    ("POST", "api/v1/feedback"): {"request_id": "0" * 32, "score": 1.0},
    ("POST", "api/v1/examples"): {"examples": []},
}


def http_routes() -> list[tuple[str, str]]:
    return sorted(
        (m.upper(), route) for route, methods, _, _ in index_functions(function_app.app).http for m in methods
    )


ROUTES = http_routes()


def url(route: str) -> str:
    return "/" + route.replace("{id}", "0123456789abcdef0123456789abcdef")


async def call(client: httpx.AsyncClient, method: str, route: str, token: str | None) -> httpx.Response:
    headers = bearer(token) if token else {}
    return await client.request(method, url(route), json=BODIES.get((method, route)), headers=headers)


def test_every_route_has_a_role_decision() -> None:
    missing = [r for r in ROUTES if r not in ROLES]
    assert not missing, f"add these routes to ROLES (and shared/api/openapi.py OPERATIONS): {missing}"


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_without_token(method: str, route: str, auth_client: httpx.AsyncClient) -> None:
    role = ROLES.get((method, route), Role.INVOKE)
    r = await call(auth_client, method, route, None)
    if role is ANONYMOUS:
        assert r.status_code < 400 or route == "health/ready", r.text
    else:
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_wrong_roles_are_403(
    method: str, route: str, auth_client: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    needed = ROLES.get((method, route), Role.INVOKE)
    if needed is ANONYMOUS:
        pytest.skip("anonymous endpoint")
    for other in [r for r in Role if r != needed] + [None]:
        token = mint("acme", [other.value] if other else [])
        r = await call(auth_client, method, route, token)
        assert r.status_code == 403, (other, r.text)
        err = r.json()["error"]
        assert err["type"] == "permission_error"
        assert needed.value in err["message"]


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_right_role_is_let_through(
    method: str, route: str, auth_client: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    needed = ROLES.get((method, route), Role.INVOKE)
    roles = [needed.value] if needed else []
    r = await call(auth_client, method, route, mint("acme", roles))
    assert r.status_code not in (401, 403), r.text
    assert r.status_code != 500, r.text


async def test_health_endpoints_reveal_no_internals(
    auth_client: httpx.AsyncClient, upstream_url: str, jwt_secret: str
) -> None:
    live = await auth_client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = await auth_client.get("/health/ready")
    body = ready.json()
    assert set(body) == {"status", "problems"}
    text = ready.text
    for leak in (upstream_url, "127.0.0.1", jwt_secret, "Traceback", "latency_ms", "uptime"):
        assert leak not in text


async def test_detailed_health_needs_ops(auth_client: httpx.AsyncClient, mint: Callable[..., str]) -> None:
    r = await auth_client.get("/api/v1/health", headers=bearer(mint("acme", [Role.OPS.value])))
    assert r.status_code in (200, 503)
    assert "dependencies" in r.json()


async def test_metrics_public_when_configured(
    ctx: Any, make_context: Callable[..., Any], settings: Settings, authenticator: BearerAuthenticator, jwt_secret: str
) -> None:
    public = settings.model_copy(
        update={"auth_enabled": True, "jwt_secret": SecretStr(jwt_secret), "metrics_public": True}
    )
    await make_context(settings=public, authenticator=authenticator)
    async with asgi_client() as client:
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert "llm_router_" in r.text
        # the other endpoints still need a token
        assert (await client.get("/api/v1/models")).status_code == 401


async def test_metrics_need_ops_by_default(auth_client: httpx.AsyncClient, mint: Callable[..., str]) -> None:
    assert (await auth_client.get("/metrics")).status_code == 401
    r = await auth_client.get("/metrics", headers=bearer(mint("acme", [Role.OPS.value])))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
