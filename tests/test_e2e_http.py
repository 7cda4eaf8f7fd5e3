"""End to end over real HTTP: the local host on a loopback port, the official openai client,
and the decorated functions called directly with request objects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest

from shared.composition.services import Services
from shared.queue.local import LocalBus
from tests.conftest import ContextFactory
from tests.fakes.openai_upstream import FakeOpenAI, count_tokens
from tests.fakes.server import ServerThread
from tests.requests import http_request, user_function


@pytest.fixture
async def router_url(ctx: Services) -> AsyncIterator[str]:
    import function_app
    from devtools.localhost import build_app

    server = ServerThread(build_app(function_app.app, bus=LocalBus(), timers=False)).start()
    try:
        yield server.url
    finally:
        server.stop()


async def test_openai_client_gets_a_completion_and_a_stream(router_url: str, fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=f"{router_url}/api/v1", api_key="unused-auth-disabled", max_retries=0)
    completion = await client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Name three primary colours."}], temperature=0
    )
    assert completion.choices[0].message.content
    assert completion.model in {"big", "small"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_tokens(completion.choices[0].message.content)

    stream = await client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "Count to five please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    text = "".join(pieces)
    assert text.startswith("Answer from small-upstream")
    assert usage is not None and usage.completion_tokens == count_tokens(text)
    await client.close()


async def test_openai_client_sees_router_errors_as_api_errors(router_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{router_url}/api/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], n=3)
    await client.close()


async def test_real_http_streaming_and_headers(router_url: str, fake_openai: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=router_url) as http:
        async with http.stream(
            "POST",
            "/api/v1/chat/completions",
            json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hello"}]},
        ) as r:
            assert r.status_code == 200
            assert r.headers["x-router-model"] in {"big", "small"}
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        assert orjson.loads(lines[0][6:])["object"] == "chat.completion.chunk"
        assert (await http.get("/health/live")).json() == {"status": "ok"}


async def test_decorated_functions_called_directly(ctx: Services, fake_openai: FakeOpenAI) -> None:
    chat = user_function("chat_completions")
    resp = await chat(
        http_request("POST", "/api/v1/chat/completions", {"messages": [{"role": "user", "content": "hi there"}]})
    )
    assert resp.status_code == 200
    data = orjson.loads(resp.body)
    assert data["object"] == "chat.completion"
    assert resp.headers["x-router-model"] == data["model"]

    bad = await chat(http_request("POST", "/api/v1/chat/completions", b"{oops"))
    assert bad.status_code == 400 and orjson.loads(bad.body)["error"]["code"] == "invalid_json"

    route = user_function("route_decision")
    decision = orjson.loads(
        (await route(http_request("POST", "/api/v1/route", {"messages": [{"role": "user", "content": "hi"}]}))).body
    )
    assert decision["model"] in {"big", "small"}

    models = orjson.loads((await user_function("list_models")(http_request("GET", "/api/v1/models"))).body)
    assert {m["id"] for m in models["data"]} == {"big", "small"}
    live = await user_function("health_live")(http_request("GET", "/health/live"))
    assert orjson.loads(live.body) == {"status": "ok"}


async def test_stream_function_returns_a_streaming_response(
    make_context: ContextFactory, fake_openai: FakeOpenAI
) -> None:
    await make_context()
    chat = user_function("chat_completions")
    resp = await chat(
        http_request(
            "POST",
            "/api/v1/chat/completions",
            {"model": "small", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
    )
    assert resp.status_code == 200
    assert resp.media_type == "text/event-stream"
    body = b"".join([chunk async for chunk in resp.body_iterator])
    assert body.endswith(b"data: [DONE]\n\n")
