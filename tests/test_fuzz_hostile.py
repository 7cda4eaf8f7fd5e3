"""Property-based fuzzing (Hypothesis) of every endpoint with what a hostile caller sends: strings
with NUL and lone surrogates, huge and tiny numbers, extreme dates, unknown fields. It runs the
local host on 127.0.0.1 with the real PostgreSQL request-log writer, job store, feedback and usage
stores, and asserts: no 5xx for any request, and no lost request-log row (every answered chat is
logged, nothing is dead-lettered or dropped, the writer is not stuck).

This is the suite that would have found issue 16's findings 1, 6, 7 and 8: the NUL model that
stopped the writer, NUL in jobs and feedback (503), `to=0001-01-02` (500). Bounded: a fixed number
of derandomized examples per endpoint."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

import function_app
from devtools.localhost import build_app
from shared.auth.authenticator import BearerAuthenticator
from shared.auth.base import Role
from shared.auth.service_tokens import ServiceTokens
from shared.catalog import Catalog
from shared.composition.assemble import Parts, assemble
from shared.composition.process import set_services
from shared.index.local import LocalIndex
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.store.db import Database
from shared.store.feedback import FeedbackStore
from shared.store.job_store import PostgresJobStore
from shared.store.request_log import PostgresRequestLog
from shared.store.usage import UsageStore
from tests.conftest import local_models
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.served_host import host_settings
from tests.fakes.server import ServerThread

MAX_EXAMPLES = 30
TENANT = "fuzz-hostile"
ALL_ROLES = [r.value for r in Role]

# --- what a hostile caller sends ----------------------------------------------------------------

SPECIAL = ["\x00", "\ud800", "\udfff", "\ud83d", "\x00\x00", "\u2028", "\ufeff", "😀", "é", "'", '"', "\\", "%00"]
# strings PostgreSQL cannot store, drawn often: they are what poisoned the request log
unstorable = st.sampled_from(["\x00", "auto\x00", "\ud800", "x\udfffy", "\x00\ud83d", "a" * 300 + "\x00"])
hostile_text = st.one_of(
    unstorable, st.lists(st.one_of(st.text(max_size=12), st.sampled_from(SPECIAL)), max_size=6).map("".join)
)
huge_or_tiny = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 1e308, 5e-324, -0.0, 10**30]),
)
extreme_date = st.one_of(
    st.sampled_from(
        [
            "0001-01-01",
            "0001-01-02",
            "9999-12-31",
            "9999-12-31T23:59:59.999999-14:00",
            "0001-01-01T00:00:00+14:00",
            "1999-12-31T23:59:59Z",
            "2200-12-31T23:59:59-12:00",
            "2026-02-30",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    hostile_text,
)
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), huge_or_tiny, hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)),
    max_leaves=8,
)
model_name = st.one_of(
    st.sampled_from(["auto", "auto:cost", "small", "big", "auto\x00", "gemini-1.5-pro"]), hostile_text
)


@st.composite
def wild_chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Anything goes: hostile values in every field, most of them invalid."""
    body: dict[str, Any] = {
        "model": draw(model_name),
        "messages": [{"role": draw(st.sampled_from(["user", "system", "x\x00"])), "content": draw(hostile_text)}],
    }
    for name in draw(st.sets(st.sampled_from(["temperature", "max_tokens", "seed", "top_p", "top_logprobs"]))):
        body[name] = draw(huge_or_tiny)
    if draw(st.booleans()):
        body[draw(st.sampled_from(["user", "metadata", "routing", "unknown_field", "\x00"]))] = draw(json_value)
    return body


@st.composite
def plausible_chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Well formed but for one hostile string: the kind of body that used to get past validation."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["auto", "auto:cost", "small", "big"])),
        "messages": [{"role": "user", "content": draw(st.sampled_from(["hello there", "why is the sky blue?"]))}],
        "temperature": 0,
    }
    for where in draw(st.sets(st.sampled_from(["model", "content", "user", "stop", "metadata"]), min_size=1)):
        text = draw(hostile_text)
        if where == "content":
            body["messages"][0]["content"] = text or "x"
        elif where == "metadata":
            body["metadata"] = {draw(hostile_text): text}
        else:
            body[where] = text
    return body


def chat_bodies() -> Any:
    return st.one_of(plausible_chat_bodies(), wild_chat_bodies())


# --- the host -----------------------------------------------------------------------------------


