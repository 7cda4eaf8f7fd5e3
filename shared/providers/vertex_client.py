"""The google-genai client for Vertex AI, shared by the chat provider and the embeddings encoder.

Credentials come from the settings (GOOGLE_APPLICATION_CREDENTIALS_JSON, loaded in memory only)
or Application Default Credentials. The SDK's own retries are switched off
(`HttpRetryOptions(attempts=1)`: one attempt, and no implicit reconnect either) because the
service owns the one retry loop, and the SDK runs over RouterTransport, which adds what the SDK
cannot express: a per-event-loop connection pool and a per-call connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import httpx
from google import genai
from google.genai import types

from ..config import Settings
from .vertex_credentials import project_and_credentials

try:  # the SDK can use either httpx or httpx2; we ask for httpx, but map both
    import httpx2

    TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
    TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:  # pragma: no cover - httpx2 is optional
    TIMEOUT_ERRORS = (httpx.TimeoutException,)
    TRANSPORT_ERRORS = (httpx.TransportError,)


# carries the connect timeout from the HttpOptions (call_options, new_client) to RouterTransport
_CONNECT_TIMEOUT_HEADER = "x-llm-router-connect-timeout"


class RouterTransport(httpx.AsyncBaseTransport):
    """The httpx transport under the SDK.

    Handing the SDK a transport makes it use httpx (not aiohttp, whose timeout is a total one
    that would cut long streams; nor its default httpx2). This transport then keeps one
    connection pool per event loop (pooled connections belong to the loop that opened them),
    never retries a connection, and applies the per-call connect timeout that the SDK cannot
    express: it sends one timeout for every phase, so the connect timeout travels in a request
    header that is removed here, before anything goes on the wire.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        factory: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self._limits = limits or httpx.Limits()
        self._factory = factory or (lambda: httpx.AsyncHTTPTransport(retries=0, limits=self._limits))
        self._pools: dict[asyncio.AbstractEventLoop, httpx.AsyncBaseTransport] = {}
        self._lock = threading.Lock()

    def _pool(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [lp for lp in self._pools if lp.is_closed()]:
                del self._pools[stale]
            pool = self._pools.get(loop)
            if pool is None:
                pool = self._pools[loop] = self._factory()
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = request.headers.get(_CONNECT_TIMEOUT_HEADER)
        if raw is not None:
            del request.headers[_CONNECT_TIMEOUT_HEADER]
            with contextlib.suppress(ValueError):
                timeout = dict(request.extensions.get("timeout") or {})
                timeout["connect"] = float(raw)
                request.extensions = {**request.extensions, "timeout": timeout}
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            pools, self._pools = self._pools, {}
        for owner, pool in pools.items():
            if owner is loop:
                await pool.aclose()
            # a pool of another (or closed) loop cannot be closed from here; dropping it lets
            # the garbage collector release its sockets


def new_client(
    *,
    project: str,
    location: str,
    base_url: str | None = None,
    credentials: Any = None,
    max_connections: int = 200,
    timeout_s: float | None = None,
    connect_s: float = 5.0,
) -> genai.Client:
    """The google-genai client every Vertex AI part uses (chat provider, embeddings encoder).

    timeout_s: a default for every call (a call's own http_options override it); None leaves
    each call to set its own, as the chat provider does.
    """
    http_options = types.HttpOptions(
        base_url=base_url,
        # attempts=1: tenacity stops after the first try, and the SDK's implicit
        # reconnect-and-retry (aiohttp path) is skipped whenever retry_options is set.
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args={
            "transport": RouterTransport(
                limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
            ),
            "timeout": httpx.Timeout(60.0, connect=connect_s),
        },
    )
    if timeout_s is not None:
        # the SDK hands httpx one timeout for every phase: the connect one travels in a header
        http_options.timeout = max(1, int(timeout_s * 1000))
        http_options.headers = {_CONNECT_TIMEOUT_HEADER: f"{connect_s:g}"}
    return genai.Client(
        vertexai=True,
        project=project,
        location=location,
        credentials=credentials,
        http_options=http_options,
    )


def build_client(
    settings: Settings,
    *,
    credentials: Any = None,
    timeout_s: float | None = None,
    connect_s: float = 5.0,
    max_connections: int = 200,
) -> genai.Client:
    """new_client() for the project, location and endpoint in the settings."""
    project, credentials = project_and_credentials(settings, credentials)
    return new_client(
        project=project,
        location=settings.vertex_ai_location,
        base_url=settings.vertex_ai_base_url,
        credentials=credentials,
        max_connections=max_connections,
        timeout_s=timeout_s,
        connect_s=connect_s,
    )


def call_options(timeout_s: float, connect_s: float) -> types.HttpOptions:
    """Per-call HttpOptions: the SDK hands httpx one timeout for every phase, so the connect one
    travels in a header that RouterTransport applies and removes."""
    return types.HttpOptions(
        timeout=max(1, int(timeout_s * 1000)),
        headers={_CONNECT_TIMEOUT_HEADER: f"{connect_s:g}"},
    )
