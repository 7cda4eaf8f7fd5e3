"""Fixtures for the conformance tests on Microsoft's Python worker (tests/worker/host.py).

The worker lives outside the repository (`../shared/functions-worker`, see its README); on a
clone without it every test here skips with one line saying so.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread
from tests.worker.host import ROOT, WorkerHost, find_worker_source, prepare_worker, sample_settings

GATE_WORD = "gate-me"


class GatedUpstream:
    """FakeOpenAI, plus one stream that stops after its first word until the test opens the gate.

    A prompt containing GATE_WORD streams "first", then waits for `gate` (set by the test once it
    has *received* "first" through the worker), then "second". If the gate is never opened the
    stream ends with "late" instead, so a proxy that buffers the whole response is caught by what
    the client reads, not by a clock."""

    def __init__(self) -> None:
        self.fake = FakeOpenAI(hang_s=5.0)
        self.gate = threading.Event()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        last = (body.get("messages") or [{}])[-1].get("content") or ""
        if body.get("stream") and isinstance(last, str) and GATE_WORD in last:
            return StreamingResponse(self._gated(body["model"]), media_type="text/event-stream")
        return await self.fake.chat(_Replay(request, body))

    async def _gated(self, model: str) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 0, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": "first"})
        opened = await asyncio.to_thread(self.gate.wait, 30.0)
        yield chunk({"content": " second" if opened else " late"})
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"


class _Replay:
    """A request whose body was already read (FakeOpenAI.chat reads it again)."""

    def __init__(self, request: Request, body: dict[str, Any]) -> None:
        self._raw = orjson.dumps(body)
        self.headers = request.headers

    async def body(self) -> bytes:
        return self._raw


@pytest.fixture(scope="session")
def worker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = find_worker_source()
    if source is None:
        pytest.skip("Microsoft's Python worker is not at ../shared/functions-worker (set FUNCTIONS_WORKER_DIR)")
    try:
        import grpc  # noqa: F401
    except ImportError:
        pytest.skip("grpcio is not installed")
    return prepare_worker(source, tmp_path_factory.mktemp("worker"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[GatedUpstream, str]]:
    gated = GatedUpstream()
    with ServerThread(gated.app) as server:
        yield gated, server.url + "/v1"


def local_catalog(upstream_url: str, path: Path) -> Path:
    """examples/catalog.local.yaml, pointed at the fake upstream."""
    text = (ROOT / "examples" / "catalog.local.yaml").read_text()
    path.write_text(text.replace("http://127.0.0.1:8001/v1", upstream_url))
    return path


def light_settings(tmp: Path, catalog: Path) -> dict[str, str]:
    """The sample's app settings, with what keeps a test light and self-contained: the local
    catalog on the fake upstream, auth off (development), no PostgreSQL, state under tmp."""
    settings = sample_settings()
    settings.update(
        MODEL_CATALOG_PATH=str(catalog),
        AUTH_ENABLED="false",
        DATABASE_ENABLED="false",
        EMBEDDED_DATA_DIR=str(tmp / "data"),
        REQUEST_DEADLINE_S="20",
        UPSTREAM_READ_TIMEOUT_S="35",
        STREAM_IDLE_TIMEOUT_S="35",
    )
    return settings


@pytest.fixture(scope="module")
def worker(
    worker_dir: Path, upstream: tuple[GatedUpstream, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerHost]:
    """One worker for the scenarios that share settings: started, initialised, every function
    indexed and loaded, as the host does before the first invocation."""
    tmp = tmp_path_factory.mktemp("app")
    settings = light_settings(tmp, local_catalog(upstream[1], tmp / "catalog.yaml"))
    host = WorkerHost(worker_dir, settings, tmp / "worker.log").start()
    try:
        init = host.init()
        assert host.status(init) == "Success", init.result.exception.message
        host.index_and_load()
        yield host
    finally:
        host.stop()
