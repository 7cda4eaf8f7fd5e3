"""What every HTTP endpoint shares: request id, trace span, authentication against the
endpoint's role, body limits, and the one place where typed errors become OpenAI-style JSON."""

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

from ..auth.base import ANONYMOUS, Principal
from ..composition.services import Services
from ..errors import (
    DependencyUnavailable,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    PermissionDenied,
    RouterError,
)
from ..metrics import REQUEST_MS
from ..schemas import ChatCompletionRequest, check_limits, parse_chat_request
from ..storable_text import check_json_text, check_storable
from ..store.base import StoreRejected, StoreUnavailable
from ..telemetry import TRACER_NAME, request_id_var, tracing_enabled
from .endpoint import Endpoint, HttpCall

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(TRACER_NAME)

ServicesProvider = Callable[[], Awaitable[Services]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_response(exc: RouterError, request_id: str | None = None) -> Response:
    headers = dict(exc.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return json_response(exc.body(), exc.status, headers)


def internal_error(request_id: str | None = None) -> Response:
    return error_response(
        RouterError("The router failed unexpectedly; the error was logged.", code="internal_error"), request_id
    )


async def serve(request: Request, services: ServicesProvider, *endpoints: Endpoint) -> Response:
    """Run the endpoint for this method inside a server span that continues the caller's W3C trace
    context (when tracing is on), mapping every failure to a JSON error."""
    request_id = uuid.uuid4().hex
    token = request_id_var.set(request_id)
    endpoint = next((e for e in endpoints if request.method in e.methods), endpoints[0])
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
            response = await _run(request, services, endpoints, endpoint, request_id)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
    else:
        response = await _run(request, services, endpoints, endpoint, request_id)
    REQUEST_MS.labels(endpoint.name).observe((time.perf_counter() - t0) * 1000)
    request_id_var.reset(token)
    return response


async def _run(
    request: Request, services: ServicesProvider, endpoints: tuple[Endpoint, ...], endpoint: Endpoint, request_id: str
) -> Response:
    try:
        if request.method not in endpoint.methods:
            allowed = sorted({m for e in endpoints for m in e.methods})
            raise MethodNotAllowed(f"{request.method} is not allowed here; use {', '.join(allowed)}.", allowed)
        svc = await services()
        principal = await authorize(svc, request, endpoint)
        params = request.path_params
        if request.scope.get("query_string"):  # parsing an empty query string costs ~2% of a request
            params = {**params, **request.query_params}
        if params:
            check_storable(params)
        return await endpoint.handler(HttpCall(request, svc, request_id, principal))
    except RouterError as exc:
        return error_response(exc, request_id)
    except StoreUnavailable as exc:
        return error_response(DependencyUnavailable(str(exc)), request_id)
    except StoreRejected as exc:
        return error_response(InvalidRequest(str(exc), code="unstorable_value"), request_id)
    except Exception:
        log.exception("unhandled error", extra={"route": endpoint.name})
        return internal_error(request_id)


async def authorize(services: Services, request: Request, endpoint: Endpoint) -> Principal:
    role = endpoint.role_for(services)
    if role is None:
        return ANONYMOUS
    principal = await services.authenticator.authenticate(request.headers.get("authorization"))
    if not principal.has(role):
        raise PermissionDenied(f"This endpoint needs the {role.value} role.")
    return principal


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or `default` when absent."""
    if not request.scope.get("query_string"):
        return default
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer.", param=name, code="invalid_parameter") from None
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}.", param=name, code="invalid_parameter")
    return value


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
        check_json_text(body)
        raise InvalidRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_body")
    check_storable(data)
    return data


async def parse_chat(call: HttpCall) -> ChatCompletionRequest:
    s = call.services.settings
    req = parse_chat_request(await read_body(call.request, s.max_body_bytes))
    check_limits(req, s.max_messages, s.max_total_chars)
    return req
