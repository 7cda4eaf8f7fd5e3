"""One tenant never sees another's cached answers, jobs, usage, feedback or examples.

The tenant comes from the token (`tenant` for service tokens, `tid` for Entra ID). Cache
isolation runs everywhere; jobs, usage and feedback run against the production wiring
(composition.backends.wire_store / wire_jobs) when the test database fixture is there, and each part
skips naming what it waits for otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import function_app
from devtools.localhost import index_functions
from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.cache.keys import response_cache_key
from shared.config import Settings
from shared.schemas import ChatCompletionRequest
from tests.fakes.openai_upstream import FakeOpenAI
from tests.plugins.auth_tokens import ENTRA_TENANT, asgi_client, bearer

CHAT = {"model": "small", "messages": [{"role": "user", "content": "what is the capital of France"}], "temperature": 0}


def has_route(method: str, route: str) -> bool:
    return any(r == route and method in m for r, m, _, _ in index_functions(function_app.app).http)


def test_cache_keys_differ_per_tenant() -> None:
    req = ChatCompletionRequest.model_validate(CHAT)
    assert response_cache_key(req, "acme") != response_cache_key(req, "globex")
    assert response_cache_key(req, "acme") == response_cache_key(req, "acme")


async def test_deterministic_request_never_shares_a_cache_entry(
    auth_client: httpx.AsyncClient,
    mint: Callable[..., str],
    entra_token: Callable[..., str],
    fake_openai: FakeOpenAI,
) -> None:
    acme = bearer(mint("acme", [Role.INVOKE.value]))
    globex = bearer(mint("globex", [Role.INVOKE.value]))
    first = await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=acme)
    assert first.status_code == 200
    assert first.headers["x-router-cache"] == "miss"
    again = await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=acme)
    assert again.headers["x-router-cache"] == "hit"  # the cache works within a tenant
    other = await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=globex)
    assert other.status_code == 200
    assert other.headers["x-router-cache"] == "miss"
    # an Entra ID caller is scoped by its tid, which is neither of the above
    entra = await auth_client.post(
        "/api/v1/chat/completions", json=CHAT, headers=bearer(entra_token([Role.INVOKE.value]))
    )
    assert entra.headers["x-router-cache"] == "miss"
    assert len(fake_openai.calls("small-upstream")) == 3


async def test_cached_stream_is_not_shared_either(
    auth_client: httpx.AsyncClient, mint: Callable[..., str], fake_openai: FakeOpenAI
) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "stream me a fact"}]}
    acme = bearer(mint("acme", [Role.INVOKE.value]))
    await auth_client.post("/api/v1/chat/completions", json=body, headers=acme)
    r = await auth_client.post(
        "/api/v1/chat/completions", json={**body, "stream": True}, headers=bearer(mint("globex", [Role.INVOKE.value]))
    )
    assert r.status_code == 200
    assert r.headers["x-router-cache"] != "hit"


async def test_request_log_rows_carry_the_token_tenant(
    auth_client: httpx.AsyncClient, auth_ctx: Any, mint: Callable[..., str], entra_token: Callable[..., str]
) -> None:
    await auth_client.post("/api/v1/route", json=CHAT, headers=bearer(mint("acme", [Role.INVOKE.value])))
    await auth_client.post("/api/v1/chat/completions", json=CHAT, headers=bearer(mint("acme", [Role.INVOKE.value])))
    await auth_client.post(
        "/api/v1/chat/completions", json=CHAT, headers=bearer(entra_token([Role.INVOKE.value], tenant="acme"))
    )
    tenants = [row.tenant for row in auth_ctx.request_log.rows]
    assert tenants == ["acme", ENTRA_TENANT]  # a `tenant` claim in an Entra token changes nothing


# --- parts that need the database: the production wiring with the test database -------------


@pytest.fixture
async def db_client(
    request: pytest.FixtureRequest,
    ctx: Any,
    make_context: Callable[..., Any],
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    try:
        database_url = request.getfixturevalue("pg_url")
    except pytest.FixtureLookupError:
        pytest.skip("waits for the pg_url fixture (tests/plugins/databases.py)")
    from pydantic import SecretStr

    from shared.composition.assemble import Parts
    from shared.composition.backends import wire_jobs, wire_store
    from shared.index.local import LocalIndex

    settings = auth_settings.model_copy(update={"database_enabled": True, "database_url": SecretStr(str(database_url))})
    parts = Parts()
    db = await wire_store(settings, parts)
    await wire_jobs(settings, parts, db)
    # an index of its own: examples added here must not land in the session's starter index
    parts.index = LocalIndex(ctx.encoder.dim)
    built = await make_context(settings=settings, authenticator=authenticator, parts=parts)
    async with asgi_client() as c:
        yield c, built


async def test_jobs_of_another_tenant_answer_404(
    db_client: tuple[httpx.AsyncClient, Any], mint: Callable[..., str]
) -> None:
    if not has_route("POST", "api/v1/jobs"):
        pytest.skip("waits for POST /api/v1/jobs")
    client, _ = db_client
    acme = bearer(mint("acme", [Role.INVOKE.value]))
    globex = bearer(mint("globex", [Role.INVOKE.value]))
    r = await client.post("/api/v1/jobs", json=CHAT, headers=acme)
    if r.status_code == 503:
        pytest.skip(f"jobs are not wired yet: {r.json()['error']['message']}")
    assert r.status_code in (200, 201, 202), r.text
    job_id = r.json()["id"]
    mine = await client.get(f"/api/v1/jobs/{job_id}", headers=acme)
    assert mine.status_code == 200, mine.text
    theirs = await client.get(f"/api/v1/jobs/{job_id}", headers=globex)
    assert theirs.status_code == 404, theirs.text  # 404, not 403: existence is not revealed
    assert theirs.json()["error"]["code"] in ("not_found", "job_not_found")


async def test_usage_is_per_tenant_and_platform_admin_sees_all(
    db_client: tuple[httpx.AsyncClient, Any], mint: Callable[..., str]
) -> None:
    if not has_route("GET", "api/v1/usage"):
        pytest.skip("waits for GET /api/v1/usage")
    client, built = db_client
    acme = bearer(mint("acme", [Role.INVOKE.value]))
    globex = bearer(mint("globex", [Role.INVOKE.value]))
    globex_admin = bearer(mint("globex", [Role.INVOKE.value, Role.ADMIN.value]))
    admin = bearer(mint("ops-team", [Role.INVOKE.value, Role.PLATFORM_ADMIN.value]))
    assert (await client.post("/api/v1/chat/completions", json=CHAT, headers=acme)).status_code == 200
    flush = getattr(built.request_log, "flush", None)
    if flush is not None:
        await flush()
    own = await client.get("/api/v1/usage?group_by=tenant", headers=acme)
    assert own.status_code == 200, own.text
    assert "acme" in own.text
    other = await client.get("/api/v1/usage?group_by=tenant", headers=globex)
    assert other.status_code == 200, other.text
    assert "acme" not in other.text
    peek = await client.get("/api/v1/usage?tenant=acme", headers=globex)
    assert peek.status_code == 403
    # a tenant's Admin sees its own tenant only
    tenant_admin = await client.get("/api/v1/usage?group_by=tenant", headers=globex_admin)
    assert tenant_admin.status_code == 200 and "acme" not in tenant_admin.text
    assert (await client.get("/api/v1/usage?tenant=acme", headers=globex_admin)).status_code == 403
    everyone = await client.get("/api/v1/usage?group_by=tenant", headers=admin)
    assert everyone.status_code == 200
    assert "acme" in everyone.text


async def test_feedback_on_another_tenants_request_is_refused(
    db_client: tuple[httpx.AsyncClient, Any], mint: Callable[..., str]
) -> None:
    if not has_route("POST", "api/v1/feedback"):
        pytest.skip("waits for POST /api/v1/feedback")
    client, built = db_client
    acme = bearer(mint("acme", [Role.INVOKE.value]))
    globex = bearer(mint("globex", [Role.INVOKE.value]))
    answer = await client.post("/api/v1/chat/completions", json=CHAT, headers=acme)
    request_id = answer.headers["x-request-id"]
    flush = getattr(built.request_log, "flush", None)
    if flush is not None:
        await flush()
    theirs = await client.post("/api/v1/feedback", json={"request_id": request_id, "score": 0.0}, headers=globex)
    assert theirs.status_code == 404, theirs.text
    mine = await client.post("/api/v1/feedback", json={"request_id": request_id, "score": 1.0}, headers=acme)
    assert mine.status_code in (200, 201, 202), mine.text


async def test_examples_are_per_tenant(db_client: tuple[httpx.AsyncClient, Any], mint: Callable[..., str]) -> None:
    if not (has_route("GET", "api/v1/examples") and has_route("POST", "api/v1/examples")):
        pytest.skip("waits for GET/POST /api/v1/examples")
    client, _ = db_client
    acme_admin = bearer(mint("acme", [Role.INVOKE.value, Role.ADMIN.value]))
    globex_admin = bearer(mint("globex", [Role.INVOKE.value, Role.ADMIN.value]))
    marker = "acme-only routing example 7d1f"
    example = {"prompt": marker, "outcomes": {"small": 1.0, "big": 1.0}}
    added = await client.post("/api/v1/examples", json={"examples": [example]}, headers=acme_admin)
    assert added.status_code in (200, 201, 202), f"update this test's example body to the API: {added.text}"
    mine = await client.get("/api/v1/examples", headers=acme_admin)
    assert marker in mine.text
    theirs = await client.get("/api/v1/examples", headers=globex_admin)
    assert theirs.status_code == 200
    assert marker not in theirs.text
