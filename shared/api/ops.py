"""The catalog, health, readiness and metrics endpoints."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..metrics import CIRCUIT_STATE, CIRCUIT_VALUES, render
from .endpoint import HttpCall
from .http import json_response


async def models(call: HttpCall) -> Response:
    svc = call.services
    states = await svc.circuit.states()
    data = []
    for m in svc.catalog:
        row = m.public()
        row["circuit"] = states.get(m.id, "closed")
        row["available"] = m.enabled and row["circuit"] != "open"
        data.append(row)
    retired = [{"id": k, "replacement": v} for k, v in sorted(svc.catalog.retired.items())]
    return json_response({"object": "list", "data": data, "retired": retired})


async def health(call: HttpCall) -> Response:
    report = await call.services.health.report()
    return json_response(report, 200 if report["status"] != "down" else 503)


async def live(request: Request) -> Response:
    """Liveness needs nothing but the process: no services, no auth."""
    return json_response({"status": "ok"})


async def ready(call: HttpCall) -> Response:
    status, problems = await call.services.health.readiness()
    # anonymous: statuses and setting names only, never internals or values
    return json_response({"status": status, "problems": problems}, 503 if status == "down" else 200)


async def metrics(call: HttpCall) -> Response:
    svc = call.services
    states = await svc.circuit.states()
    for m in svc.catalog:
        CIRCUIT_STATE.labels(m.id).set(CIRCUIT_VALUES[states.get(m.id, "closed")])
    body, content_type = render()
    return Response(body, media_type=content_type)
