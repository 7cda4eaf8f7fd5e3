"""Every HTTP endpoint, declared once: route, methods, role, what it takes, who serves it.
function_app.py decorates its functions from these, http.serve() checks the role, and the
OpenAPI document is built from the same table."""

from __future__ import annotations

from starlette.responses import Response

from ..auth.base import Role
from ..composition.services import Services
from ..schemas import ChatCompletionRequest
from . import chat, examples, feedback, jobs, judge, ops, usage
from .endpoint import Endpoint, HttpCall, QueryParam
from .http import json_response
from .openapi import build_document

CHAT_ERRORS = (400, 404, 410, 413, 422, 429, 502, 503, 504)


def _metrics_public(services: Services) -> bool:
    return services.settings.metrics_public


async def _openapi(call: HttpCall) -> Response:
    return json_response(build_document(ENDPOINTS), 200, {"cache-control": "public, max-age=300"})


# the reporting endpoints' window (usage, judge agreement)
TIME_RANGE = (
    QueryParam("from", "Start, ISO 8601 (default: 30 days before `to`)."),
    QueryParam("to", "End, ISO 8601 (default: now)."),
)

CHAT = Endpoint(
    "chat",
    "api/v1/chat/completions",
    ("POST",),
    Role.INVOKE,
    "OpenAI-compatible chat completion; model 'auto' (or auto:<policy>) lets the router choose.",
    chat.completions,
    body_model=ChatCompletionRequest,
    statuses=CHAT_ERRORS,
)
ROUTE = Endpoint(
    "route",
    "api/v1/route",
    ("POST",),
    Role.INVOKE,
    "The routing decision only: ranked candidates, predicted quality, cost and why.",
    chat.route,
    body_model=ChatCompletionRequest,
    statuses=(400, 404, 410, 413, 422),
    query=(
        QueryParam(
            "neighbours",
            "How many of the most similar labelled neighbours to list (the decision reads them all).",
            "integer",
            0,
            chat.MAX_LISTED_NEIGHBOURS,
            chat.LISTED_NEIGHBOURS,
        ),
    ),
)
MODELS = Endpoint(
    "models",
    "api/v1/models",
    ("GET",),
    Role.INVOKE,
    "The model catalog with capabilities, prices and state.",
    ops.models,
)
HEALTH = Endpoint(
    "health", "api/v1/health", ("GET",), Role.OPS, "Every dependency with status and latency.", ops.health, tag="ops"
)


async def _live(call: HttpCall) -> Response:
    return await ops.live(call.request)


# function_app serves liveness with ops.live directly: it needs no services
LIVE = Endpoint("live", "health/live", ("GET",), None, "Liveness.", _live, tag="ops")
READY = Endpoint(
    "ready", "health/ready", ("GET",), None, "Readiness (statuses and setting names only).", ops.ready, tag="ops"
)
METRICS = Endpoint(
    "metrics",
    "metrics",
    ("GET",),
    Role.OPS,
    "Prometheus metrics (Ops unless METRICS_PUBLIC=true).",
    ops.metrics,
    tag="ops",
    text_response=True,
    anonymous_when=_metrics_public,
)
OPENAPI = Endpoint("openapi", "api/v1/openapi.json", ("GET",), None, "This document.", _openapi, tag="ops")
USAGE = Endpoint(
    "usage",
    "api/v1/usage",
    ("GET",),
    Role.INVOKE,
    "Usage and cost (own tenant; PlatformAdmin: any tenant).",
    usage.usage,
    statuses=(400,),
    query=(
        *TIME_RANGE,
        QueryParam("group_by", "model, day, tenant or purpose.", default="model"),
        QueryParam("tenant", "Another tenant's usage (PlatformAdmin only)."),
        QueryParam("purpose", "answer (default), shadow, judge, a comma list, or all."),
    ),
)
FEEDBACK = Endpoint(
    "feedback",
    "api/v1/feedback",
    ("POST",),
    Role.INVOKE,
    "An outcome label for an answered request.",
    feedback.feedback,
    body_model=feedback.FeedbackBody,
    statuses=(400, 404, 413),
)
JOBS_SUBMIT = Endpoint(
    "jobs_submit",
    "api/v1/jobs",
    ("POST",),
    Role.INVOKE,
    "Queue an async routing request.",
    jobs.submit,
    body_model=ChatCompletionRequest,
    statuses=(400, 413, 429),
)
JOBS_STATUS = Endpoint(
    "jobs_status",
    "api/v1/jobs/{id}",
    ("GET",),
    Role.INVOKE,
    "An async job of the caller's tenant.",
    jobs.status,
    statuses=(404,),
)
EXAMPLES_LIST = Endpoint(
    "examples",
    "api/v1/examples",
    ("GET",),
    Role.ADMIN,
    "The labelled routing examples.",
    examples.list_examples,
    statuses=(400,),
    query=(
        QueryParam("limit", "Page size.", "integer", 1, examples.MAX_PAGE, 100),
        QueryParam(
            "offset",
            "Rows to skip. On Weaviate, offset + limit may not pass its QUERY_MAXIMUM_RESULTS (10,000 by default):"
            " 400 `offset_too_large`.",
            "integer",
            0,
            None,
            0,
        ),
    ),
)
EXAMPLES_ADD = Endpoint(
    "examples",
    "api/v1/examples",
    ("POST",),
    Role.ADMIN,
    "Add labelled routing examples.",
    examples.add_examples,
    body_model=examples.ExamplesIn,
    statuses=(400, 413),
)
JUDGE_AGREEMENT = Endpoint(
    "judge_agreement",
    "api/v1/judge/agreement",
    ("GET",),
    Role.ADMIN,
    "How often the shadow judge agrees with human feedback on the same requests (own tenant).",
    judge.agreement,
    statuses=(400, 503),
    query=TIME_RANGE,
)

ENDPOINTS: tuple[Endpoint, ...] = (
    CHAT,
    ROUTE,
    MODELS,
    HEALTH,
    LIVE,
    READY,
    METRICS,
    OPENAPI,
    USAGE,
    FEEDBACK,
    JOBS_SUBMIT,
    JOBS_STATUS,
    EXAMPLES_LIST,
    EXAMPLES_ADD,
    JUDGE_AGREEMENT,
)


def methods(*endpoints: Endpoint) -> list[str]:
    """The methods of the endpoints one function serves (GET and POST /api/v1/examples)."""
    return sorted({m for e in endpoints for m in e.methods})
