"""What every handler shares: context, request id, auth, body limits, and the one place where
typed errors become OpenAI-style JSON responses."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from opentelemetry import propagate, trace
from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Principal, Role
from ..context import AppContext, get_context
from ..errors import InvalidRequest, PayloadTooLarge, PermissionDenied, RouterError
from ..metrics import REQUEST_MS
from ..schemas import ChatCompletionRequest, check_limits, parse_chat_request
from ..telemetry import TRACER_NAME, request_id_var, tracing_enabled

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(TRACER_NAME)

Handler = Callable[[Request, AppContext, str], Awaitable[Response]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_response(exc: RouterError, request_id: str | None = None) -> Response:
    headers = dict(exc.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return json_response(exc.body(), exc.status, headers)


def new_request_id() -> str:
    return uuid.uuid4().hex


async def handle(request: Request, route: str, handler: Handler) -> Response:
    """Run a handler with the process context, mapping every failure to a JSON error, inside a
    server span that continues the caller's W3C trace context (when tracing is on)."""
    request_id = new_request_id()
    token = request_id_var.set(request_id)
    t0 = time.perf_counter()
    if tracing_enabled():
        with _tracer.start_as_current_span(
            f"{request.method} {request.url.path}",
            context=propagate.extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "url.path": request.url.path,
                "llm_router.request_id": request_id,
            },
        ) as span:
            response = await _run(request, route, handler, request_id)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
    else:
        response = await _run(request, route, handler, request_id)
    REQUEST_MS.labels(route).observe((time.perf_counter() - t0) * 1000)
    request_id_var.reset(token)
    return response


async def _run(request: Request, route: str, handler: Handler, request_id: str) -> Response:
    try:
        ctx = await get_context()
        return await handler(request, ctx, request_id)
    except RouterError as exc:
        return error_response(exc, request_id)
    except Exception:
        log.exception("unhandled error", extra={"route": route})
        return error_response(
            RouterError("The router failed unexpectedly; the error was logged.", code="internal_error"),
            request_id,
        )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body(request, limit)
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    return data


async def authorize(ctx: AppContext, request: Request, role: Role) -> Principal:
    principal = await ctx.authenticator.authenticate(request.headers.get("authorization"))
    if not principal.has(role):
        raise PermissionDenied(f"This endpoint needs the {role.value} role.")
    return principal


async def parse_chat(request: Request, ctx: AppContext) -> ChatCompletionRequest:
    body = await read_body(request, ctx.settings.max_body_bytes)
    req = parse_chat_request(body)
    check_chat_limits(req, ctx)
    return req


def check_chat_limits(req: ChatCompletionRequest, ctx: AppContext) -> None:
    check_limits(req, ctx.settings.max_messages, ctx.settings.max_total_chars)
