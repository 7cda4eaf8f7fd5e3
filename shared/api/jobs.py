"""POST /api/v1/jobs and GET /api/v1/jobs/{id}."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..errors import DependencyUnavailable, NotFound
from ..jobs.service import JobService
from .endpoint import HttpCall
from .http import json_response, read_body

JOBS_PATH = "/api/v1/jobs"


def job_service(call: HttpCall) -> JobService:
    if call.services.jobs is None:
        raise DependencyUnavailable("Async jobs are not configured in this process.")
    return call.services.jobs


def _job_id(request: Request) -> str:
    # The local host fills path_params from its route; in Azure the worker copies the host's route
    # parameters into path_params (RequestSynchronizer.sync_route_params). The path is the fallback.
    job_id = request.path_params.get("id") or request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if not job_id or job_id == "jobs":
        raise NotFound("No job id in the path.", param="id")
    return str(job_id)


async def submit(call: HttpCall) -> Response:
    body = await read_body(call.request, call.services.settings.max_body_bytes)
    job = await job_service(call).submit(body, call.principal)
    status_url = f"{JOBS_PATH}/{job.id}"
    return json_response(
        {"id": job.id, "object": "router.job", "status": job.status, "status_url": status_url},
        202,
        {"Location": status_url, "x-request-id": call.request_id},
    )


async def status(call: HttpCall) -> Response:
    job = await job_service(call).get(_job_id(call.request), call.principal)
    return json_response(job.public(), 200, {"x-request-id": call.request_id})
