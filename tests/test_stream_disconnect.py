"""A caller that goes away in the middle of a streamed answer, over a real socket to the local
host: the router stops reading the upstream (no more tokens spent on an answer nobody reads) and
still accounts for the request (its request-log row, with what was streamed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from shared.auth.service_tokens import ServiceTokens
from shared.store.base import MemoryRequestLog
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.served_host import ServedHost, host_parts, host_settings, served_host
from tests.fakes.server import ServerThread

PROMPT = "Tell me a long story about seven brave owls in the winter forest"


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory,
    fake_openai_server: tuple[FakeOpenAI, ServerThread],
    starter_index: Any,
    jwt_secret: str,
    service_tokens: ServiceTokens,
) -> Iterator[ServedHost]:
    s = host_settings(tmp_path_factory.mktemp("disconnect-data"), jwt_secret, stream_idle_timeout_s=5.0)
    parts = host_parts(fake_openai_server[1].url, starter_index, service_tokens)
    with served_host(s, parts) as served:
        yield served


async def _read_first_event_then_leave(url: str, token: str) -> str:
    """Opens a streamed chat completion, reads up to its first SSE event, closes the socket; the
    request id the router gave it."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
    head = (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + body)
    buf = b""
    async with asyncio.timeout(10):
        while b"data:" not in buf.partition(b"\r\n\r\n")[2]:
            data = await reader.read(65536)
            assert data, "the router closed the stream before its first event"
            buf += data
    writer.close()
    await writer.wait_closed()
    head_text = buf.partition(b"\r\n\r\n")[0].decode()
    assert head_text.startswith("HTTP/1.1 200"), head_text
    return next(line.split(":", 1)[1].strip() for line in head_text.split("\r\n") if line.startswith("x-request-id"))


def test_a_caller_that_leaves_mid_stream_stops_the_upstream_and_is_logged(
    host: ServedHost, fake_openai: FakeOpenAI, service_tokens: ServiceTokens
) -> None:
    fake_openai.slow_s = 0.3  # ~12 words: about 3.5 s of stream if nobody stops it
    for model in ("big-upstream", "small-upstream"):
        fake_openai.push(model, "slow")
    ended_before = fake_openai.streams_ended_early
    token = service_tokens.mint("acme", ["LLMRouter.Invoke"], ttl_s=600)
    t0 = time.monotonic()
    request_id = asyncio.run(_read_first_event_then_leave(host.url, token))

    request_log = host.services[0].request_log
    assert isinstance(request_log, MemoryRequestLog)
    deadline = time.monotonic() + 3.0  # the upstream alone would take longer than this
    while time.monotonic() < deadline and (
        fake_openai.streams_ended_early == ended_before or not any(r.id == request_id for r in request_log.rows)
    ):
        time.sleep(0.05)
    assert fake_openai.streams_ended_early == ended_before + 1, "the router kept reading the upstream"
    assert time.monotonic() - t0 < 3.0
    rows = [r for r in request_log.rows if r.id == request_id]
    assert len(rows) == 1, "the abandoned stream has no request-log row"
    row = rows[0]
    assert row.stream and row.tenant == "acme" and row.chosen_model in {"big", "small"}
    assert row.prompt_tokens > 0  # estimated: the upstream never sent its usage
    # recorded as abandoned (nginx's 499), not as a complete answer
    assert (row.status, row.error_code) == (499, "client_closed_request")
