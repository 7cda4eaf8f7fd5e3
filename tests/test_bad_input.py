"""Every client mistake gets an OpenAI-style JSON error with the right 4xx status, never a 500."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from shared.catalog import Catalog, ModelSpec
from shared.config import Settings
from tests.conftest import ContextFactory, local_models

CHAT = "/api/v1/chat/completions"
ROUTE = "/api/v1/route"
MSG = [{"role": "user", "content": "hi"}]


def assert_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize("path", [CHAT, ROUTE])
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_body"),
        (b"   ", "empty_body"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'"a string"', "invalid_body"),
        (b"42", "invalid_body"),
        (b"null", "invalid_body"),
    ],
)
async def test_malformed_bodies(client: httpx.AsyncClient, path: str, raw: bytes, code: str) -> None:
    r = await client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, code)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.role"),
        ({"messages": [{"content": "hi"}]}, "messages.role"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]}, None),
        ({"messages": MSG, "model": 3}, "model"),
        ({"messages": MSG, "temperature": "hot"}, "temperature"),
        ({"messages": MSG, "temperature": 3}, "temperature"),
        ({"messages": MSG, "top_p": 1.5}, "top_p"),
        ({"messages": MSG, "max_tokens": "10"}, "max_tokens"),
        ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"messages": MSG, "max_completion_tokens": 2.5}, "max_completion_tokens"),
        ({"messages": MSG, "stop": 7}, "stop"),
        ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, None),
        ({"messages": MSG, "seed": "x"}, "seed"),
        ({"messages": MSG, "stream": "yes"}, "stream"),
        ({"messages": MSG, "tools": {"type": "function"}}, "tools"),
        ({"messages": MSG, "tools": [{"type": "function"}]}, "tools.function"),
        ({"messages": MSG, "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": MSG, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": MSG, "user": 12}, "user"),
        ({"messages": MSG, "routing": {"policy": "cheapest"}}, "routing.policy"),
        ({"messages": MSG, "routing": {"max_cost_usd": -1}}, "routing.max_cost_usd"),
        ({"messages": MSG, "routing": {"min_quality": 2}}, "routing.min_quality"),
        ({"messages": MSG, "routing": {"allowed_models": "big"}}, "routing.allowed_models"),
        ({"messages": MSG, "routing": {"unknown": 1}}, "routing.unknown"),
        ({"messages": MSG, "routing": []}, "routing"),
    ],
)
async def test_schema_errors_name_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str | None
) -> None:
    r = await client.post(CHAT, json=payload)
    err = assert_error(r, 400)
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] is not None and re.sub(r"\[\d+\]", "", err["param"]).startswith(param), err


async def test_n_greater_than_one_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json={"messages": MSG, "n": 2})
    err = assert_error(r, 400, "unsupported_n", "n")
    assert "n > 1" in err["message"]
    assert (await client.post(CHAT, json={"messages": MSG, "n": 1})).status_code == 200


async def test_unknown_and_retired_models(client: httpx.AsyncClient) -> None:
    err = assert_error(
        await client.post(CHAT, json={"messages": MSG, "model": "gpt-17"}), 404, "model_not_found", "model"
    )
    assert "auto" in err["message"] and "big" in err["message"]
    err = assert_error(await client.post(CHAT, json={"messages": MSG, "model": "gemini-1.5-pro"}), 410, "model_retired")
    assert "gemini-2.5-pro" in err["message"]
    err = assert_error(await client.post(ROUTE, json={"messages": MSG, "model": "text-bison"}), 410, "model_retired")
    assert "gemini-2.5-flash" in err["message"]


async def test_max_tokens_over_the_model_limit(client: httpx.AsyncClient) -> None:
    err = assert_error(
        await client.post(CHAT, json={"messages": MSG, "model": "small", "max_tokens": 100_000}),
        400,
        "max_tokens_exceeded",
        "max_tokens",
    )
    assert "4096" in err["message"]
    # with auto, no model can take it: a 422 that lists why each model was excluded
    err = assert_error(await client.post(CHAT, json={"messages": MSG, "max_tokens": 100_000}), 422, "no_eligible_model")
    assert "big" in err["message"] and "small" in err["message"]


async def test_body_over_the_size_limit(
    make_context: ContextFactory, settings: Settings, client: httpx.AsyncClient
) -> None:
    await make_context(settings=settings.model_copy(update={"max_body_bytes": 2048}))
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    assert_error(await client.post(CHAT, json=big), 413, "payload_too_large")


async def test_too_many_messages_and_characters(
    make_context: ContextFactory, settings: Settings, client: httpx.AsyncClient
) -> None:
    await make_context(settings=settings.model_copy(update={"max_messages": 3, "max_total_chars": 100}))
    many = {"messages": [{"role": "user", "content": "hi"}] * 4}
    assert_error(await client.post(CHAT, json=many), 400, "too_many_messages", "messages")
    long = {"messages": [{"role": "user", "content": "y" * 101}]}
    assert_error(await client.post(CHAT, json=long), 400, "messages_too_long", "messages")


async def test_unreachable_provider_is_a_503_naming_model_and_setting(
    make_context: ContextFactory, client: httpx.AsyncClient
) -> None:
    vertex = ModelSpec(
        id="gemini-2.5-flash",
        provider="vertex",
        upstream_model="gemini-2.5-flash",
        tier="balanced",
        context_window=1_000_000,
        max_output_tokens=65536,
        input_usd_per_mtok=0.3,
        output_usd_per_mtok=2.5,
    )
    await make_context(catalog=Catalog([vertex]))
    err = assert_error(await client.post(CHAT, json={"messages": MSG}), 503, "provider_not_configured")
    assert "gemini-2.5-flash" in err["message"] and "GOOGLE_CLOUD_PROJECT_ID" in err["message"]


async def test_dead_upstream_is_a_503_naming_model_and_setting_not_address(
    make_context: ContextFactory, client: httpx.AsyncClient
) -> None:
    dead = [m.model_copy(update={"base_url": "http://127.0.0.1:9/v1"}) for m in local_models("http://127.0.0.1:9/v1")]
    await make_context(catalog=Catalog(dead))
    r = await client.post(CHAT, json={"messages": MSG, "model": "small"})
    err = assert_error(r, 503, "upstream_unavailable")
    assert "small" in err["message"] and "base_url" in err["message"]
    assert "127.0.0.1" not in err["message"]  # internal addresses go to the log, not to callers


async def test_wrong_content_type_still_parses_json_or_fails_cleanly(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, content=b"messages=hi", headers={"content-type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "invalid_json")
