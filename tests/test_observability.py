"""What operations staff see: spans (GenAI conventions, fallback events, one trace per job),
Prometheus metrics, structured logs, Application Insights export, shared circuit state."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.cache.redis import RedisCache
from shared.circuit.base import CircuitPolicy
from shared.circuit.redis import RedisCircuitBreaker
from shared.config import Settings
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.store.job_store import MemoryJobStore
from shared.telemetry import JsonFormatter, configure_tracing, tracing_changed
from tests.conftest import ROOT, ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread
from tests.plugins.databases import RedisControl

CHAT = "/api/v1/chat/completions"
PROMPT = {"model": "auto:quality", "messages": [{"role": "user", "content": "Explain the photoelectric effect."}]}

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans_exporter() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    tracing_changed()  # the router re-checks for a provider once a second; now, at once
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans(spans_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    spans_exporter.clear()
    yield spans_exporter
    spans_exporter.clear()


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in exporter.get_finished_spans():
        out.setdefault(s.name, []).append(s)
    return out


async def first_two(client: httpx.AsyncClient) -> tuple[str, str]:
    d = (await client.post("/api/v1/route", json=PROMPT)).json()
    return d["model"], d["fallbacks"][0]


async def test_spans_of_a_request_with_a_fallback(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    first, second = await first_two(client)
    spans.clear()
    fake_openai.push(f"{first}-upstream", "500", "500")
    r = await client.post(
        CHAT, json=PROMPT, headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )
    assert r.status_code == 200 and r.headers["x-router-model"] == second
    named = by_name(spans)
    [server] = named[f"POST {CHAT}"]
    [route] = named["route"]
    [failed] = named[f"chat {first}"]
    [served] = named[f"chat {second}"]
    [search] = named["vector_search"]
    # one trace, continuing the caller's
    assert {s.context.trace_id for s in (server, route, failed, served, search)} == {0x0AF7651916CD43DD8448EB211C80319C}
    assert route.parent.span_id == server.context.span_id
    assert route.attributes["llm_router.chosen_model"] == first
    assert route.attributes["llm_router.policy"] == "quality"
    assert 0 <= route.attributes["llm_router.predicted_quality"] <= 1
    assert route.attributes["llm_router.decision_ms"] >= 0
    assert search.attributes["db.system"] == "local" and search.attributes["llm_router.neighbours"] > 0
    # GenAI semantic conventions on the model calls
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert failed.attributes["error.type"] == "upstream_unavailable"
    assert failed.attributes["llm_router.attempts"] == 2
    usage = r.json()["usage"]
    assert served.kind == trace.SpanKind.CLIENT
    assert served.attributes["gen_ai.operation.name"] == "chat"
    assert served.attributes["gen_ai.system"] == "openai"
    assert served.attributes["gen_ai.request.model"] == f"{second}-upstream"
    assert served.attributes["gen_ai.response.model"] == second
    assert served.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert served.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert tuple(served.attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert served.attributes["llm_router.cost_usd"] > 0
    [event] = [e for e in server.events if e.name == "fallback"]
    assert dict(event.attributes) == {
        "llm_router.fallback.from": first,
        "llm_router.fallback.to": second,
        "llm_router.fallback.reason": "unavailable",
    }


async def test_stream_span_carries_usage_and_mid_stream_errors(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    r = await client.post(CHAT, json={**PROMPT, "model": "small", "stream": True})
    assert r.status_code == 200
    [ok] = by_name(spans)["chat small"]
    assert ok.attributes["gen_ai.usage.output_tokens"] > 0
    spans.clear()
    fake_openai.push("small-upstream", "break_after")
    await client.post(CHAT, json={**PROMPT, "model": "small", "stream": True})
    [broken] = by_name(spans)["chat small"]
    assert broken.status.status_code == trace.StatusCode.ERROR


async def test_prompt_text_never_reaches_spans_or_logs(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    secret_prompt = "my-very-private-prompt-words"
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        fake_openai.push("small-upstream", "500", "500")
        await client.post(CHAT, json={"model": "small", "messages": [{"role": "user", "content": secret_prompt}]})
        fake_openai.push("big-upstream", "500", "500")
        await client.post(
            CHAT, json={"model": "auto:quality", "messages": [{"role": "user", "content": secret_prompt}]}
        )
    finally:
        logging.getLogger().removeHandler(handler)
    dumped = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    assert secret_prompt not in dumped
    assert secret_prompt not in buf.getvalue()


async def test_logs_are_json_with_request_and_trace_ids(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        first, _ = await first_two(client)
        fake_openai.push(f"{first}-upstream", "500", "500")
        r = await client.post(CHAT, json=PROMPT)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    lines = [orjson.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    [fallback] = [line for line in lines if line["message"].startswith("fallback ")]
    assert fallback["request_id"] == r.headers["x-request-id"]
    assert len(fallback["trace_id"]) == 32 and len(fallback["span_id"]) == 16
    assert fallback["fallback_from"] == first and fallback["level"] == "WARNING"


async def test_metrics_show_fallbacks_tokens_cost_and_circuits(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, make_context: ContextFactory
) -> None:
    ctx = await make_context()
    first, second = await first_two(client)
    fake_openai.push(f"{first}-upstream", "500", "500")
    await client.post(CHAT, json=PROMPT)
    for _ in range(5):
        await ctx.circuit.record_failure(first)
    text = (await client.get("/metrics")).text
    assert f'llm_router_fallbacks_total{{from_model="{first}",reason="unavailable",to_model="{second}"}}' in text
    assert f'llm_router_circuit_state{{model="{first}"}} 2.0' in text
    assert f'llm_router_tokens_total{{direction="output",model="{second}"}}' in text
    assert f'llm_router_cost_usd_total{{model="{second}"}}' in text
    for name in (
        "llm_router_requests_total",
        "llm_router_request_duration_ms_bucket",
        "llm_router_overhead_duration_ms_bucket",
        "llm_router_decision_duration_ms_bucket",
        "llm_router_upstream_duration_ms_bucket",
        "llm_router_dependency_up",
        "llm_router_backup_age_hours",
        "llm_router_jobs_total",
        "llm_router_log_rows_dropped_total",
    ):
        assert name in text, name


@pytest.fixture
async def jobs_client(
    make_context: ContextFactory, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, LocalBus]]:
    import function_app
    from devtools.localhost import build_app

    bus = LocalBus(redelivery_delay_s=0.01)
    await make_context(jobs=JobService(settings, MemoryJobStore(), bus))
    app = build_app(function_app.app, bus=bus, timers=False)
    bus.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router.test") as c:
        yield c, bus
    await bus.close()


async def test_one_job_is_one_trace(
    jobs_client: tuple[httpx.AsyncClient, LocalBus], fake_openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    client, bus = jobs_client
    r = await client.post("/api/v1/jobs", json={"model": "small", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 202
    await bus.drain(timeout_s=30)
    named = by_name(spans)
    [send] = named["servicebus send"]
    [process] = named["servicebus process"]
    [call] = named["chat small"]
    assert send.kind == trace.SpanKind.PRODUCER and process.kind == trace.SpanKind.CONSUMER
    assert send.context.trace_id == process.context.trace_id == call.context.trace_id
    assert process.parent.span_id == send.context.span_id


async def test_redis_circuit_state_is_shared_by_replicas(redis_control: RedisControl) -> None:
    policy = CircuitPolicy(failure_threshold=3, window_s=30, cooldown_s=0.3)
    a_cache, b_cache = RedisCache(redis_control.url), RedisCache(redis_control.url)
    await a_cache.client.flushdb()
    replica_a = RedisCircuitBreaker(a_cache.client, policy, cache_s=0.0)
    replica_b = RedisCircuitBreaker(b_cache.client, policy, cache_s=0.0)
    try:
        for _ in range(3):
            await replica_a.record_failure("m")
        assert await replica_b.open_models() == {"m"}  # the other replica sees it open
        assert (await replica_b.states())["m"] == "open"
        import asyncio

        await asyncio.sleep(0.35)
        # half-open: exactly one replica gets the probe
        blocked = [await replica_a.open_models(), await replica_b.open_models()]
        assert sorted(len(b) for b in blocked) == [0, 1]
        await replica_a.record_success("m")
        assert await replica_b.open_models() == set()
        assert (await replica_b.states())["m"] == "closed"
        # Redis down: no exception, in-process state takes over
        redis_control.stop()
        for _ in range(3):
            await replica_a.record_failure("x")
        assert "x" in await replica_a.open_models()
        assert replica_a.degraded
    finally:
        redis_control.start()
        await a_cache.close()
        await b_cache.close()


def test_multiprocess_metrics_are_aggregated(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    inc = "from shared.metrics import REQUESTS; REQUESTS.labels('m', 'cost', '200', 'miss').inc()"
    for _ in range(2):  # two worker processes
        subprocess.run([sys.executable, "-c", inc], env=env, cwd=ROOT, check=True, timeout=120)
    out = subprocess.run(
        [sys.executable, "-c", "from shared.metrics import render; print(render()[0].decode())"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert 'llm_router_requests_total{cache="miss",model="m",policy="cost",status="200"} 2.0' in out


def test_telemetry_is_configured_once() -> None:
    assert (
        configure_tracing(
            Settings(
                python_applicationinsights_enable_telemetry=True,
                applicationinsights_connection_string="InstrumentationKey=x",
            )
        )
        == "functions-worker"
    )
    assert configure_tracing(Settings()) == "off"


def test_spans_reach_application_insights(tmp_path: Path) -> None:
    """configure_azure_monitor() with a connection string whose ingestion endpoint is a local fake
    of the Application Insights track API: the real exporter sends the span envelopes there."""
    received: list[Any] = []

    async def track(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        items = orjson.loads(body)
        received.extend(items if isinstance(items, list) else [items])
        return Response(
            orjson.dumps({"itemsReceived": len(received), "itemsAccepted": len(received), "errors": []}),
            media_type="application/json",
        )

    app = Starlette(routes=[Route("/{path:path}", track, methods=["POST"])])
    with ServerThread(app) as ingest:
        script = textwrap.dedent(
            f"""
            from shared.config import Settings
            from shared.telemetry import configure_tracing, tracer
            from opentelemetry import trace
            conn = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingest.url}"
            assert configure_tracing(Settings(applicationinsights_connection_string=conn)) == "azure-monitor"
            with tracer().start_as_current_span("route") as span:
                span.set_attribute("llm_router.chosen_model", "small")
            trace.get_tracer_provider().force_flush()
            """
        )
        env = {**os.environ, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "OTEL_TRACES_SAMPLER": "always_on"}
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True)
    names = [i.get("data", {}).get("baseData", {}).get("name") for i in received]
    assert "route" in names
    [route] = [i for i in received if i.get("data", {}).get("baseData", {}).get("name") == "route"]
    assert route["data"]["baseData"]["properties"]["llm_router.chosen_model"] == "small"
