"""Tenant-safe examples (issue #16, finding 2): the server, not the client, decides an example's
source and id namespace; a tenant admin writes only its own tenant's examples; shared examples and
the starter set need LLMRouter.PlatformAdmin; `weight` is bounded; outcome keys are catalog model
ids or tier keys. Each attack from the issue is replayed here and must change nothing for the
tenant it aimed at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.examples.labelled import LabelledExample, example_id
from shared.index.local import LocalIndex
from tests.plugins.auth_tokens import bearer

ADMIN, INVOKE, PLATFORM = "LLMRouter.Admin", "LLMRouter.Invoke", "LLMRouter.PlatformAdmin"
PROMPT = "Write a limerick about the tax code of a small island nation."
STARTER_PROMPT = "What is the derivative of x squared?"


@pytest.fixture
async def tenants(
    auth_ctx: Any, make_context: Callable[..., Any], auth_client: httpx.AsyncClient, mint: Callable[..., str]
) -> tuple[httpx.AsyncClient, LocalIndex, Callable[..., dict[str, str]]]:
    """The API with auth on, over a fresh index holding one shipped ("starter") example."""
    index = LocalIndex(auth_ctx.encoder.dim)
    starter = LabelledExample(content=STARTER_PROMPT, outcomes={"tier:frontier": 1.0, "tier:economy": 1.0})
    index.upsert_sync([starter], auth_ctx.encoder.encode([STARTER_PROMPT]))
    await make_context(settings=auth_ctx.settings, authenticator=auth_ctx.authenticator, index=index)

    def who(tenant: str, *roles: str) -> dict[str, str]:
        return bearer(mint(tenant, list(roles)))

    return auth_client, index, who


async def listed(c: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in (await c.get("/api/v1/examples?limit=500", headers=headers)).json()["data"]}


async def test_a_tenant_cannot_replace_another_tenants_example(tenants: Any) -> None:
    c, _, who = tenants
    a, b = who("tenA", ADMIN), who("tenB", ADMIN)
    mine = (await c.post("/api/v1/examples", json={"prompt": PROMPT, "outcomes": {"big": 1.0}}, headers=a)).json()
    [made] = mine["data"]
    # the attack: B names A's source and asks for a shared example with the same prompt
    attack = {"prompt": PROMPT, "shared": True, "source": "api@tenA", "outcomes": {"big": 0.0, "small": 1.0}}
    r = await c.post("/api/v1/examples", json=attack, headers=b)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"
    assert PLATFORM in r.json()["error"]["message"]
    # without `shared` the client's source names nothing: B writes an example of its own
    r = await c.post("/api/v1/examples", json={**attack, "shared": False}, headers=b)
    assert r.status_code == 201, r.text
    [theirs] = r.json()["data"]
    assert theirs["id"] != made["id"]
    assert theirs["source"] == "api"
    a_sees = await listed(c, a)
    assert a_sees[made["id"]]["outcomes"] == {"big": 1.0}
    assert a_sees[made["id"]]["shared"] is False
    assert theirs["id"] not in a_sees


async def test_a_tenant_cannot_rewrite_the_starter_set(tenants: Any) -> None:
    c, index, who = tenants
    starter_id = example_id("starter", STARTER_PROMPT)
    before = await index.get(starter_id)
    assert before is not None
    attack = {"prompt": STARTER_PROMPT, "shared": True, "source": "starter", "outcomes": {"tier:frontier": 0.0}}
    r = await c.post("/api/v1/examples", json=attack, headers=who("tenB", ADMIN))
    assert r.status_code == 403, r.text
    r = await c.post("/api/v1/examples", json={**attack, "shared": False}, headers=who("tenB", ADMIN))
    assert r.status_code == 201, r.text
    assert r.json()["data"][0]["id"] != starter_id
    assert await index.get(starter_id) == before


async def test_platform_admin_writes_shared_examples_and_the_starter_set(tenants: Any) -> None:
    c, index, who = tenants
    op = who("platform", ADMIN, PLATFORM)
    body = {"prompt": STARTER_PROMPT, "shared": True, "source": "starter", "outcomes": {"tier:frontier": 0.5}}
    r = await c.post("/api/v1/examples", json=body, headers=op)
    assert r.status_code == 201, r.text
    [made] = r.json()["data"]
    assert made["id"] == example_id("starter", STARTER_PROMPT)
    assert made["shared"] is True and made["source"] == "starter"
    rewritten = await index.get(made["id"])
    assert rewritten is not None and rewritten.outcomes == {"tier:frontier": 0.5}
    # every tenant sees a shared example
    assert made["id"] in await listed(c, who("tenA", ADMIN))
    # the platform role widens what an admin may write; alone it is not the admin role
    assert (await c.get("/api/v1/examples", headers=who("tenA", INVOKE, PLATFORM))).status_code == 403


@pytest.mark.parametrize("weight", [100, 10.5, 0, -1])
async def test_weight_is_bounded(tenants: Any, weight: float) -> None:
    c, _, who = tenants
    r = await c.post(
        "/api/v1/examples", json={"prompt": "p", "outcomes": {"big": 1.0}, "weight": weight}, headers=who("tenA", ADMIN)
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "weight"


async def test_the_largest_weight_is_accepted(tenants: Any) -> None:
    c, _, who = tenants
    r = await c.post(
        "/api/v1/examples", json={"prompt": "p", "outcomes": {"big": 1.0}, "weight": 10}, headers=who("tenA", ADMIN)
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("key", ["made-up-model", "tier:legendary", "gemini-1.5-pro", "BIG", "x" * 150])
async def test_outcome_keys_must_be_catalog_models_or_tiers(tenants: Any, key: str) -> None:
    c, index, who = tenants
    before = await index.count()
    body = {"prompt": "p", "outcomes": {"big": 1.0, key: 0.0}}
    r = await c.post("/api/v1/examples", json=body, headers=who("tenA", ADMIN))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_example"
    assert err["param"] == f"outcomes.{key}"
    assert key[:40] in err["message"]
    assert await index.count() == before


async def test_catalog_models_and_every_tier_are_accepted(tenants: Any) -> None:
    c, _, who = tenants
    outcomes = {"big": 1.0, "small": 0.0, "tier:frontier": 1.0, "tier:balanced": 0.5, "tier:economy": 0.0}
    r = await c.post("/api/v1/examples", json={"prompt": "p", "outcomes": outcomes}, headers=who("tenA", ADMIN))
    assert r.status_code == 201, r.text


async def route(c: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"model": "auto:quality", "messages": [{"role": "user", "content": PROMPT}]}
    r = await c.post("/api/v1/route", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_another_tenant_cannot_steer_a_tenants_decision(tenants: Any) -> None:
    """Fifty heavy examples from tenant B (the issue's attack) flip B's own decision, never A's."""
    c, _, who = tenants
    a_invoke, b_admin, b_invoke = who("tenA", INVOKE), who("tenB", ADMIN), who("tenB", INVOKE)
    before = await route(c, a_invoke)
    assert before["model"] == "big"
    flip = [{"prompt": f"{PROMPT} ({i})", "outcomes": {"big": 0.0, "small": 1.0}} for i in range(50)]
    attack = {"examples": [{**e, "shared": True, "weight": 100} for e in flip]}
    refused = await c.post("/api/v1/examples", json=attack, headers=b_admin)
    r = await c.post("/api/v1/examples", json={"examples": [{**e, "weight": 10} for e in flip]}, headers=b_admin)
    assert r.status_code == 201, r.text
    after = await route(c, a_invoke)
    assert after["model"] == "big", "tenant B's examples steered tenant A's decision"
    assert refused.status_code in (400, 403), refused.text
    assert after["neighbours"] == before["neighbours"]
    assert after["predicted_quality"] == before["predicted_quality"]
    # B's examples are real evidence, for B
    assert (await route(c, b_invoke))["model"] == "small"


async def test_same_prompt_in_two_tenants_and_shared_are_three_examples(tenants: Any) -> None:
    c, index, who = tenants
    body = {"prompt": PROMPT, "outcomes": {"big": 1.0}}
    ids = set()
    for headers, extra in (
        (who("tenA", ADMIN), {}),
        (who("tenB", ADMIN), {}),
        (who("platform", ADMIN, PLATFORM), {"shared": True}),
    ):
        r = await c.post("/api/v1/examples", json={**body, **extra}, headers=headers)
        assert r.status_code == 201, r.text
        ids.add(r.json()["data"][0]["id"])
    assert len(ids) == 3
    assert {(ex.tenant, ex.source) for ex in [await index.get(i) for i in ids] if ex is not None} == {
        ("tenA", "api"),
        ("tenB", "api"),
        (None, "api"),
    }


def test_ids_are_namespaced_by_tenant() -> None:
    shared = example_id("api", "P")
    assert shared == LabelledExample(content="P", outcomes={"big": 1.0}, source="api").id
    a = LabelledExample(content="P", outcomes={"big": 1.0}, source="api", tenant="tenA").id
    assert a == example_id("api", "P", "tenA")
    # neither the old "<source>@<tenant>" spelling nor a tenant whose name holds a separator reaches it
    assert len({shared, a, example_id("api@tenA", "P"), example_id("api", "P", "tenA\napi")}) == 4
    assert example_id("api", "x\napi\nP", "a") != example_id("api", "P", "a\napi\nx")


async def test_a_tenant_import_gets_tenant_ids(tmp_path: Any) -> None:
    from shared.encoders.hashing import HashingEncoder
    from shared.examples.transfer import import_csv

    path = tmp_path / "mine.csv"
    path.write_text("prompt,big\nWhat is 2+2?,True\n")
    index = LocalIndex(8)
    assert await import_csv(index, HashingEncoder(dim=8), path, progress=False, tenant="tenA") == 1
    [ex] = await index.list(tenant="tenA")
    assert ex.tenant == "tenA"
    assert ex.id == example_id("mine.csv", "What is 2+2?", "tenA") != example_id("mine.csv", "What is 2+2?")
