"""Retries, fallback along the ranked candidates, stream failure semantics, circuit breakers."""

from __future__ import annotations

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from shared.circuit.memory import MemoryCircuitBreaker
from shared.config import Settings
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI

CHAT = "/api/v1/chat/completions"
PROMPT = {"model": "auto:quality", "messages": [{"role": "user", "content": "Explain general relativity briefly."}]}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def ranked(client: httpx.AsyncClient) -> list[str]:
    d = (await client.post("/api/v1/route", json=PROMPT)).json()
    return [c["model"] for c in sorted((c for c in d["candidates"] if c["rank"]), key=lambda c: c["rank"])]


async def test_429_with_retry_after_is_retried_on_the_same_model(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    first = (await ranked(client))[0]
    before = metric("llm_router_retries_total", model=first, reason="rate_limited")
    fake_openai.push(f"{first}-upstream", "429")
    r = await client.post(CHAT, json=PROMPT)
    assert r.status_code == 200
    assert r.headers["x-router-model"] == first
    assert "x-router-fallbacks" not in r.headers
    assert len(fake_openai.calls(f"{first}-upstream")) == 2
    assert metric("llm_router_retries_total", model=first, reason="rate_limited") == before + 1


async def test_500s_fall_back_to_the_next_ranked_model(client: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    first, second = (await ranked(client))[:2]
    before = metric("llm_router_fallbacks_total", from_model=first, to_model=second, reason="unavailable")
    fake_openai.push(f"{first}-upstream", "500", "500")
    r = await client.post(CHAT, json=PROMPT)
    assert r.status_code == 200
    assert r.headers["x-router-model"] == second
    assert r.headers["x-router-fallbacks"] == f"{first}>{second}:unavailable"
    assert r.json()["model"] == second
    assert metric("llm_router_fallbacks_total", from_model=first, to_model=second, reason="unavailable") == before + 1


async def test_explicit_model_does_not_fall_back(client: httpx.AsyncClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.push("small-upstream", "500", "500")
    r = await client.post(CHAT, json={**PROMPT, "model": "small"})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "upstream_unavailable"


async def test_context_too_long_falls_back_but_is_not_retried(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    first, second = (await ranked(client))[:2]
    fake_openai.push(f"{first}-upstream", "context")
    r = await client.post(CHAT, json=PROMPT)
    assert r.status_code == 200 and r.headers["x-router-model"] == second
    assert len(fake_openai.calls(f"{first}-upstream")) == 1
    assert r.headers["x-router-fallbacks"].endswith(":context_too_long")


async def test_fallback_reasons_are_configurable(
    make_context: ContextFactory, settings: Settings, client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    await make_context(settings=settings.model_copy(update={"fallback_on": "rate_limited"}))
    first = (await ranked(client))[0]
    fake_openai.push(f"{first}-upstream", "500", "500")
    r = await client.post(CHAT, json=PROMPT)
    assert r.status_code == 503


async def test_a_hanging_model_times_out_and_falls_back(
    make_context: ContextFactory, settings: Settings, client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    await make_context(
        settings=settings.model_copy(update={"upstream_read_timeout_s": 0.5, "max_attempts_per_model": 1})
    )
    first, second = (await ranked(client))[:2]
    fake_openai.push(f"{first}-upstream", "hang")
    r = await client.post(CHAT, json=PROMPT)
    assert r.status_code == 200 and r.headers["x-router-model"] == second
    assert r.headers["x-router-fallbacks"] == f"{first}>{second}:timeout"


async def test_stream_failing_before_the_first_byte_falls_back(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    first, second = (await ranked(client))[:2]
    fake_openai.push(f"{first}-upstream", "break_before", "break_before")
    r = await client.post(CHAT, json={**PROMPT, "stream": True})
    assert r.status_code == 200
    assert r.headers["x-router-model"] == second
    assert r.headers["x-router-fallbacks"] == f"{first}>{second}:unavailable"
    assert r.text.endswith("data: [DONE]\n\n")


async def test_stream_failing_after_the_first_byte_ends_with_an_error_event(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    first = (await ranked(client))[0]
    fake_openai.push(f"{first}-upstream", "break_after")
    r = await client.post(CHAT, json={**PROMPT, "stream": True})
    assert r.status_code == 200  # the status line was already sent
    blocks = [b[6:] for b in r.text.split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "[DONE]"
    error = orjson.loads(blocks[-2])
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] in {"upstream_unavailable", "upstream_timeout"}
    contents = [orjson.loads(b) for b in blocks[:-2]]
    assert all(c["model"] == first for c in contents)
    assert len(fake_openai.requests) == 1  # no second model was tried once bytes were out


async def test_circuit_opens_skips_probes_and_closes() -> None:
    now = [0.0]
    cb = MemoryCircuitBreaker(failure_threshold=3, window_s=10, cooldown_s=5, clock=lambda: now[0])
    for _ in range(2):
        await cb.record_failure("m")
    assert await cb.open_models() == set()
    await cb.record_failure("m")
    assert await cb.open_models() == {"m"}
    assert (await cb.states())["m"] == "open"
    now[0] = 6.0  # cooldown over: one probe goes through
    assert (await cb.states())["m"] == "half_open"
    assert await cb.open_models() == set()  # this caller is the probe
    assert await cb.open_models() == {"m"}  # others wait for it
    await cb.record_failure("m")  # the probe failed: open again
    assert (await cb.states())["m"] == "open"
    now[0] = 12.0
    assert await cb.open_models() == set()
    await cb.record_success("m")
    assert (await cb.states())["m"] == "closed"
    assert await cb.open_models() == set()


async def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    now = [0.0]
    cb = MemoryCircuitBreaker(failure_threshold=3, window_s=10, cooldown_s=5, clock=lambda: now[0])
    for t in (0.0, 6.0, 12.0, 18.0):
        now[0] = t
        await cb.record_failure("m")
    assert await cb.open_models() == set()


async def test_open_circuit_is_skipped_by_routing(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, make_context: ContextFactory
) -> None:
    ctx = await make_context()
    first, second = (await ranked(client))[:2]
    for _ in range(5):
        await ctx.circuit.record_failure(first)
    r = await client.post(CHAT, json=PROMPT)
    assert r.headers["x-router-model"] == second
    assert fake_openai.calls(f"{first}-upstream") == []
    d = (await client.post("/api/v1/route", json=PROMPT)).json()
    assert {"model": first, "reason": "circuit open"}.items() <= next(
        c for c in d["candidates"] if c["model"] == first
    ).items()


@pytest.mark.parametrize("status", ["500"])
async def test_transient_failures_feed_the_circuit(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI, make_context: ContextFactory, status: str
) -> None:
    ctx = await make_context()
    fake_openai.push("small-upstream", *([status] * 10))
    for _ in range(5):  # five failed requests (each after its retry) open the circuit
        await client.post(CHAT, json={**PROMPT, "model": "small"})
    assert (await ctx.circuit.states())["small"] == "open"
