"""What callers read in errors, and what the router passes on (issue 16, findings 7 and 8):

- an unreachable upstream names the model and the setting, never its address (that is logged);
- unknown top-level request fields are a 400 as OpenAI answers them, the allow-listed ones reach
  the upstream as sent, and `routing` never does;
- audio and file parts count toward the size limit and the token estimate;
- a 10 KB identifier is not echoed whole.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest

from shared.catalog import Catalog
from shared.config import Settings
from shared.jobs.service import JobService
from shared.queue.local import LocalBus
from shared.schemas import parse_chat_request
from shared.store.job_store import MemoryJobStore
from shared.token_count import estimate_prompt_tokens
from tests.conftest import ContextFactory, local_models
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_upstream_is_named_by_model_and_setting_not_address(
    make_context: ContextFactory, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    port = free_port()  # nothing listens there
    await make_context(catalog=Catalog(local_models(f"http://127.0.0.1:{port}/v1"), {}))
    caplog.set_level(logging.WARNING)
    r = await client.post("/api/v1/chat/completions", json={"model": "small", "messages": HI, "stream": stream})
    assert r.status_code == 503, r.text
    text = r.text
    assert "127.0.0.1" not in text and str(port) not in text and "http" not in text
    err = r.json()["error"]
    assert "small" in err["message"] and "base_url" in err["message"] and "MODEL_CATALOG_PATH" in err["message"]
    # operators find the address in the log
    assert f"127.0.0.1:{port}" in caplog.text


async def test_unknown_top_level_fields_are_refused_as_openai_does(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/chat/completions", json={"model": "small", "messages": HI, "frobnicate": True})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {
        "message": "Unrecognized request argument supplied: frobnicate",
        "type": "invalid_request_error",
        "param": "frobnicate",
        "code": "unknown_parameter",
    }


COMMON_FIELDS: dict[str, Any] = {
    "user": "u-1",
    "metadata": {"trace": "t-1"},
    "store": False,
    "parallel_tool_calls": True,
    "service_tier": "auto",
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 2,
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "hello"},
    "reasoning_effort": "low",
    "max_completion_tokens": 50,
    "logit_bias": {"50256": -100.0},
}


async def test_allow_listed_fields_reach_the_upstream_as_sent_and_routing_does_not(
    client: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    body = {
        "model": "small",
        "messages": HI,
        **COMMON_FIELDS,
        "stream": True,
        "stream_options": {"include_usage": True},
        "routing": {"policy": "cost"},
    }
    r = await client.post("/api/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    sent = fake_openai.calls("small-upstream")[-1]
    for name, value in COMMON_FIELDS.items():
        assert sent[name] == value, name
    assert "routing" not in sent
    assert sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "UklGR" * 400, "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64," + "JVBER" * 400, "filename": "a.pdf"}},
    ],
    ids=["input_audio", "file"],
)
async def test_audio_and_file_parts_count_toward_size_and_estimate(
    make_context: ContextFactory, client: httpx.AsyncClient, settings: Settings, part: dict[str, Any]
) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]
    await make_context(settings=settings.model_copy(update={"max_total_chars": 1000}))
    r = await client.post("/api/v1/route", json={"model": "auto", "messages": messages})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "messages_too_long"

    with_part = parse_chat_request(f'{{"messages": {_json(messages)}}}')
    text_only = parse_chat_request('{"messages": [{"role": "user", "content": "what is this?"}]}')
    assert estimate_prompt_tokens(with_part) >= estimate_prompt_tokens(text_only) + 258 + 2000 // 400


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def test_a_long_identifier_is_not_echoed_whole(
    make_context: ContextFactory, client: httpx.AsyncClient, settings: Settings
) -> None:
    await make_context(jobs=JobService(settings, MemoryJobStore(), LocalBus()))
    name = "m" * 10_000
    r = await client.post("/api/v1/chat/completions", json={"model": name, "messages": HI})
    assert r.status_code == 404, r.text
    message = r.json()["error"]["message"]
    assert len(message) < 400 and "10000 characters" in message
    r = await client.get("/api/v1/jobs/" + "j" * 10_000)
    assert r.status_code == 404, r.text
    assert len(r.json()["error"]["message"]) < 200
