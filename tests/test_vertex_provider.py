"""VertexProvider through the real google-genai SDK, against the fake Vertex AI server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import google.oauth2.credentials
import httpx
import pytest

from shared.catalog import ModelSpec
from shared.config import Settings
from shared.errors import (
    ContentFiltered,
    ContextTooLong,
    ProviderNotConfigured,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.providers.base import Timeouts
from shared.providers.vertex import VertexProvider
from shared.providers.vertex_client import RouterTransport
from shared.schemas import ChatCompletionRequest
from tests.fakes.vertex import FakeVertex, count_tokens, serve, service_account_info

SPEC = ModelSpec(
    id="gemini-2.5-flash-router",
    provider="vertex",
    upstream_model="gemini-2.5-flash",
    tier="balanced",
    context_window=1_048_576,
    max_output_tokens=65_536,
    input_usd_per_mtok=0.3,
    output_usd_per_mtok=2.5,
    capabilities=frozenset({"tools", "vision", "json"}),
)
TIMEOUTS = Timeouts(connect_s=2.0, read_s=10.0, stream_idle_s=10.0)
SHORT = Timeouts(connect_s=2.0, read_s=0.3, stream_idle_s=0.3)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def chat(*messages: dict[str, Any], **params: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": list(messages), **params})


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVertex]:
    yield from serve()


@pytest.fixture(autouse=True)
def _clean(fake: FakeVertex) -> None:
    fake.reset()


@pytest.fixture
async def provider(fake: FakeVertex) -> AsyncIterator[VertexProvider]:
    settings = Settings(
        google_cloud_project_id="test-project", vertex_ai_location="us-central1", vertex_ai_base_url=fake.url
    )
    # a static token: the SDK never refreshes it, so nothing leaves the machine
    p = VertexProvider.from_settings(settings, credentials=google.oauth2.credentials.Credentials(token="test-token"))
    yield p
    await p.aclose()


async def collect(p: VertexProvider, req: ChatCompletionRequest, timeouts: Timeouts = TIMEOUTS) -> list[dict[str, Any]]:
    return [c async for c in p.stream(req, SPEC, timeouts)]


# --- plain answers ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_completion_content_usage_and_wire_path(provider: VertexProvider, fake: FakeVertex) -> None:
    out = await provider.complete(chat(user("What is the capital of France?")), SPEC, TIMEOUTS)

    assert out["object"] == "chat.completion"
    assert out["id"].startswith("chatcmpl-")
    assert out["model"] == SPEC.id
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Echo: What is the capital of France?"}
    assert choice["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13}
    assert fake.last.usage == {"promptTokenCount": 6, "candidatesTokenCount": 7, "totalTokenCount": 13}

    rec = fake.last
    assert len(fake.requests) == 1
    assert rec.path == (
        "/v1beta1/projects/test-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    )
    assert rec.headers["authorization"] == "Bearer test-token"
    assert rec.headers["x-server-timeout"] == "10"  # the SDK forwards our read timeout as the server deadline
    assert "x-llm-router-connect-timeout" not in rec.headers  # consumed by the request hook
    assert rec.body["contents"] == [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}]


@pytest.mark.asyncio
async def test_streaming_chunks_and_final_usage(provider: VertexProvider, fake: FakeVertex) -> None:
    prompt = "please stream these seven words back now"
    chunks = await collect(provider, chat(user(prompt)))

    rec = fake.last
    assert rec.stream and rec.query == {"alt": "sse"}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == SPEC.id for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content_chunks = [c for c in chunks[:-2] if c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) > 1  # really streamed, not one blob
    text = "".join(c["choices"][0]["delta"]["content"] for c in content_chunks)
    assert text == f"Echo: {prompt}"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == rec.usage["promptTokenCount"] == count_tokens(prompt)
    assert usage["completion_tokens"] == rec.usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["total_tokens"] == rec.usage["totalTokenCount"]


@pytest.mark.asyncio
async def test_system_message_and_generation_params_mapping(provider: VertexProvider, fake: FakeVertex) -> None:
    req = chat(
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in English."},
        user("hello"),
        {"role": "assistant", "content": "hi"},
        user("again"),
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=77,
        stop="STOP-HERE",
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
    )
    await provider.complete(req, SPEC, TIMEOUTS)

    rec = fake.last
    assert rec.system_text == "You are terse.\n\nAnswer in English."
    assert [(c["role"], c["parts"]) for c in rec.contents] == [
        ("user", [{"text": "hello"}]),
        ("model", [{"text": "hi"}]),
        ("user", [{"text": "again"}]),
    ]
    assert rec.generation_config == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 77,
        "stopSequences": ["STOP-HERE"],
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.25,
    }
    assert "tools" not in rec.body


@pytest.mark.asyncio
async def test_max_tokens_maps_to_length(provider: VertexProvider, fake: FakeVertex) -> None:
    out = await provider.complete(chat(user("one two three four five six"), max_tokens=3), SPEC, TIMEOUTS)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["message"]["content"] == "Echo: one two"
    assert out["usage"]["completion_tokens"] == 3


@pytest.mark.asyncio
async def test_thoughts_are_hidden_but_counted(provider: VertexProvider, fake: FakeVertex) -> None:
    fake.reply("The answer is four.", thoughts=11)
    out = await provider.complete(chat(user("what is two plus two")), SPEC, TIMEOUTS)
    assert out["choices"][0]["message"]["content"] == "The answer is four."
    assert out["usage"]["completion_tokens"] == 4 + 11
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 11}
    assert out["usage"]["total_tokens"] == fake.last.usage["totalTokenCount"]


# --- tools -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tools_become_function_declarations_and_calls_become_tool_calls(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    fake.function_call("get_weather", {"city": "Paris", "days": 2})
    out = await provider.complete(chat(user("Weather in Paris?"), tools=[WEATHER_TOOL]), SPEC, TIMEOUTS)

    decls = fake.last.function_declarations
    assert [d["name"] for d in decls] == ["get_weather"]
    assert decls[0]["description"] == "Current weather for a city"
    # the SDK passes declarations through unconverted, so the key is the proto field name
    assert decls[0]["parameters_json_schema"] == WEATHER_TOOL["function"]["parameters"]
    assert "toolConfig" not in fake.last.body

    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 2}
    # Gemini's thought signature rides along the way Google's OpenAI-compatible endpoint returns it
    assert call["extra_content"]["google"]["thought_signature"] == "ZmFrZS1zaWduYXR1cmU="


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowed_function_names": ["get_weather"]},
        ),
    ],
)
async def test_tool_choice_mapping(
    provider: VertexProvider, fake: FakeVertex, tool_choice: Any, expected: dict[str, Any]
) -> None:
    out = await provider.complete(chat(user("hello"), tools=[WEATHER_TOOL], tool_choice=tool_choice), SPEC, TIMEOUTS)
    assert fake.last.body["toolConfig"]["functionCallingConfig"] == expected
    # the fake behaves like Gemini: ANY forces a call, NONE and AUTO (prompt names no tool) answer in text
    forced = expected["mode"] == "ANY"
    assert out["choices"][0]["finish_reason"] == ("tool_calls" if forced else "stop")
    if forced:
        call = out["choices"][0]["message"]["tool_calls"][0]
        assert json.loads(call["function"]["arguments"]) == {"city": "test"}


@pytest.mark.asyncio
async def test_tool_result_round_trip(provider: VertexProvider, fake: FakeVertex) -> None:
    req = chat(
        user("Weather in Paris and the time?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    "extra_content": {"google": {"thought_signature": "c2lnLWE="}},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "get_time"}}],
    )
    out = await provider.complete(req, SPEC, TIMEOUTS)

    user_turn, model_turn, results = fake.last.contents
    assert user_turn["role"] == "user"
    assert model_turn["role"] == "model"
    assert [p["functionCall"] for p in model_turn["parts"]] == [
        {"name": "get_weather", "args": {"city": "Paris"}},
        {"name": "get_time", "args": {}},
    ]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnLWE="  # echoed back as received
    assert results["role"] == "user"  # parallel results travel together in one turn
    assert [p["functionResponse"] for p in results["parts"]] == [
        {"name": "get_weather", "response": {"temp_c": 21}},  # JSON parsed
        {"name": "get_time", "response": {"content": "noon"}},  # name found from the call id; text wrapped
    ]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"] == (
        'Tool get_weather returned {"temp_c": 21}. Tool get_time returned {"content": "noon"}.'
    )


@pytest.mark.asyncio
async def test_streamed_tool_call(provider: VertexProvider, fake: FakeVertex) -> None:
    chunks = await collect(provider, chat(user("Use get_weather for Oslo"), tools=[WEATHER_TOOL]))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    (call,) = deltas[0]["tool_calls"]
    assert deltas[0]["role"] == "assistant"
    assert call["index"] == 0
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "test"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == fake.last.usage["candidatesTokenCount"]


# --- JSON mode and media -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_json_object_mode(provider: VertexProvider, fake: FakeVertex) -> None:
    out = await provider.complete(chat(user("give me json"), response_format={"type": "json_object"}), SPEC, TIMEOUTS)
    assert fake.last.generation_config["responseMimeType"] == "application/json"
    assert json.loads(out["choices"][0]["message"]["content"]) == {"echo": "give me json"}


@pytest.mark.asyncio
async def test_json_schema_mode(provider: VertexProvider, fake: FakeVertex) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["city", "n"],
    }
    rf = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    out = await provider.complete(chat(user("paris"), response_format=rf), SPEC, TIMEOUTS)
    cfg = fake.last.generation_config
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseJsonSchema"] == schema
    assert json.loads(out["choices"][0]["message"]["content"]) == {"city": "paris", "n": 1}


@pytest.mark.asyncio
async def test_images_map_to_inline_and_file_data(provider: VertexProvider, fake: FakeVertex) -> None:
    png = base64.b64encode(b"\x89PNG not really").decode()
    req = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/pics/cat.webp"}},
                {"type": "image_url", "image_url": {"url": "gs://bucket/dog.jpg"}},
            ],
        }
    )
    await provider.complete(req, SPEC, TIMEOUTS)
    parts = fake.last.contents[0]["parts"]
    assert parts[0] == {"text": "compare"}
    assert parts[1] == {"inlineData": {"data": png, "mime_type": "image/png"}}
    assert parts[2] == {"fileData": {"file_uri": "https://example.com/pics/cat.webp", "mime_type": "image/webp"}}
    assert parts[3] == {"fileData": {"file_uri": "gs://bucket/dog.jpg", "mime_type": "image/jpeg"}}


# --- failures --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("in_candidate", [False, True], ids=["prompt_feedback", "finish_reason"])
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_safety_block_is_content_filtered(
    provider: VertexProvider, fake: FakeVertex, in_candidate: bool, streamed: bool
) -> None:
    fake.safety_block(in_candidate=in_candidate)
    with pytest.raises(ContentFiltered) as info:
        if streamed:
            await collect(provider, chat(user("something bad")))
        else:
            await provider.complete(chat(user("something bad")), SPEC, TIMEOUTS)
    assert info.value.model == SPEC.id
    assert "SAFETY" in info.value.message
    assert info.value.transient is False


@pytest.mark.asyncio
async def test_rate_limit_uses_retry_after_header(provider: VertexProvider, fake: FakeVertex) -> None:
    fake.rate_limit(retry_after="3")
    with pytest.raises(UpstreamRateLimited) as info:
        await provider.complete(chat(user("hi")), SPEC, TIMEOUTS)
    assert info.value.retry_after_s == 3.0
    assert info.value.headers["Retry-After"] == "3"
    assert len(fake.requests) == 1  # the SDK did not retry the 429


@pytest.mark.asyncio
async def test_rate_limit_uses_retry_info_detail(provider: VertexProvider, fake: FakeVertex) -> None:
    fake.rate_limit(retry_after=None, retry_delay="1.5s")
    with pytest.raises(UpstreamRateLimited) as info:
        await provider.complete(chat(user("hi")), SPEC, TIMEOUTS)
    assert info.value.retry_after_s == 1.5


@pytest.mark.asyncio
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable_and_not_retried(
    provider: VertexProvider, fake: FakeVertex, status: int, streamed: bool
) -> None:
    fake.fail(status)
    with pytest.raises(UpstreamUnavailable) as info:
        if streamed:
            await collect(provider, chat(user("hi")))
        else:
            await provider.complete(chat(user("hi")), SPEC, TIMEOUTS)
    assert f"HTTP {status}" in info.value.message
    assert len(fake.requests) == 1  # exactly one attempt: the service owns the retry loop


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "message", "expected", "mentions"),
    [
        (504, "Deadline exceeded", UpstreamTimeout, "504"),
        (
            401,
            "Request had invalid authentication credentials.",
            UpstreamUnavailable,
            "GOOGLE_APPLICATION_CREDENTIALS_JSON",
        ),
        (403, "Permission denied on resource project.", UpstreamUnavailable, "GOOGLE_APPLICATION_CREDENTIALS_JSON"),
        (404, "Publisher Model was not found.", UpstreamUnavailable, "upstream_model 'gemini-2.5-flash'"),
        (
            400,
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ContextTooLong,
            "input token count",
        ),
        (400, "Invalid value at 'generation_config.temperature'.", UpstreamBadRequest, "temperature"),
    ],
)
async def test_error_mapping(
    provider: VertexProvider,
    fake: FakeVertex,
    status: int,
    message: str,
    expected: type[UpstreamError],
    mentions: str,
) -> None:
    fake.fail(status, message)
    with pytest.raises(UpstreamError) as info:
        await provider.complete(chat(user("hi")), SPEC, TIMEOUTS)
    assert type(info.value) is expected
    assert mentions in info.value.message
    assert info.value.model == SPEC.id
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_hang_times_out(provider: VertexProvider, fake: FakeVertex) -> None:
    fake.hang(10)
    with pytest.raises(UpstreamTimeout):
        await provider.complete(chat(user("hi")), SPEC, SHORT)
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_stream_idle_times_out_after_first_chunks(provider: VertexProvider, fake: FakeVertex) -> None:
    fake.hang(10, after_chunks=1)
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamTimeout):
        async for c in provider.stream(chat(user("one two three four five")), SPEC, SHORT):
            got.append(c)
    assert got and got[0]["choices"][0]["delta"]["content"] == "Echo: one "


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["disconnect", "error"])
async def test_broken_stream_is_unavailable(provider: VertexProvider, fake: FakeVertex, mode: str) -> None:
    fake.break_stream(after_chunks=2, mode=mode)
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamUnavailable):
        async for c in provider.stream(chat(user("one two three four five six seven")), SPEC, TIMEOUTS):
            got.append(c)
    assert len(got) == 2
    assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in got)
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_prompt_markers_script_the_fake(provider: VertexProvider, fake: FakeVertex) -> None:
    with pytest.raises(UpstreamRateLimited) as info:
        await provider.complete(chat(user("hi [fake:429:4]")), SPEC, TIMEOUTS)
    assert info.value.retry_after_s == 4.0
    with pytest.raises(UpstreamUnavailable):
        await provider.complete(chat(user("hi [fake:503]")), SPEC, TIMEOUTS)
    with pytest.raises(ContentFiltered):
        await provider.complete(chat(user("hi [fake:safety]")), SPEC, TIMEOUTS)


@pytest.mark.asyncio
async def test_connection_refused_is_unavailable() -> None:
    p = VertexProvider(
        project="test-project",
        location="us-central1",
        base_url="http://127.0.0.1:9",
        credentials=google.oauth2.credentials.Credentials(token="test-token"),
    )
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await p.complete(chat(user("hi")), SPEC, TIMEOUTS)
        # the caller reads the model and the settings to check, never the address
        assert "127.0.0.1" not in info.value.message and ":9" not in info.value.message
        assert "VERTEX_AI_LOCATION" in info.value.message
        with pytest.raises(UpstreamUnavailable):
            await collect(p, chat(user("hi")))
    finally:
        await p.aclose()


@pytest.mark.asyncio
async def test_unmappable_request_is_a_bad_request(provider: VertexProvider, fake: FakeVertex) -> None:
    with pytest.raises(UpstreamBadRequest) as info:
        await provider.complete(chat(user("hi"), tool_choice="required"), SPEC, TIMEOUTS)
    assert info.value.model == SPEC.id
    assert fake.requests == []


# --- wiring ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_transport_applies_the_connect_timeout_and_strips_its_header() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.extensions["timeout"])
        seen["header"] = request.headers.get("x-llm-router-connect-timeout")
        return httpx.Response(200)

    transport = RouterTransport(factory=lambda: httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post("http://x/", headers={"x-llm-router-connect-timeout": "1.5"}, timeout=30.0)
    assert seen == {"connect": 1.5, "read": 30.0, "write": 30.0, "pool": 30.0, "header": None}


def test_from_settings_builds_service_account_credentials_in_memory() -> None:
    from google.oauth2 import service_account

    info = service_account_info()
    settings = Settings(google_cloud_project_id="test-project", google_application_credentials_json=json.dumps(info))
    p = VertexProvider.from_settings(settings)
    creds = p._client._api_client._credentials
    assert isinstance(creds, service_account.Credentials)
    assert creds.service_account_email == "router@test-project.iam.gserviceaccount.com"
    assert creds.scopes == ["https://www.googleapis.com/auth/cloud-platform"]
    p._client.close()


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"type": "service_account"}'])
def test_from_settings_rejects_bad_credentials_json(raw: str) -> None:
    settings = Settings(google_cloud_project_id="test-project", google_application_credentials_json=raw)
    with pytest.raises(ProviderNotConfigured) as info:
        VertexProvider.from_settings(settings)
    assert "GOOGLE_APPLICATION_CREDENTIALS_JSON" in info.value.message


def test_fake_accepts_the_v1_api_version(fake: FakeVertex) -> None:
    url = f"{fake.url}/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.5-pro:generateContent"
    resp = httpx.post(url, json={"contents": [{"role": "user", "parts": [{"text": "a b c"}]}]})
    assert resp.status_code == 200
    assert resp.json()["usageMetadata"]["promptTokenCount"] == 3
    assert fake.last.api_version == "v1"
    assert fake.last.location == "europe-west4"