@dataclass
class Host:
    url: str
    headers: dict[str, str]
    pg_url: str
    writer: list[PostgresRequestLog] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # request ids of chat answers
    server_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory,
    fake_openai_server: tuple[FakeOpenAI, ServerThread],
    starter_index: Any,
    jwt_secret: str,
    service_tokens: ServiceTokens,
    pg_url: str,
) -> Iterator[Host]:
    """The local host with auth on and PostgreSQL behind logs, usage, feedback and jobs, built in
    the server's own event loop (the psycopg pool belongs to one loop)."""
    upstream = fake_openai_server[1].url + "/v1"
    encoder, _, priors = starter_index
    s = host_settings(
        tmp_path_factory.mktemp("fuzz-hostile"),
        jwt_secret,
        request_deadline_s=5.0,
        upstream_read_timeout_s=2.0,
        quota_requests_per_minute=100_000,
    )
    token = service_tokens.mint(TENANT, ALL_ROLES, ttl_s=3600)
    result = Host("", {"Authorization": f"Bearer {token}"}, pg_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        db = Database(pg_url, max_size=4)
        await db.open()
        await db.migrate()
        writer = PostgresRequestLog(db, flush_interval_s=0.05)
        result.writer.append(writer)
        ctx = await assemble(
            s,
            Parts(
                catalog=Catalog(local_models(upstream), {"gemini-1.5-pro": "gemini-2.5-pro"}),
                encoder=encoder,
                index=LocalIndex(encoder.dim),  # its own: examples the fuzzer adds stay here
                priors=priors,
                authenticator=BearerAuthenticator(service_tokens),
                request_log=writer,
                usage=UsageStore(db, writer),
                feedback=FeedbackStore(db, writer),
                jobs=JobService(s, PostgresJobStore(db), LocalBus()),
            ),
        )
        set_services(ctx)
        try:
            yield
        finally:
            set_services(None)
            await ctx.close()
            await db.close()

    app = Starlette(
        routes=[Mount("/", app=build_app(function_app.app, bus=LocalBus(), timers=False))], lifespan=lifespan
    )
    with ServerThread(app) as server:
        result.url = server.url
        yield result


def call(host: Host, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = dict(host.headers)
    content = None
    if body is not None:
        # ASCII-escaped like most clients send it: a lone surrogate travels as a \ud800 escape
        content = json.dumps(body, ensure_ascii=True).encode()
        headers["content-type"] = "application/json"
    r = httpx.request(method, host.url + path, headers=headers, content=content, timeout=30)
    if r.status_code >= 500:
        host.server_errors.append(f"{method} {path} {body!r:.300}: {r.status_code} {r.text[:300]}")
    return r


def fuzz(strategy: Any, max_examples: int = MAX_EXAMPLES) -> Any:
    return lambda test: given(strategy)(
        settings(
            max_examples=max_examples,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(test)
    )


def query(params: dict[str, Any]) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, errors="surrogatepass")


# --- the properties -----------------------------------------------------------------------------


def test_chat_and_route(host: Host) -> None:
    @fuzz(chat_bodies())
    def run(body: dict[str, Any]) -> None:
        for path in ("/api/v1/chat/completions", "/api/v1/route"):
            r = call(host, "POST", path, body)
            if path.endswith("completions") and r.status_code == 200:
                host.answered.append(r.headers["x-request-id"])

    host.server_errors.clear()
    run()
    assert host.server_errors == []


def test_jobs(host: Host) -> None:
    @fuzz(st.tuples(chat_bodies(), json_value, hostile_text))
    def run(args: tuple[dict[str, Any], Any, str]) -> None:
        body, metadata, job_id = args
        call(host, "POST", "/api/v1/jobs", {**body, "metadata": metadata})
        call(host, "GET", "/api/v1/jobs/" + urllib.parse.quote(job_id, safe="", errors="surrogatepass"))

    host.server_errors.clear()
    run()
    assert host.server_errors == []


def test_feedback(host: Host) -> None:
    body = st.fixed_dictionaries(
        {"request_id": hostile_text, "score": huge_or_tiny},
        optional={"comment": hostile_text, "model": hostile_text, "extra\x00": json_value},
    )

    @fuzz(body)
    def run(b: dict[str, Any]) -> None:
        call(host, "POST", "/api/v1/feedback", b)

    host.server_errors.clear()
    run()
    assert host.server_errors == []


def test_examples(host: Host) -> None:
    example = st.fixed_dictionaries(
        {"prompt": hostile_text, "outcomes": st.dictionaries(hostile_text, huge_or_tiny, max_size=3)},
        optional={"weight": huge_or_tiny, "source": hostile_text, "category": hostile_text, "shared": json_value},
    )

    @fuzz(st.tuples(example, hostile_text, hostile_text))
    def run(args: tuple[dict[str, Any], str, str]) -> None:
        b, limit, offset = args
        call(host, "POST", "/api/v1/examples", b)
        call(host, "GET", "/api/v1/examples?" + query({"limit": limit, "offset": offset}))

    host.server_errors.clear()
    run()
    assert host.server_errors == []


def test_usage_and_read_only_endpoints(host: Host) -> None:
    params = st.fixed_dictionaries(
        {},
        optional={
            "from": extreme_date,
            "to": extreme_date,
            "group_by": st.one_of(st.sampled_from(["model", "day", "tenant"]), hostile_text),
            "tenant": hostile_text,
            "x": hostile_text,
        },
    )

    other = st.sampled_from(["/api/v1/models", "/api/v1/health", "/health/ready", "/metrics", "/api/v1/openapi.json"])

    @fuzz(st.tuples(params, other))
    def run(args: tuple[dict[str, Any], str]) -> None:
        p, path = args
        q = query(p)
        call(host, "GET", f"/api/v1/usage?{q}")
        call(host, "GET", f"{path}?{q}")

    host.server_errors.clear()
    run()
    assert host.server_errors == []


def test_no_request_log_row_was_lost(host: Host) -> None:
    """Runs last: every chat the fuzzer got an answer for is in the request log; nothing was
    refused, dropped or left waiting."""
    assert host.answered, "the fuzzer never produced a valid chat request"
    [writer] = host.writer
    deadline = time.monotonic() + 60
    found: set[str] = set()
    while time.monotonic() < deadline:
        with psycopg.connect(host.pg_url, autocommit=True) as conn:
            rows = conn.execute("SELECT id FROM request_log WHERE id = ANY(%s)", (host.answered,)).fetchall()
        found = {r[0] for r in rows}
        if found == set(host.answered) and writer.pending_count == 0:
            break
        time.sleep(0.2)
    assert found == set(host.answered)
    assert writer.pending_count == 0 and writer.dropped == 0 and writer.last_error is None
    assert getattr(writer, "dead_lettered", 0) == 0  # the edge let no unstorable text through
