"""Any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, Azure OpenAI, Vertex's MaaS
endpoint...) over async httpx. Streams are passed through chunk by chunk."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
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


class OpenAICompatibleProvider:
    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource,
        client: httpx.AsyncClient | None = None,
        max_connections: int = 200,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # our retry loop is the only one (resilience.py); httpx's transport retries stay 0
            transport=httpx.AsyncHTTPTransport(retries=0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

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
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        try:
            resp = await self._client.post(
                f"{self.base_url}/chat/completions",
                content=orjson.dumps(payload),
                headers=await self._headers(),
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id) from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"{model.id} is unreachable at {self.base_url} ({type(exc).__name__}); check the catalog's base_url.",
                model=model.id,
            ) from None
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.headers, resp.content, model)
        try:
            data: dict[str, Any] = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{model.id} returned a body that is not JSON.", model=model.id) from None
        choices = data.get("choices") or []
        if choices and choices[0].get("finish_reason") == "content_filter":
            raise ContentFiltered(f"{model.id} filtered the response.", model=model.id)
        return data

    async def stream(self, req: ChatCompletionRequest, model: ModelSpec, timeouts: Timeouts) -> AsyncIterator[Chunk]:
        payload = openai_payload(req, model.upstream_model)
        payload["stream"] = True
        # always ask for usage: accounting needs it even when the caller did not
        payload["stream_options"] = {"include_usage": True}
        timeout = httpx.Timeout(timeouts.stream_idle_s, connect=timeouts.connect_s)
        request = self._client.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            content=orjson.dumps(payload),
            headers=await self._headers(),
            timeout=timeout,
        )
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{model.id} timed out ({type(exc).__name__}).", model=model.id) from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(
                f"{model.id} is unreachable at {self.base_url} ({type(exc).__name__}).", model=model.id
            ) from None
        try:
            if resp.status_code >= 400:
                body = await resp.aread()
                raise error_from_response(resp.status_code, resp.headers, body, model)
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
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
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"{model.id} stream idle for more than {timeouts.stream_idle_s}s.", model=model.id
            ) from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"{model.id} stream broke ({type(exc).__name__}).", model=model.id) from None
        finally:
            await resp.aclose()


def error_from_response(
    status: int, headers: httpx.Headers | dict[str, str], body: bytes, model: ModelSpec
) -> UpstreamError:
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


def retry_after(headers: httpx.Headers | dict[str, str]) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw is None:
        ms = headers.get("retry-after-ms")
        return float(ms) / 1000 if ms and ms.replace(".", "", 1).isdigit() else None
    try:
        return max(0.0, float(raw))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
