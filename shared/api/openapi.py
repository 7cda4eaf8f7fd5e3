"""The OpenAPI 3.1 document, built from the endpoint table (shared/api/endpoints.py) that
function_app.py's decorators and the role checks read too, so it cannot list a route that does not
exist or miss one that does. Request bodies are the pydantic models the handlers validate with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..auth.base import Role
from .endpoint import Endpoint

TITLE = "LLM Router"
VERSION = "1.0.0"


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


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\??\}")


def build_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    components: dict[str, Any] = {"schemas": {"Error": ERROR_SCHEMA}}
    paths: dict[str, Any] = {}
    for ep in sorted(endpoints, key=lambda e: e.path):
        path = _PARAM.sub(r"{\1}", ep.path)
        for method in ep.methods:
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, ep, components["schemas"])
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
                    "Roles: " + ", ".join(r.value for r in Role) + ".",
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


def _operation(method: str, path: str, op: Endpoint, schema_store: dict[str, Any]) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9]+", "_", f"{method} {path}").strip("_").lower()
    out: dict[str, Any] = {"operationId": name, "summary": op.summary, "tags": [op.tag]}
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _PARAM.findall(path)
    ]
    params += [
        {"name": q.name, "in": "query", "required": False, "description": q.description, "schema": q.schema()}
        for q in op.query
    ]
    if params:
        out["parameters"] = params
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


def _body(op: Endpoint, schema_store: dict[str, Any]) -> dict[str, Any]:
    model = op.body_model
    if model is None:
        return {"type": "object"}
    schema: dict[str, Any] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schema_store.setdefault(name, sub)
    schema_store[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
