"""The Azure Functions app (v2 programming model). Thin adapters only: each function serves an
endpoint of shared/api/endpoints.py (route, methods and role stated there once) or hands its
trigger to shared/triggers.py, with the process's services (shared/composition/)."""

from __future__ import annotations

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared import triggers
from shared.api import endpoints as ep
from shared.api import ops
from shared.api.http import serve
from shared.composition.process import get_services, warm_on_worker_start
from shared.config import get_settings

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route=ep.CHAT.route, methods=ep.methods(ep.CHAT))
async def chat_completions(req: Request) -> Response:
    return await serve(req, get_services, ep.CHAT)


@app.route(route=ep.ROUTE.route, methods=ep.methods(ep.ROUTE))
async def route_decision(req: Request) -> Response:
    return await serve(req, get_services, ep.ROUTE)


@app.route(route=ep.MODELS.route, methods=ep.methods(ep.MODELS))
async def list_models(req: Request) -> Response:
    return await serve(req, get_services, ep.MODELS)


@app.route(route=ep.HEALTH.route, methods=ep.methods(ep.HEALTH))
async def health_detail(req: Request) -> Response:
    return await serve(req, get_services, ep.HEALTH)


@app.route(route=ep.LIVE.route, methods=ep.methods(ep.LIVE))
async def health_live(req: Request) -> Response:
    return await ops.live(req)


@app.route(route=ep.READY.route, methods=ep.methods(ep.READY))
async def health_ready(req: Request) -> Response:
    return await serve(req, get_services, ep.READY)


@app.route(route=ep.METRICS.route, methods=ep.methods(ep.METRICS))
async def prometheus_metrics(req: Request) -> Response:
    return await serve(req, get_services, ep.METRICS)


@app.route(route=ep.OPENAPI.route, methods=ep.methods(ep.OPENAPI))
async def openapi_document(req: Request) -> Response:
    return await serve(req, get_services, ep.OPENAPI)


@app.route(route=ep.USAGE.route, methods=ep.methods(ep.USAGE))
async def usage_report(req: Request) -> Response:
    return await serve(req, get_services, ep.USAGE)


@app.route(route=ep.FEEDBACK.route, methods=ep.methods(ep.FEEDBACK))
async def post_feedback(req: Request) -> Response:
    return await serve(req, get_services, ep.FEEDBACK)


@app.route(route=ep.JOBS_SUBMIT.route, methods=ep.methods(ep.JOBS_SUBMIT))
async def submit_job(req: Request) -> Response:
    return await serve(req, get_services, ep.JOBS_SUBMIT)


@app.route(route=ep.JOBS_STATUS.route, methods=ep.methods(ep.JOBS_STATUS))
async def get_job(req: Request) -> Response:
    return await serve(req, get_services, ep.JOBS_STATUS)


@app.route(route=ep.EXAMPLES_LIST.route, methods=ep.methods(ep.EXAMPLES_LIST, ep.EXAMPLES_ADD))
async def routing_examples(req: Request) -> Response:
    return await serve(req, get_services, ep.EXAMPLES_LIST, ep.EXAMPLES_ADD)


@app.route(route=ep.JUDGE_AGREEMENT.route, methods=ep.methods(ep.JUDGE_AGREEMENT))
async def judge_agreement(req: Request) -> Response:
    return await serve(req, get_services, ep.JUDGE_AGREEMENT)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SERVICE_BUS_QUEUE%", connection="ServiceBusConnection")
async def route_job_message(msg: func.ServiceBusMessage) -> None:
    await triggers.on_job_message(msg, await get_services())


# run_on_startup comes from BACKUP_CHECK_RUN_ON_STARTUP (default false, as Azure advises for
# production); the local host reads it from this binding like the Functions host does.
@app.timer_trigger(
    schedule="%BACKUP_CHECK_SCHEDULE%",
    arg_name="timer",
    run_on_startup=get_settings().backup_check_run_on_startup,
)
async def backup_check(timer: func.TimerRequest) -> None:
    await triggers.on_backup_timer(timer, await get_services())


@app.timer_trigger(schedule="%FEEDBACK_EXAMPLES_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def feedback_to_examples(timer: func.TimerRequest) -> None:
    await triggers.on_feedback_timer(timer, await get_services())


warm_on_worker_start()
