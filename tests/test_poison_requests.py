"""Nothing a caller sends can poison a shared queue (issue 16, finding 1), over HTTP with the real
PostgreSQL writer, job store and feedback store.

- `model: "auto\\u0000"` once answered 404 and its request-log row (refused by PostgreSQL) stopped
  the batched writer for every tenant; now it is a 400 naming `model`, and every good row of two
  tenants around it lands, with exact usage.
- NUL or a lone surrogate in any field of chat, route, jobs, feedback and examples bodies, or in a
  query parameter, is a 400 naming the field (jobs and feedback once answered 503).
- A row the database refuses for a reason no edge check can see (an upstream reporting usage
  beyond the integer column) goes to the dead-letter table; the caller still gets the answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.composition.services import Services
from shared.config import Settings
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.store.db import Database
from shared.store.feedback import FeedbackStore
from shared.store.job_store import PostgresJobStore
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import HUGE_USAGE, FakeOpenAI, count_tokens, prompt_tokens

INVOKE = [Role.INVOKE.value]
ALL = [Role.INVOKE.value, Role.ADMIN.value]


@pytest.fixture
async def pg_ctx(
    client: httpx.AsyncClient,
    make_context: ContextFactory,
    auth_settings: Settings,
    authenticator: BearerAuthenticator,
    database: Database,
) -> Any:
    """Installed after `client`'s default context, so the client's requests use this one."""
    s = auth_settings.model_copy(update={"quota_tokens_per_day": 10**12, "quota_usd_per_month": 10.0**9})
    writer = PostgresRequestLog(database, batch_size=50, flush_interval_s=0.05, retry_initial_s=0.05)
    jobs = JobService(s, PostgresJobStore(database), LocalBus())
    ctx: Services = await make_context(
        settings=s,
        authenticator=authenticator,
        request_log=writer,
        usage=UsageStore(database, writer),
        feedback=FeedbackStore(database, writer),
        jobs=jobs,
    )
    yield ctx, writer
    await writer.close()


def bearer(mint: Callable[..., str], tenant: str, roles: list[str] = INVOKE) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(tenant, roles)}"}


def chat_body(text: str, model: str = "small") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def landed(db: Database, ids: list[str]) -> set[str]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT id FROM request_log WHERE id = ANY(%s)", (ids,))
        return {r[0] for r in await cur.fetchall()}


async def test_the_poison_model_between_two_tenants_good_requests_blocks_nothing(
    client: httpx.AsyncClient, pg_ctx: Any, fake_openai: FakeOpenAI, mint: Callable[..., str], database: Database
) -> None:
    _, writer = pg_ctx
    tenants = {t: bearer(mint, t) for t in (f"ta-{uuid.uuid4().hex[:6]}", f"tb-{uuid.uuid4().hex[:6]}")}
    expected: dict[str, dict[str, int]] = {t: {"requests": 0, "prompt": 0, "completion": 0} for t in tenants}
    good_ids: list[str] = []
    poison_answers: list[httpx.Response] = []
    for i in range(12):
        tenant = list(tenants)[i % 2]
        if i in (3, 4, 8):
            r = await client.post("/api/v1/chat/completions", headers=tenants[tenant], json=chat_body("hi", "auto\x00"))
            poison_answers.append(r)
            continue
        text = f"question number {i} from {tenant}"
        r = await client.post("/api/v1/chat/completions", headers=tenants[tenant], json=chat_body(text))
        assert r.status_code == 200, r.text
        good_ids.append(r.headers["x-request-id"])
        body = fake_openai.calls("small-upstream")[-1]
        expected[tenant]["requests"] += 1
        expected[tenant]["prompt"] += prompt_tokens(body)
        expected[tenant]["completion"] += count_tokens(fake_openai.answer_for(body))

    for r in poison_answers:
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "message": r.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": "model",
            "code": "invalid_text",
        }

    assert await writer.flush(timeout_s=30), "the writer is stuck"
    assert await landed(database, good_ids) == set(good_ids)
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}
    for tenant, headers in tenants.items():
        usage = await client.get("/api/v1/usage", headers=headers, params={**window, "group_by": "tenant"})
        assert usage.status_code == 200, usage.text
        [row] = usage.json()["data"]
        want = expected[tenant]
        assert (row["tenant"], row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (
            tenant,
            want["requests"],
            want["prompt"],
            want["completion"],
        )
    ready = await client.get("/health/ready")
    assert ready.status_code == 200


async def test_a_row_the_database_refuses_goes_to_the_dead_letter_table(
    client: httpx.AsyncClient, pg_ctx: Any, fake_openai: FakeOpenAI, mint: Callable[..., str], database: Database
) -> None:
    _, writer = pg_ctx
    a, b = bearer(mint, "acme-dl"), bearer(mint, "globex-dl")
    ids: list[str] = []
    fake_openai.push("small-upstream", "ok", "huge_usage", "ok")
    for headers in (a, b, a):
        r = await client.post("/api/v1/chat/completions", headers=headers, json=chat_body("count these words"))
        assert r.status_code == 200, r.text  # the caller is answered either way
        ids.append(r.headers["x-request-id"])
    assert await writer.flush(timeout_s=30)
    assert await landed(database, ids) == {ids[0], ids[2]}
    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, row_id, tenant, payload->>'prompt_tokens', error_class FROM dead_letters"
        )
        rows = await cur.fetchall()
    assert rows == [("request_log", ids[1], "globex-dl", str(HUGE_USAGE), "NumericValueOutOfRange [22003]")]


SURROGATE_BODY = b'{"model": "small", "messages": [{"role": "user", "content": "a\\ud800b"}]}'


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/api/v1/chat/completions", chat_body("hello\x00world"), "messages[0].content"),
        ("POST", "/api/v1/chat/completions", {**chat_body("hi"), "user": "u\x00"}, "user"),
        ("POST", "/api/v1/chat/completions", SURROGATE_BODY, "messages[0].content"),
        ("POST", "/api/v1/route", chat_body("hi", "auto\x00"), "model"),
        ("POST", "/api/v1/jobs", chat_body("job \x00 content"), "messages[0].content"),
        ("POST", "/api/v1/jobs", {**chat_body("hi"), "metadata": {"k": "v\x00"}}, "metadata.k"),
        ("POST", "/api/v1/jobs", {**chat_body("hi"), "metadata": {"k\x00": "v"}}, "metadata"),
        ("POST", "/api/v1/feedback", {"request_id": "r\x00", "score": 1.0}, "request_id"),
        ("POST", "/api/v1/feedback", {"request_id": "r", "score": 1.0, "comment": "c\x00"}, "comment"),
        ("POST", "/api/v1/examples", {"prompt": "p\x00", "outcomes": {"small": 1.0}}, "prompt"),
        ("POST", "/api/v1/examples", {"prompt": "p", "outcomes": {"small\x00": 1.0}}, "outcomes"),
        ("GET", "/api/v1/usage?group_by=%00", None, "group_by"),
        ("GET", "/api/v1/examples?limit=1%00", None, "limit"),
    ],
)
async def test_unstorable_text_anywhere_is_a_400_naming_the_field(
    client: httpx.AsyncClient,
    pg_ctx: Any,
    mint: Callable[..., str],
    database: Database,
    method: str,
    path: str,
    body: Any,
    param: str,
) -> None:
    headers = bearer(mint, "acme-nul", ALL)
    if isinstance(body, bytes):
        r = await client.request(method, path, headers={**headers, "content-type": "application/json"}, content=body)
    else:
        r = await client.request(method, path, headers=headers, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["type"], err["param"], err["code"]) == ("invalid_request_error", param, "invalid_text")
    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE tenant = 'acme-nul'")
        row = await cur.fetchone()
    assert row == (0,)
