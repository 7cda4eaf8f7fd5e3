"""End to end over real HTTP with Vertex AI models: the local host calls the fake Vertex server
through the real google-genai SDK (generateContent and streamGenerateContent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import google.oauth2.credentials
import openai
import pytest

from shared.catalog import Catalog, ModelSpec
from shared.config import Settings
from shared.providers.registry import ProviderRegistry
from shared.queue.local import LocalBus
from tests.conftest import ContextFactory
from tests.fakes.server import ServerThread
from tests.fakes.vertex import FakeVertex, count_tokens, serve


@pytest.fixture(scope="module")
def vertex() -> Iterator[FakeVertex]:
    yield from serve()


def gemini(id_: str, tier: str, price_in: float, price_out: float) -> ModelSpec:
    return ModelSpec(
        id=id_,
        provider="vertex",
        upstream_model=id_,
        tier=tier,  # type: ignore[arg-type]
        context_window=1_048_576,
        max_output_tokens=65_536,
        input_usd_per_mtok=price_in,
        output_usd_per_mtok=price_out,
        capabilities=frozenset({"tools", "vision", "json"}),
    )


@pytest.fixture
async def router_url(make_context: ContextFactory, settings: Settings, vertex: FakeVertex) -> AsyncIterator[str]:
    import function_app
    from devtools.localhost import build_app

    vertex.reset()
    s = settings.model_copy(
        update={
            "google_cloud_project_id": "test-project",
            "vertex_ai_location": "europe-west4",
            "vertex_ai_base_url": vertex.url,
        }
    )
    catalog = Catalog(
        [gemini("gemini-2.5-pro", "frontier", 1.25, 10.0), gemini("gemini-2.5-flash-lite", "economy", 0.1, 0.4)]
    )
    creds = google.oauth2.credentials.Credentials(token="test-token")
    ctx = await make_context(settings=s, catalog=catalog, providers=ProviderRegistry(s, vertex_credentials=creds))
    server = ServerThread(build_app(function_app.app, bus=LocalBus(), timers=False)).start()
    try:
        yield server.url
    finally:
        server.stop()
        assert ctx.catalog is catalog


async def test_completion_and_stream_through_vertex(router_url: str, vertex: FakeVertex) -> None:
    client = openai.AsyncOpenAI(base_url=f"{router_url}/api/v1", api_key="x", max_retries=0)
    prompt = "Summarise the plot of Hamlet in one sentence."
    done = await client.chat.completions.create(
        model="gemini-2.5-flash-lite",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
        temperature=0.3,
        max_tokens=64,
    )
    text = done.choices[0].message.content or ""
    assert done.model == "gemini-2.5-flash-lite"
    assert done.choices[0].finish_reason == "stop"
    req = vertex.last
    assert req.model == "gemini-2.5-flash-lite" and req.location == "europe-west4" and req.project == "test-project"
    assert "Be brief." in req.system_text
    assert req.generation_config.get("maxOutputTokens", req.generation_config.get("max_output_tokens")) == 64
    assert done.usage is not None and done.usage.completion_tokens == count_tokens(text)
    assert done.usage.prompt_tokens == count_tokens("Be brief.") + count_tokens(prompt)

    stream = await client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, model = [], None, None
    async for chunk in stream:
        model = chunk.model
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert model in {"gemini-2.5-pro", "gemini-2.5-flash-lite"}
    assert vertex.last.stream
    assert usage is not None and usage.completion_tokens == count_tokens("".join(pieces))
    await client.close()


async def test_vertex_failures_fall_back_to_the_other_gemini(router_url: str, vertex: FakeVertex) -> None:
    client = openai.AsyncOpenAI(base_url=f"{router_url}/api/v1", api_key="x", max_retries=0)
    body = {"model": "auto:quality", "messages": [{"role": "user", "content": "What is entropy?"}]}
    decision: dict = await client.post("/route", cast_to=object, body=body)  # type: ignore[type-arg]
    first, second = decision["model"], decision["fallbacks"][0]
    vertex.rate_limit(retry_after="0").fail(503)  # both attempts on the first model fail
    raw = await client.chat.completions.with_raw_response.create(**body)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    assert raw.headers["x-router-model"] == second
    assert raw.headers["x-router-fallbacks"] == f"{first}>{second}:unavailable"
    assert [r.model for r in vertex.requests] == [first, first, second]
    await client.close()
