"""Chat completions, route, models and health through the local host's routes (ASGI)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from shared.composition.services import Services
from shared.config import Settings
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI, count_tokens

CHAT = "/api/v1/chat/completions"


def body(content: str = "What is the capital of France?", **kw: object) -> dict[str, object]:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **kw}


def sse_events(text: str) -> list[object]:
    out: list[object] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


async def test_chat_completion_routes_calls_and_answers(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, ctx: Services
) -> None:
    r = await client.post(CHAT, json=body(temperature=0.2, max_tokens=50, seed=None))
    assert r.status_code == 200, r.text
    data = r.json()
    chosen = r.headers["x-router-model"]
    assert chosen in {"big", "small"}
    assert data["object"] == "chat.completion"
    assert data["model"] == chosen
    assert r.headers["x-router-policy"] == "balanced"
    assert float(r.headers["x-router-overhead-ms"]) >= 0
    assert len(r.headers["x-request-id"]) == 32
    # the upstream got the catalog's upstream model name and our parameters
    sent = fake_openai.requests[-1]
    assert sent["model"] == f"{chosen}-upstream"
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50
    assert "routing" not in sent
    answer = data["choices"][0]["message"]["content"]
    assert data["usage"]["completion_tokens"] == count_tokens(answer)
    assert data["usage"]["prompt_tokens"] == count_tokens("What is the capital of France?")
    row = ctx.request_log.rows[-1]  # type: ignore[attr-defined]
    spec = ctx.catalog.get(chosen)
    assert row.cost_usd == pytest.approx(
        spec.cost_usd(data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"])
    )
    assert row.id == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("model", "policy"), [("auto:quality", "quality"), ("auto:cost", "cost"), ("auto:latency", "latency")]
)
async def test_policy_aliases(client: httpx.AsyncClient, fake_openai: FakeOpenAI, model: str, policy: str) -> None:
    r = await client.post(CHAT, json=body(model=model))
    assert r.status_code == 200
    assert r.headers["x-router-policy"] == policy


async def test_explicit_model_and_routing_extension(client: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    r = await client.post(CHAT, json=body(model="small"))
    assert r.status_code == 200 and r.headers["x-router-model"] == "small"
    assert r.headers["x-router-policy"] == "explicit"
    r = await client.post(CHAT, json=body(routing={"policy": "quality", "allowed_models": ["small"]}))
    assert r.headers["x-router-model"] == "small"
    r = await client.post(CHAT, json=body(routing={"exclude_models": ["small"]}))
    assert r.headers["x-router-model"] == "big"


async def test_streaming_sse_with_usage(client: httpx.AsyncClient, fake_openai: FakeOpenAI, ctx: Services) -> None:
    r = await client.post(CHAT, json=body(model="small", stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "small" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == count_tokens(text)
    row = ctx.request_log.rows[-1]  # type: ignore[attr-defined]
    assert row.stream and row.usage_source == "provider"
    assert row.completion_tokens == usage["completion_tokens"]


async def test_stream_without_include_usage_hides_the_usage_chunk(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, ctx: Services
) -> None:
    r = await client.post(CHAT, json=body(model="small", stream=True))
    chunks = [e for e in sse_events(r.text) if isinstance(e, dict)]
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)
    # the router still asked for usage upstream, so accounting is exact
    assert fake_openai.requests[-1]["stream_options"] == {"include_usage": True}
    assert ctx.request_log.rows[-1].usage_source == "provider"  # type: ignore[attr-defined]


async def test_route_explains_the_decision(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/route", json=body("Prove that the square root of 2 is irrational."))
    assert r.status_code == 200
    d = r.json()
    assert d["object"] == "router.decision"
    assert d["model"] in {"big", "small"}
    ranked = [c for c in d["candidates"] if c["rank"] is not None]
    assert [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
    assert ranked[0]["model"] == d["model"]
    for c in d["candidates"]:
        assert 0.0 <= c["predicted_quality"] <= 1.0
        assert c["estimated_cost_usd"] > 0
        assert c["reason"]
    assert len(d["neighbours"]) > 0
    assert all(0 < n["similarity"] <= 1 for n in d["neighbours"])
    assert d["decision_ms"] >= 0


async def test_route_lists_the_nearest_neighbours_and_more_on_request(client: httpx.AsyncClient) -> None:
    prompt = body("Prove that the square root of 2 is irrational.")
    default = (await client.post("/api/v1/route", json=prompt)).json()
    every = (await client.post("/api/v1/route?neighbours=10000", json=prompt)).json()
    none = (await client.post("/api/v1/route?neighbours=0", json=prompt)).json()
    total = every["neighbours_total"]
    assert total > 10 and len(every["neighbours"]) == total == default["neighbours_total"]
    assert default["neighbours"] == every["neighbours"][:10]  # the 10 most similar, in order
    sims = [n["similarity"] for n in every["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    assert none["neighbours"] == [] and none["model"] == default["model"]
    for bad in ("-1", "many", "10001"):
        r = await client.post(f"/api/v1/route?neighbours={bad}", json=prompt)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "neighbours"


async def test_route_shows_excluded_candidates_with_reasons(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/route", json=body(routing={"exclude_models": ["big"]}))
    excluded = [c for c in r.json()["candidates"] if not c["eligible"]]
    assert excluded == [pytest.approx(excluded[0])]
    assert excluded[0]["model"] == "big" and excluded[0]["reason"] == "in routing.exclude_models"


async def test_models_lists_catalog_with_live_state(client: httpx.AsyncClient, ctx: Services) -> None:
    for _ in range(5):
        await ctx.circuit.record_failure("big")
    r = await client.get("/api/v1/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["data"]}
    assert set(models) == {"big", "small"}
    assert models["big"]["circuit"] == "open" and models["big"]["available"] is False
    assert models["small"]["pricing"] == {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 0.4}
    assert {"id": "gemini-1.5-pro", "replacement": "gemini-2.5-pro"} in r.json()["retired"]


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] in {"ok", "degraded"}
    detail = (await client.get("/api/v1/health")).json()
    assert {"index", "cache", "providers"} <= set(detail["dependencies"])
    assert detail["dependencies"]["index"]["status"] == "up"
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and "llm_router_requests_total" in metrics.text


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "route_not_found"
    r = await client.get(CHAT)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_tenant_model_allowlist(
    make_context: ContextFactory, settings: Settings, client: httpx.AsyncClient
) -> None:
    """TENANT_MODEL_ALLOWLIST limits a tenant's models: auto routing only among them, an explicit
    other model is a 403 that names what is allowed. (Auth is off here: the tenant is 'default'.)"""
    await make_context(settings=settings.model_copy(update={"tenant_model_allowlist": {"default": ["small"]}}))
    r = await client.post("/api/v1/route", json=body(model="auto:quality"))
    d = r.json()
    assert d["model"] == "small"
    assert {"model": "big", "reason": "not allowed for this tenant"}.items() <= next(
        c for c in d["candidates"] if c["model"] == "big"
    ).items()
    r = await client.post(CHAT, json=body(model="big"))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "model_not_allowed" and "small" in r.json()["error"]["message"]


def test_allowlist_setting_reads_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_MODEL_ALLOWLIST", '{"acme": ["gemini-2.5-flash", "gemini-2.5-flash-lite"]}')
    assert Settings().tenant_model_allowlist == {"acme": ["gemini-2.5-flash", "gemini-2.5-flash-lite"]}
