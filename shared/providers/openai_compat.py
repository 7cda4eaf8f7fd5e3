"""Any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, Azure OpenAI, Vertex's MaaS
endpoint...). Streams are passed through chunk by chunk.

The HTTP client is aiohttp, not httpx: on this path the client's cost is the router's overhead,
and measured against the same local upstream aiohttp takes ~0.12 ms a call where httpx takes
~0.4 ms, and at 32 concurrent calls httpx's pool collapses to ~1,100 calls/s where aiohttp
sustains ~18,000 (docs/performance.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from ..catalog import ModelSpec
from ..errors import (
    ContentFiltered,
    ContextTooLong,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..schemas import ChatCompletionRequest
from .base import Chunk, Completion, Timeouts, openai_payload

TokenSource = Callable[[], Awaitable[str | None]]
log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)


class OpenAICompatibleProvider:
    def __init__(self, base_url: str, *, token: TokenSource, max_connections: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self._token = token
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # created on first use, inside the running event loop that will use it
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                raise_for_status=False,
                auto_decompress=True,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        token = await self._token()
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    async def complete(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> Completion:
        payload = openai_payload(req, model.upstream_model)
        payload["stream"] = False
        payload.pop("stream_options", None)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s)
        try:
            async with self._client().post(
                self.url, data=orjson.dumps(payload), headers=await self._headers(), timeout=timeout
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, resp.headers, body, model)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id) from None
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(model, exc) from None
        try:
            data: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{model.id} returned a body that is not JSON.", model=model.id) from None
        choices = data.get("choices") or []
        if choices and choices[0].get("finish_reason") == "content_filter":
            raise ContentFiltered(f"{model.id} filtered the response.", model=model.id)
        return data

    def _unreachable(self, model: ModelSpec, exc: BaseException) -> UpstreamUnavailable:
        """Callers read the model and the setting to check; the address is for operators, in the log."""
        log.warning("%s is unreachable at %s: %s: %s", model.id, self.base_url, type(exc).__name__, exc)
        return UpstreamUnavailable(
            f"{model.id} is unreachable ({type(exc).__name__}); check the base_url of '{model.id}' in the model "
            "catalog (MODEL_CATALOG_PATH).",
            model=model.id,
        )

    async def stream(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> AsyncIterator[Chunk]:
        payload = openai_payload(req, model.upstream_model)
        payload["stream"] = True
        # always ask for usage: accounting needs it even when the caller did not
        payload["stream_options"] = {"include_usage": True}
        # sock_read bounds the silence between two reads: the stream's idle timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.stream_idle_s)
        try:
            resp = await self._client().post(
                self.url, data=orjson.dumps(payload), headers=await self._headers(), timeout=timeout
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id) from None
        except _CONNECTION_ERRORS as exc:
            raise self._unreachable(model, exc) from None
        try:
            if resp.status >= 400:
                raise error_from_response(resp.status, resp.headers, await resp.read(), model)
            async for raw in resp.content:
                if not raw.startswith(b"data:"):
                    continue
                data = raw[5:].strip()
                if data == b"[DONE]":
                    break
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamUnavailable(f"{model.id} sent a malformed stream event.", model=model.id) from None
                if "error" in chunk and "choices" not in chunk:
                    err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                    raise UpstreamUnavailable(
                        f"{model.id} failed mid-stream: {err.get('message', 'error')}", model=model.id
                    )
                yield chunk
        except TimeoutError:
            raise UpstreamTimeout(
                f"{model.id} stream idle for more than {timeouts.stream_idle_s}s.", model=model.id
            ) from None
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnavailable(f"{model.id} stream broke ({type(exc).__name__}).", model=model.id) from None
        finally:
            resp.release()


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
    message = ""
    code = ""
    try:
        parsed = orjson.loads(body) if body else {}
        err = parsed.get("error", parsed) if isinstance(parsed, dict) else {}
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            code = str(err.get("code") or err.get("type") or "")
        elif isinstance(err, str):
            message = err
    except orjson.JSONDecodeError:
        message = body[:200].decode("utf-8", "replace")
    detail = f"{model.id} answered HTTP {status}" + (f": {message}" if message else "")
    lowered = f"{code} {message}".lower()
    if status == 429:
        return UpstreamRateLimited(detail, model=model.id, retry_after_s=retry_after(headers))
    if status in (408, 504):
        return UpstreamTimeout(detail, model=model.id)
    if status >= 500:
        return UpstreamUnavailable(detail, model=model.id)
    if status in (401, 403):
        hint = f" (credentials: {model.api_key_env})" if model.api_key_env else ""
        return UpstreamUnavailable(detail + hint, model=model.id)
    if "context_length" in lowered or "context length" in lowered or "too many tokens" in lowered:
        return ContextTooLong(detail, model=model.id)
    if "content_filter" in lowered or "content management policy" in lowered:
        return ContentFiltered(detail, model=model.id)
    if status == 404:
        return UpstreamUnavailable(detail + " (check upstream_model in the catalog)", model=model.id)
    return UpstreamBadRequest(detail, model=model.id)


def retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw is None:
        ms = headers.get("retry-after-ms")
        return float(ms) / 1000 if ms and ms.replace(".", "", 1).isdigit() else None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
