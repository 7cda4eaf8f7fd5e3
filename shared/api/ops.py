"""The catalog, health, readiness and metrics endpoints."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Role
from ..context import AppContext
from ..health import health_report, readiness
from ..metrics import CIRCUIT_STATE, CIRCUIT_VALUES, render
from .common import authorize, handle, json_response


async def _models(request: Request, ctx: AppContext, request_id: str) -> Response:
    await authorize(ctx, request, Role.INVOKE)
    states = await ctx.circuit.states()
    data = []
    for m in ctx.catalog:
        row = m.public()
        row["circuit"] = states.get(m.id, "closed")
        row["available"] = m.enabled and row["circuit"] != "open"
        data.append(row)
    retired = [{"id": k, "replacement": v} for k, v in sorted(ctx.catalog.retired.items())]
    return json_response({"object": "list", "data": data, "retired": retired})


async def models(request: Request) -> Response:
    return await handle(request, "models", _models)


async def _health(request: Request, ctx: AppContext, request_id: str) -> Response:
    await authorize(ctx, request, Role.OPS)
    report = await health_report(ctx)
    return json_response(report, 200 if report["status"] != "down" else 503)


async def health(request: Request) -> Response:
    return await handle(request, "health", _health)


async def live(request: Request) -> Response:
    return json_response({"status": "ok"})


async def _ready(request: Request, ctx: AppContext, request_id: str) -> Response:
    status, problems = await readiness(ctx)
    # anonymous: statuses and setting names only, never internals or values
    return json_response({"status": status, "problems": problems}, 503 if status == "down" else 200)


async def ready(request: Request) -> Response:
    return await handle(request, "ready", _ready)


async def _metrics(request: Request, ctx: AppContext, request_id: str) -> Response:
    if not ctx.settings.metrics_public:
        await authorize(ctx, request, Role.OPS)
    states = await ctx.circuit.states()
    for m in ctx.catalog:
        CIRCUIT_STATE.labels(m.id).set(CIRCUIT_VALUES[states.get(m.id, "closed")])
    body, content_type = render()
    return Response(body, media_type=content_type)


async def metrics(request: Request) -> Response:
    return await handle(request, "metrics", _metrics)
