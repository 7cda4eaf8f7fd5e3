"""GET/POST /api/v1/examples (admin, tenant-scoped, validated) and feedback -> examples
(asynchronous, de-duplicated, prompt text kept only where the tenant allows it), on LocalIndex,
on WeaviateIndex (fake), and with the feedback rows in real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.examples.feedback_loop import FeedbackExamples
from shared.examples.labelled import example_id
from shared.examples.prompt_store import PromptStore, prompt_text_allowed
from shared.examples.transfer import export_csv
from shared.index.base import IndexUnavailable
from shared.index.local import LocalIndex
from shared.store.backup_checks import BackupCheck, PostgresBackupCheckStore
from shared.store.db import Database
from shared.store.feedback import FeedbackRow, MemoryFeedbackSource, PostgresFeedbackSource
from tests.fakes.weaviate import FakeWeaviate
from tests.plugins.auth_tokens import bearer

ADMIN, INVOKE = "LLMRouter.Admin", "LLMRouter.Invoke"


def ex_body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "outcomes": {"big": 1.0, "small": 0.0}, **extra}


@pytest.fixture
async def own_index_client(make_context: Callable[..., Any], client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API over a fresh LocalIndex (never the session's shared starter index)."""
    ctx = await make_context()
    await make_context(index=LocalIndex(ctx.encoder.dim))
    return client


async def test_post_one_then_list(own_index_client: httpx.AsyncClient) -> None:
    c = own_index_client
    r = await c.post("/api/v1/examples", json=ex_body("What is 2+2?", category="maths", weight=2))
    assert r.status_code == 201, r.text
    [made] = r.json()["data"]
    assert made["content"] == "What is 2+2?"
    assert made["shared"] is False
    assert made["label_source"] == "manual"
    assert made["best_model"] == "big"
    listed = (await c.get("/api/v1/examples")).json()
    assert [e["id"] for e in listed["data"]] == [made["id"]]
    assert listed["data"][0]["weight"] == 2.0
    # posting the same example again updates it, never duplicates
    await c.post("/api/v1/examples", json=ex_body("What is 2+2?", outcomes={"small": 1.0}))
    listed = (await c.get("/api/v1/examples")).json()["data"]
    assert len(listed) == 1 and listed[0]["outcomes"] == {"small": 1.0}


async def test_post_many_and_paginate(own_index_client: httpx.AsyncClient) -> None:
    c = own_index_client
    items = [ex_body(f"question {i}") for i in range(7)]
    r = await c.post("/api/v1/examples", json={"examples": items})
    assert r.status_code == 201
    assert r.json()["created"] == 7
    seen: list[str] = []
    offset = 0
    while True:
        page = (await c.get(f"/api/v1/examples?limit=3&offset={offset}")).json()
        seen += [e["content"] for e in page["data"]]
        if not page["has_more"]:
            break
        offset += 3
    assert sorted(seen) == sorted(i["prompt"] for i in items)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"outcomes": {"big": 1}}, "prompt"),
        (ex_body("x", outcomes={"big": 1.5}), "outcomes.big"),
        (ex_body("x", outcomes={}), "outcomes"),
        (ex_body(""), "prompt"),
        (ex_body("x", weight=0), "weight"),
        (ex_body("x", colour="red"), "colour"),
        ({"examples": []}, "examples"),
        ({"examples": [ex_body("ok"), {"prompt": "no outcomes"}]}, "examples.1.outcomes"),
    ],
)
async def test_invalid_examples_get_400(own_index_client: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    r = await own_index_client.post("/api/v1/examples", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_example"
    assert err["param"] == param
    assert (await own_index_client.get("/api/v1/examples")).json()["data"] == []


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "offset=-1"])
async def test_bad_paging_gets_400(own_index_client: httpx.AsyncClient, query: str) -> None:
    r = await own_index_client.get(f"/api/v1/examples?{query}")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_parameter"


