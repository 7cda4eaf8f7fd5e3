"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of every HTTP function in the app.

The paths come from the app's own HTTP triggers, so the document cannot list a route that does
not exist or miss one that does; what each operation takes and who may call it comes from
OPERATIONS below (a route missing there is still listed, with a generic description; the
OpenAPI test names it). Request bodies are the pydantic models the handlers validate with
(ChatCompletionRequest of shared/schemas.py for chat, route and jobs).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Role
from ..context import AppContext
from .common import handle, json_response

TITLE = "LLM Router"
VERSION = "1.0.0"


@dataclass(frozen=True)
class Operation:
    summary: str
    role: Role | None  # None: anonymous
    body_model: str | None = None  # "module:Model" of the pydantic model the handler validates
    tag: str = "router"
    text_response: bool = False
    statuses: tuple[int, ...] = ()


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/api/v1/chat/completions"): Operation(
        "OpenAI-compatible chat completion; model 'auto' (or auto:<policy>) lets the router choose.",
        Role.INVOKE,
        "shared.schemas:ChatCompletionRequest",
        statuses=(400, 404, 410, 413, 422, 429, 502, 503, 504),
    ),
    ("POST", "/api/v1/route"): Operation(
        "The routing decision only: ranked candidates, predicted quality, cost and why.",
        Role.INVOKE,
        "shared.schemas:ChatCompletionRequest",
        statuses=(400, 404, 410, 413, 422),
    ),
    ("GET", "/api/v1/models"): Operation("The model catalog with capabilities, prices and state.", Role.INVOKE),
    ("GET", "/api/v1/health"): Operation("Every dependency with status and latency.", Role.OPS, tag="ops"),
    ("GET", "/health/live"): Operation("Liveness.", None, tag="ops"),
    ("GET", "/health/ready"): Operation("Readiness (statuses and setting names only).", None, tag="ops"),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics (Ops unless METRICS_PUBLIC=true).", Role.OPS, tag="ops", text_response=True
    ),
    ("GET", "/api/v1/openapi.json"): Operation("This document.", None, tag="ops"),
    ("POST", "/api/v1/jobs"): Operation(
        "Queue an async routing request.", Role.INVOKE, "shared.schemas:ChatCompletionRequest", statuses=(400, 413, 429)
    ),
    ("GET", "/api/v1/jobs/{id}"): Operation("An async job of the caller's tenant.", Role.INVOKE, statuses=(404,)),
    ("POST", "/api/v1/feedback"): Operation(
        "An outcome label for an answered request.",
        Role.INVOKE,
        "shared.api.feedback:FeedbackBody",
        statuses=(400, 404, 413),
    ),
    ("GET", "/api/v1/usage"): Operation("Usage and cost (own tenant; Admin: any tenant).", Role.INVOKE),
    ("GET", "/api/v1/examples"): Operation("The labelled routing examples.", Role.ADMIN),
    ("POST", "/api/v1/examples"): Operation(
        "Add labelled routing examples.", Role.ADMIN, "shared.api.examples:ExamplesIn", statuses=(400, 413)
    ),
}

ERROR_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or invalid bearer token",
    403: "The token lacks the role this operation needs",
    404: "Not found",
    405: "Method not allowed",
    410: "Model retired",
    413: "Request body too large",
    422: "No model can serve the request",
    429: "Quota exceeded or upstream rate limited (see Retry-After)",
    502: "Upstream model error",
    503: "Dependency or provider unavailable",
    504: "Upstream timeout",
}


def _import_model(ref: str) -> type[BaseModel] | None:
    module_name, _, name = ref.partition(":")
    try:
        model = getattr(importlib.import_module(module_name), name, None)
    except ImportError:  # an endpoint whose module is not there yet
        return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\??\}")


def http_routes(app: func.FunctionApp) -> list[tuple[str, list[str]]]:
    """(path, methods) of every HTTP function. Reads the app's builders: get_functions() may run
    only once per app, and the Functions host (or the local host) has already called it."""
    routes: list[tuple[str, list[str]]] = []
    for builder in getattr(app, "_function_builders", []):
        trigger = builder.build().get_trigger()
        if trigger is None or trigger.type != "httpTrigger":
            continue
        spec = trigger.get_dict_repr()
        route = str(spec.get("route") or builder.build().get_function_name())
        methods = [m.value if hasattr(m, "value") else str(m) for m in (spec.get("methods") or ["GET", "POST"])]
        routes.append(("/" + _PARAM.sub(r"{\1}", route.strip("/")), [m.upper() for m in methods]))
    return routes


def build_document(app: func.FunctionApp) -> dict[str, Any]:
    components: dict[str, Any] = {"schemas": {"Error": ERROR_SCHEMA}}
    paths: dict[str, Any] = {}
    for path, methods in sorted(http_routes(app)):
        for method in methods:
            op = OPERATIONS.get((method, path)) or Operation(f"{method} {path}", Role.INVOKE)
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, components["schemas"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Routes each request to the model that gives the needed quality at the lowest "
            "cost and latency. Errors use the OpenAI shape {error: {message, type, param, code}}.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            **components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Entra ID access token (RS256) or a service token (HS256). "
                    "Roles: LLMRouter.Invoke, LLMRouter.Admin, LLMRouter.Ops.",
                }
            },
        },
    }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _operation(method: str, path: str, op: Operation, schema_store: dict[str, Any]) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9]+", "_", f"{method} {path}").strip("_").lower()
    out: dict[str, Any] = {"operationId": name, "summary": op.summary, "tags": [op.tag]}
    params = _PARAM.findall(path)
    if params:
        out["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if method in ("POST", "PUT", "PATCH"):
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _body(op, schema_store)}}}
    ok_content = (
        {"text/plain": {"schema": {"type": "string"}}}
        if op.text_response
        else {"application/json": {"schema": {"type": "object"}}}
    )
    if path == "/api/v1/chat/completions":
        ok_content["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": ok_content}}
    statuses = set(op.statuses)
    if path in {"/health/ready", "/api/v1/health"}:
        statuses.add(503)
    if op.role is not None:
        out["security"] = [{"bearer": []}]
        statuses |= {401, 403}
    else:
        out["security"] = []
    for status in sorted(statuses):
        content = (
            {"application/json": {"schema": {"type": "object"}}}
            if path in ("/health/ready", "/api/v1/health") and status == 503
            else {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        )
        responses[str(status)] = {"description": ERROR_DESCRIPTIONS.get(status, "Error"), "content": content}
    responses["default"] = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    out["responses"] = responses
    if op.role is not None:
        out["x-required-role"] = op.role.value
    return out


def _body(op: Operation, schema_store: dict[str, Any]) -> dict[str, Any]:
    model = _import_model(op.body_model) if op.body_model else None
    if model is None:
        return {"type": "object"}
    schema: dict[str, Any] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schema_store.setdefault(name, sub)
    schema_store[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


async def document(request: Request, app: func.FunctionApp) -> Response:
    async def _doc(request: Request, ctx: AppContext, request_id: str) -> Response:
        return json_response(build_document(app), 200, {"cache-control": "public, max-age=300"})

    return await handle(request, "openapi", _doc)
