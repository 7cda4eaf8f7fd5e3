"""Self-labelling from traffic, end to end through the local host (function_app's functions on
the ASGI host, as a caller sees them), on real PostgreSQL, with the fake upstream playing both
answering models and the judge: `small-upstream` answers, `big-upstream` answers in the shadow
and judges (it tells a judge call by its structured-output request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.chat.hooks.shadow import ShadowLabelling
from shared.composition.services import Services
from shared.config import Settings
from shared.encoders.base import Encoder
from shared.index.local import LocalIndex
from shared.store.db import Database
from shared.store.feedback import FeedbackStore
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore
from shared.store.verdicts import PostgresVerdicts
from tests.fakes.openai_upstream import FakeOpenAI

TENANT, OTHER = "acme", "globex"
ALL_ROLES = [Role.INVOKE.value, Role.ADMIN.value, Role.OPS.value]


def judge_prefers(marker: str | None) -> Callable[[dict[str, Any]], str | None]:
    """A judge that picks the answer containing `marker`, or (None) always the first one shown."""

    def respond(body: dict[str, Any]) -> str | None:
        if "response_format" not in body:
            return None  # not a judge call: answer as a model
        shown = body["messages"][-1]["content"]
        answer_a = shown.split("<answer_A>")[1].split("</answer_A>")[0]
        winner = "A" if marker is None or marker in answer_a else "B"
        return orjson.dumps({"reason": "fake judge", "winner": winner}).decode()

    return respond


@pytest.fixture
async def writer(database: Database) -> AsyncIterator[PostgresRequestLog]:
    w = PostgresRequestLog(database, flush_interval_s=0.05)
    yield w
    await w.close()


ShadowFactory = Callable[..., Any]


@pytest.fixture
async def shadow_app(
    client: httpx.AsyncClient,
    make_context: Callable[..., Any],
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
    database: Database,
    writer: PostgresRequestLog,
    starter_index: tuple[Encoder, LocalIndex, dict[str, float]],
) -> ShadowFactory:
    """Installs (after `client`'s default context) a context with self-labelling on, a fresh
    index of its own, and the request log, usage, feedback and verdicts on PostgreSQL."""
    encoder = starter_index[0]

    async def make(**settings: Any) -> Services:
        s = auth_settings.model_copy(update={"shadow_sample_rate": 1.0, "shadow_usd_per_day": 1.0, **settings})
        ctx: Services = await make_context(
            settings=s,
            authenticator=authenticator,
            index=LocalIndex(encoder.dim),
            request_log=writer,
            usage=UsageStore(database, writer),
            feedback=FeedbackStore(database, writer),
            verdicts=PostgresVerdicts(database),
        )
        return ctx

    return make


def shadow_hook(ctx: Services) -> ShadowLabelling:
    return next(h for h in ctx.hooks.hooks if isinstance(h, ShadowLabelling))


def headers(mint: Callable[..., str], tenant: str = TENANT, roles: list[str] | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(tenant, roles or ALL_ROLES)}"}


async def ask(client: httpx.AsyncClient, h: dict[str, str], prompt: str, **extra: Any) -> httpx.Response:
    body = {"model": "small", "messages": [{"role": "user", "content": prompt}], "temperature": 0, **extra}
    resp = await client.post("/api/v1/chat/completions", headers=h, json=body)
    assert resp.status_code == 200, resp.text
    return resp


async def metrics(client: httpx.AsyncClient, h: dict[str, str]) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics", headers=h)
    assert resp.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(resp.text)
        for s in fam.samples
        if s.name.startswith("llm_router_shadow_")
    }


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def judge_examples(client: httpx.AsyncClient, h: dict[str, str]) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/examples", headers=h, params={"limit": 100})
    assert resp.status_code == 200, resp.text
    return [e for e in resp.json()["data"] if e["label_source"] == "judge"]


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}


async def log_rows(database: Database, parent: str) -> dict[str, tuple]:
    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT id, purpose, chosen_model, status, prompt_tokens, cost_usd FROM request_log"
            " WHERE parent_request_id = %s",
            (parent,),
        )
        return {r[0]: r[1:] for r in await cur.fetchall()}


async def test_an_answer_is_shadowed_judged_both_ways_and_becomes_a_tenant_example(
    client: httpx.AsyncClient,
    shadow_app: ShadowFactory,
    fake_openai: FakeOpenAI,
    mint: Callable[..., str],
    database: Database,
    writer: PostgresRequestLog,
) -> None:
    ctx = await shadow_app()
    fake_openai.responders["big-upstream"] = judge_prefers("big-upstream")
    h = headers(mint)
    before = await metrics(client, h)

    resp = await ask(client, h, "Explain why the sky is blue to a child")
    rid = resp.headers["x-request-id"]
    assert resp.json()["choices"][0]["message"]["content"].startswith("Answer from small-upstream")
    await ctx.hooks.drain()

    # one shadow call with the caller's request, then the judge in both orders
    shadow, judge_1, judge_2 = fake_openai.calls("big-upstream")
    assert shadow["messages"] == [{"role": "user", "content": "Explain why the sky is blue to a child"}]
    assert "response_format" not in shadow and not shadow.get("stream")
    for call, first in ((judge_1, "small-upstream"), (judge_2, "big-upstream")):
        assert call["response_format"]["type"] == "json_schema"
        assert call["response_format"]["json_schema"]["name"] == "pairwise_verdict"
        shown = call["messages"][-1]["content"]
        assert f"<answer_A>\nAnswer from {first}" in shown

    # the verdict is a labelled example of the tenant, keyed by the two catalog model ids
    (example,) = await judge_examples(client, h)
    assert example["outcomes"] == {"small": 0.0, "big": 1.0}
    assert example["source_request_id"] == rid and example["shared"] is False
    assert example["content"] == "Explain why the sky is blue to a child"
    assert await judge_examples(client, headers(mint, OTHER)) == []  # another tenant's routing never sees it

    # usage: the caller's by default; shadow and judge under their own purpose when asked
    by_model = await client.get("/api/v1/usage", headers=h, params={**window(), "group_by": "model"})
    assert [(r["model"], r["requests"]) for r in by_model.json()["data"]] == [("small", 1)]
    by_purpose = await client.get(
        "/api/v1/usage", headers=h, params={**window(), "group_by": "purpose", "purpose": "all"}
    )
    rows = {r["purpose"]: r for r in by_purpose.json()["data"]}
    assert {p: r["requests"] for p, r in rows.items()} == {"answer": 1, "judge": 2, "shadow": 1}
    assert all(r["cost_usd"] > 0 for r in rows.values())
    # the request log holds the shadow and judge rows, linked to the answered request
    linked = await log_rows(database, rid)
    assert {k: v[:3] for k, v in linked.items()} == {
        f"{rid}:shadow": ("shadow", "big", 200),
        f"{rid}:judge:1": ("judge", "big", 200),
        f"{rid}:judge:2": ("judge", "big", 200),
    }

    after = await metrics(client, h)
    assert delta(before, after, "llm_router_shadow_sampled_total") == 1
    assert delta(before, after, "llm_router_shadow_calls_total", purpose="shadow", model="big", status="ok") == 1
    assert delta(before, after, "llm_router_shadow_calls_total", purpose="judge", model="big", status="ok") == 2
    assert delta(before, after, "llm_router_shadow_verdicts_total", outcome="shadow_better") == 1
    spent = sum(float(v[4]) for v in linked.values())
    assert delta(before, after, "llm_router_shadow_spend_usd_total", purpose="shadow") + delta(
        before, after, "llm_router_shadow_spend_usd_total", purpose="judge"
    ) == pytest.approx(spent)


async def test_a_streamed_answer_is_labelled_too(
    client: httpx.AsyncClient, shadow_app: ShadowFactory, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    ctx = await shadow_app()
    fake_openai.responders["big-upstream"] = judge_prefers("small-upstream")
    h = headers(mint)
    resp = await ask(client, h, "Name three rivers in Europe", stream=True)
    assert resp.text.rstrip().endswith("data: [DONE]")
    await ctx.hooks.drain()
    (example,) = await judge_examples(client, h)
    assert example["outcomes"] == {"small": 1.0, "big": 0.0}


async def test_a_judge_that_always_picks_the_first_answer_gives_a_tie(
    client: httpx.AsyncClient, shadow_app: ShadowFactory, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    ctx = await shadow_app()
    fake_openai.responders["big-upstream"] = judge_prefers(None)
    h = headers(mint)
    before = await metrics(client, h)
    await ask(client, h, "Write a limerick about a cat")
    await ctx.hooks.drain()
    (example,) = await judge_examples(client, h)
    assert example["outcomes"] == {"small": 0.5, "big": 0.5}
    after = await metrics(client, h)
    assert delta(before, after, "llm_router_shadow_verdicts_total", outcome="tie_orders_disagree") == 1


async def test_no_budget_no_shadow_call(
    client: httpx.AsyncClient, shadow_app: ShadowFactory, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    ctx = await shadow_app(shadow_usd_per_day=0.0)
    fake_openai.responders["big-upstream"] = judge_prefers("big-upstream")
    h = headers(mint)
    before = await metrics(client, h)
    await ask(client, h, "What is the capital of France?")
    await ctx.hooks.drain()
    assert fake_openai.calls("big-upstream") == []
    assert await judge_examples(client, h) == []
    after = await metrics(client, h)
    assert delta(before, after, "llm_router_shadow_skipped_budget_total", purpose="shadow") == 1
    usage = await client.get("/api/v1/usage", headers=h, params={**window(), "group_by": "purpose", "purpose": "all"})
    assert [r["purpose"] for r in usage.json()["data"]] == ["answer"]


async def test_the_budget_stops_the_judge_once_used_up(
    client: httpx.AsyncClient,
    shadow_app: ShadowFactory,
    fake_openai: FakeOpenAI,
    mint: Callable[..., str],
    database: Database,
) -> None:
    """The shadow call fits the budget by its estimate (~17 prompt + 512 output tokens of `big`:
    $0.0042 of $0.005) but its long answer costs $0.016: the judge call is refused, nothing labelled."""
    ctx = await shadow_app(shadow_usd_per_day=0.005)
    judge = judge_prefers("big-upstream")
    fake_openai.responders["big-upstream"] = lambda body: judge(body) or "word " * 2000
    h = headers(mint)
    before = await metrics(client, h)
    resp = await ask(client, h, "Summarise the plot of Hamlet in two sentences")
    await ctx.hooks.drain()
    assert len(fake_openai.calls("big-upstream")) == 1
    assert await judge_examples(client, h) == []
    after = await metrics(client, h)
    assert delta(before, after, "llm_router_shadow_skipped_budget_total", purpose="judge") == 1
    await client.get("/api/v1/usage", headers=h, params=window())  # flushes the log writer
    assert set(await log_rows(database, resp.headers["x-request-id"])) == {resp.headers["x-request-id"] + ":shadow"}


async def test_a_failing_shadow_model_leaves_the_caller_alone_and_labels_nothing(
    client: httpx.AsyncClient,
    shadow_app: ShadowFactory,
    fake_openai: FakeOpenAI,
    mint: Callable[..., str],
    database: Database,
) -> None:
    ctx = await shadow_app()
    fake_openai.responders["big-upstream"] = judge_prefers("big-upstream")
    fake_openai.push("big-upstream", "500")
    h = headers(mint)
    before = await metrics(client, h)
    resp = await ask(client, h, "Translate 'good morning' into Spanish")
    assert resp.json()["choices"][0]["message"]["content"].startswith("Answer from small-upstream")
    await ctx.hooks.drain()
    assert len(fake_openai.calls("big-upstream")) == 1  # the shadow call; no judge, no retry
    assert await judge_examples(client, h) == []
    after = await metrics(client, h)
    assert delta(before, after, "llm_router_shadow_calls_total", purpose="shadow", model="big", status="error") == 1
    assert delta(before, after, "llm_router_shadow_verdicts_total", outcome="shadow_better") == 0
    await client.get("/api/v1/usage", headers=h, params=window())
    rid = resp.headers["x-request-id"]
    (status,) = [v[2] for v in (await log_rows(database, rid)).values()]
    assert status >= 500


async def test_the_caller_has_its_answer_while_the_shadow_call_still_hangs(
    client: httpx.AsyncClient, shadow_app: ShadowFactory, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    """The fake hangs the shadow call longer than the read timeout (2 s): the caller's answer is
    complete while the labelling is still in flight, and the timeout labels nothing."""
    ctx = await shadow_app()
    fake_openai.push("big-upstream", "hang")
    h = headers(mint)
    resp = await ask(client, h, "Give me a synonym for happy")
    assert resp.json()["choices"][0]["message"]["content"].startswith("Answer from small-upstream")
    for _ in range(200):  # bounded wait for the shadow request to reach the fake
        if fake_openai.calls("big-upstream"):
            break
        await asyncio.sleep(0.025)
    assert len(fake_openai.calls("big-upstream")) == 1
    assert shadow_hook(ctx).in_flight == 1
    await ctx.hooks.drain()
    assert shadow_hook(ctx).in_flight == 0
    assert await judge_examples(client, h) == []


async def test_agreement_with_human_feedback(
    client: httpx.AsyncClient, shadow_app: ShadowFactory, fake_openai: FakeOpenAI, mint: Callable[..., str]
) -> None:
    """Three judged requests with feedback and one without: the judge says `small` lost twice and
    tied once; humans rate `small` bad once (agree), good once (disagree) and good on the tie."""
    ctx = await shadow_app()
    h = headers(mint)
    plan = [("big-upstream", 0.0), ("big-upstream", 1.0), (None, 1.0), ("big-upstream", None)]
    for i, (preferred, score) in enumerate(plan):
        fake_openai.responders["big-upstream"] = judge_prefers(preferred)
        rid = (await ask(client, h, f"Question number {i}: how do tides work?")).headers["x-request-id"]
        await ctx.hooks.drain()
        if score is not None:
            fb = await client.post("/api/v1/feedback", headers=h, json={"request_id": rid, "score": score})
            assert fb.status_code in (200, 201), fb.text

    resp = await client.get("/api/v1/judge/agreement", headers=h)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["tenant"] == TENANT
    assert (report["pairs"], report["decided"], report["ties"], report["agree"]) == (3, 2, 1, 1)
    assert report["agreement"] == 0.5
    assert report["matrix"] == {
        "human_good": {"judge_better": 0, "judge_tie": 1, "judge_worse": 1},
        "human_bad": {"judge_better": 0, "judge_tie": 0, "judge_worse": 1},
    }
    other = await client.get("/api/v1/judge/agreement", headers=headers(mint, OTHER))
    assert other.json()["pairs"] == 0 and other.json()["agreement"] is None
    invoke_only = await client.get("/api/v1/judge/agreement", headers=headers(mint, roles=[Role.INVOKE.value]))
    assert invoke_only.status_code == 403
    assert set(invoke_only.json()["error"]) == {"message", "type", "param", "code"}
    bad = await client.get("/api/v1/judge/agreement", headers=h, params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "from"