async def test_not_json_gets_400(own_index_client: httpx.AsyncClient) -> None:
    r = await own_index_client.post("/api/v1/examples", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


async def test_roles_and_tenant_isolation(
    auth_ctx: Any, make_context: Callable[..., Any], auth_client: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    await make_context(
        settings=auth_ctx.settings, authenticator=auth_ctx.authenticator, index=LocalIndex(auth_ctx.encoder.dim)
    )
    c = auth_client
    acme, globex = bearer(mint("acme", [ADMIN])), bearer(mint("globex", [ADMIN]))
    assert (await c.get("/api/v1/examples")).status_code == 401
    r = await c.get("/api/v1/examples", headers=bearer(mint("acme", [INVOKE])))
    assert r.status_code == 403
    assert (
        await c.post("/api/v1/examples", json=ex_body("x"), headers=bearer(mint("acme", [INVOKE])))
    ).status_code == 403

    mine = (await c.post("/api/v1/examples", json=ex_body("acme secret prompt"), headers=acme)).json()["data"][0]
    # shared examples are a platform operator's to write (tests/test_examples_tenancy.py)
    operator = bearer(mint("platform", [ADMIN, "LLMRouter.PlatformAdmin"]))
    shared = (await c.post("/api/v1/examples", json=ex_body("for everyone", shared=True), headers=operator)).json()[
        "data"
    ][0]
    # the same prompt from another tenant is another example, not an overwrite of acme's
    theirs = (
        await c.post("/api/v1/examples", json=ex_body("acme secret prompt", outcomes={"small": 1}), headers=globex)
    ).json()["data"][0]
    assert theirs["id"] != mine["id"]
    acme_sees = {e["id"]: e for e in (await c.get("/api/v1/examples", headers=acme)).json()["data"]}
    globex_sees = {e["id"]: e for e in (await c.get("/api/v1/examples", headers=globex)).json()["data"]}
    assert set(acme_sees) == {mine["id"], shared["id"]}
    assert set(globex_sees) == {theirs["id"], shared["id"]}
    assert acme_sees[mine["id"]]["outcomes"] == {"big": 1.0, "small": 0.0}


async def test_posted_example_is_routing_evidence(own_index_client: httpx.AsyncClient) -> None:
    c = own_index_client
    prompt = "Summarise the quarterly zebra migration report for the board."
    made = (await c.post("/api/v1/examples", json=ex_body(prompt, outcomes={"small": 1.0, "big": 1.0}))).json()["data"][
        0
    ]
    r = await c.post("/api/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": prompt}]})
    body = r.json()
    assert body["neighbours"][0]["id"] == made["id"]
    assert body["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


async def test_examples_api_on_weaviate(
    fake_weaviate: FakeWeaviate,
    make_weaviate_index: Callable[..., Any],
    make_context: Callable[..., Any],
    client: httpx.AsyncClient,
) -> None:
    ctx = await make_context()
    index = make_weaviate_index(ctx.encoder.dim, ctx.encoder.name)
    await make_context(index=index)
    r = await client.post("/api/v1/examples", json={"examples": [ex_body(f"weaviate q{i}") for i in range(4)]})
    assert r.status_code == 201
    assert fake_weaviate.count(index.collection_name) == 4
    listed = (await client.get("/api/v1/examples?limit=10")).json()
    assert sorted(e["content"] for e in listed["data"]) == [f"weaviate q{i}" for i in range(4)]
    # Weaviate serves no row past offset + limit = QUERY_MAXIMUM_RESULTS (10,000 by default): a page
    # asked deeper is the caller's mistake, not an outage of the index
    deep = await client.get("/api/v1/examples?limit=10&offset=9995")
    assert deep.status_code == 400
    assert deep.json()["error"] == {
        "message": deep.json()["error"]["message"],
        "type": "invalid_request_error",
        "param": "offset",
        "code": "offset_too_large",
    }
    assert "QUERY_MAXIMUM_RESULTS" in deep.json()["error"]["message"]
    assert (await client.get("/api/v1/examples?limit=5&offset=9994")).json()["data"] == []  # 9,999 + 1 extra


# --- feedback -> examples ------------------------------------------------------------------------------


def feeder(settings: Settings, index: Any, encoder: Any, source: Any = None) -> FeedbackExamples:
    return FeedbackExamples(
        settings, source or MemoryFeedbackSource(), PromptStore(MemoryCache(), 3600), index, encoder
    )


async def test_feedback_becomes_one_example_per_request(settings: Settings, starter_index: Any) -> None:
    encoder = starter_index[0]
    index = LocalIndex(encoder.dim)
    f = feeder(settings, index, encoder)
    source = f.source
    assert isinstance(source, MemoryFeedbackSource)
    await f.remember("req-1", "acme", "How do I reverse a linked list?", None)
    source.add(FeedbackRow(1, "req-1", "acme", 0.2, "small"))
    source.add(FeedbackRow(2, "req-1", "acme", 0.9, "small"))
    result = await f.process()
    assert (result.rows, result.examples, result.skipped) == (2, 1, 0)
    [ex] = await index.list(tenant="acme")
    assert ex.id == example_id("feedback", "req-1")
    assert ex.content == "How do I reverse a linked list?"
    assert ex.outcomes == {"small": 0.9}  # the newest feedback wins
    assert (ex.label_source, ex.tenant, ex.source_request_id) == ("feedback", "acme", "req-1")
    assert await index.list(tenant="globex") == []
    assert source.processed == {1, 2}
    # nothing left: a second pass does nothing
    assert (await f.process()).rows == 0
    # later feedback on the same request rewrites the same example
    source.add(FeedbackRow(3, "req-1", "acme", 0.0, "small"))
    await f.process()
    assert await index.count() == 1
    assert (await index.list(tenant="acme"))[0].outcomes == {"small": 0.0}


async def test_prompt_text_only_where_the_tenant_allows(settings: Settings, starter_index: Any, tmp_path: Path) -> None:
    encoder = starter_index[0]
    s = settings.model_copy(update={"store_prompt_text_tenants": "globex"})
    assert prompt_text_allowed(s, "globex") and not prompt_text_allowed(s, "acme")
    assert not prompt_text_allowed(s.model_copy(update={"store_prompt_text": False}), "globex")
    index = LocalIndex(encoder.dim)
    f = feeder(s, index, encoder)
    prompt = "Draft a confidential merger memo for Initech."
    await f.remember("req-acme", "acme", prompt, None)
    kept = await f.prompts.get("req-acme")
    assert kept is not None and kept.text is None and kept.vector is not None
    f.source.add(FeedbackRow(1, "req-acme", "acme", 1.0, "big"))  # type: ignore[attr-defined]
    assert (await f.process()).examples == 1
    [ex] = await index.list(tenant="acme")
    assert ex.content == ""
    # no text, but the vector routes: the same prompt finds it as its nearest neighbour
    [hit] = await index.search(encoder.encode([prompt])[0], 1, tenant="acme")
    assert hit.id == ex.id and hit.similarity == pytest.approx(1.0, abs=1e-5)
    # and an export never contains it
    assert await export_csv(index, tmp_path / "out.csv", tenant="acme") == 0


async def test_feedback_without_prompt_or_model_is_skipped(settings: Settings, starter_index: Any) -> None:
    encoder = starter_index[0]
    index = LocalIndex(encoder.dim)
    f = feeder(settings, index, encoder)
    f.source.add(FeedbackRow(1, "never-seen", "acme", 1.0, "big"))  # type: ignore[attr-defined]
    f.source.add(FeedbackRow(2, "logged", "acme", 1.0, None, prompt_text="hi"))  # type: ignore[attr-defined]
    f.source.add(FeedbackRow(3, "logged-text", "acme", 0.5, "big", prompt_text="LOG_PROMPTS text"))  # type: ignore[attr-defined]
    result = await f.process()
    assert (result.examples, result.skipped) == (1, 2)
    assert [e.content for e in await index.list(tenant="acme")] == ["LOG_PROMPTS text"]
    off = feeder(settings.model_copy(update={"feedback_to_examples": False}), index, encoder)
    await off.remember("r", "acme", "p", None)
    assert await off.prompts.get("r") is None
    assert (await off.process()).rows == 0


async def test_index_outage_leaves_feedback_for_the_next_pass(
    fake_weaviate: FakeWeaviate, make_weaviate_index: Callable[..., Any], settings: Settings, starter_index: Any
) -> None:
    encoder = starter_index[0]
    index = make_weaviate_index(encoder.dim, encoder.name)
    f = feeder(settings, index, encoder)
    await f.remember("req-9", "acme", "What is the capital of France?", None)
    f.source.add(FeedbackRow(1, "req-9", "acme", 1.0, "small"))  # type: ignore[attr-defined]
    fake_weaviate.mode = "error"
    with pytest.raises(IndexUnavailable):
        await f.process()
    assert f.source.processed == set()  # type: ignore[attr-defined]
    fake_weaviate.mode = "ok"
    assert (await f.process()).examples == 1
    assert fake_weaviate.count(index.collection_name) == 1


async def test_feedback_rows_from_postgres(database: Database, settings: Settings, starter_index: Any) -> None:
    encoder = starter_index[0]
    async with database.connection() as conn:
        for rid, text in (("pg-1", None), ("pg-2", "logged prompt text")):
            await conn.execute(
                "INSERT INTO request_log (id, tenant, requested_model, chosen_model, cache, prompt_text)"
                " VALUES (%s, 'acme', 'auto', 'small', 'miss', %s)",
                (rid, text),
            )
        await conn.execute(
            "INSERT INTO feedback (request_id, tenant, score, model) VALUES ('pg-1', 'acme', 0.25, NULL),"
            " ('pg-2', 'acme', 1.0, 'big')"
        )
    source = PostgresFeedbackSource(database)
    rows = await source.pending(10)
    assert [(r.request_id, r.model, r.prompt_text) for r in rows] == [
        ("pg-1", "small", None),
        ("pg-2", "big", "logged prompt text"),
    ]
    index = LocalIndex(encoder.dim)
    f = feeder(settings, index, encoder, source)
    await f.remember("pg-1", "acme", "kept prompt", None)
    result = await f.process()
    assert (result.rows, result.examples) == (2, 2)
    assert {e.content: e.outcomes for e in await index.list(tenant="acme")} == {
        "kept prompt": {"small": 0.25},
        "logged prompt text": {"big": 1.0},
    }
    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM feedback WHERE processed_at IS NULL")
        assert (await cur.fetchone()) == (0,)


async def test_backup_checks_in_postgres(database: Database) -> None:
    store = PostgresBackupCheckStore(database)
    async with database.connection() as conn:
        await conn.execute("DELETE FROM backup_checks")
    assert await store.latest() is None
    first = BackupCheck("azure", "started", False, "none recent", started_backup_id="llm-router-1")
    second = BackupCheck(
        "azure", "following", False, "in progress", latest_backup_id="llm-router-1", latest_status="STARTED"
    )
    await store.record(first)
    await store.record(second)
    latest = await store.latest()
    assert latest is not None
    assert (latest.action, latest.latest_status, latest.detail) == ("following", "STARTED", "in progress")
    assert latest.checked_at == second.checked_at
    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM backup_checks")
        assert (await cur.fetchone()) == (2,)
