"""POST /api/v1/jobs, GET /api/v1/jobs/{id}, and the Service Bus trigger's entry point."""

from __future__ import annotations

from typing import cast

from azure.functions import ServiceBusMessage
from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Role
from ..context import AppContext, get_context
from ..errors import DependencyUnavailable, NotFound
from ..jobs import JobService
from .common import authorize, handle, json_response, read_body

JOBS_PATH = "/api/v1/jobs"


def job_service(ctx: AppContext) -> JobService:
    svc = ctx.extras.get("job_service")
    if svc is None:
        raise DependencyUnavailable("Async jobs are not configured in this process (bootstrap.wire_jobs).")
    return cast(JobService, svc)


def _job_id(request: Request) -> str:
    # The local host fills path_params from its route; in Azure the worker copies the host's route
    # parameters into path_params (RequestSynchronizer.sync_route_params). The path is the fallback.
    job_id = request.path_params.get("id") or request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if not job_id or job_id == "jobs":
        raise NotFound("No job id in the path.", param="id")
    return str(job_id)


async def _submit(request: Request, ctx: AppContext, request_id: str) -> Response:
    principal = await authorize(ctx, request, Role.INVOKE)
    body = await read_body(request, ctx.settings.max_body_bytes)
    job = await job_service(ctx).submit(body, principal)
    status_url = f"{JOBS_PATH}/{job.id}"
    return json_response(
        {"id": job.id, "object": "router.job", "status": job.status, "status_url": status_url},
        202,
        {"Location": status_url, "x-request-id": request_id},
    )


async def submit(request: Request) -> Response:
    return await handle(request, "jobs_submit", _submit)


async def _status(request: Request, ctx: AppContext, request_id: str) -> Response:
    principal = await authorize(ctx, request, Role.INVOKE)
    job = await job_service(ctx).get(_job_id(request), principal)
    return json_response(job.public(), 200, {"x-request-id": request_id})


async def status(request: Request) -> Response:
    return await handle(request, "jobs_status", _status)


async def process_message(msg: ServiceBusMessage) -> None:
    """The Service Bus trigger: returns to complete the message, raises to have it redelivered."""
    ctx = await get_context()
    await job_service(ctx).handle_message(msg, ctx.service)
