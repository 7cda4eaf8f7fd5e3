"""The Azure Functions app (v2 programming model). Thin adapters only: all logic is in shared/."""

from __future__ import annotations

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared import backups, examples_pipeline
from shared.api import chat, examples, feedback, jobs, openapi, ops, usage
from shared.config import get_settings

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="api/v1/chat/completions", methods=["POST"])
async def chat_completions(req: Request) -> Response:
    return await chat.chat_completions(req)


@app.route(route="api/v1/route", methods=["POST"])
async def route_decision(req: Request) -> Response:
    return await chat.route(req)


@app.route(route="api/v1/models", methods=["GET"])
async def list_models(req: Request) -> Response:
    return await ops.models(req)


@app.route(route="api/v1/health", methods=["GET"])
async def health_detail(req: Request) -> Response:
    return await ops.health(req)


@app.route(route="health/live", methods=["GET"])
async def health_live(req: Request) -> Response:
    return await ops.live(req)


@app.route(route="health/ready", methods=["GET"])
async def health_ready(req: Request) -> Response:
    return await ops.ready(req)


@app.route(route="metrics", methods=["GET"])
async def prometheus_metrics(req: Request) -> Response:
    return await ops.metrics(req)


@app.route(route="api/v1/openapi.json", methods=["GET"])
async def openapi_document(req: Request) -> Response:
    return await openapi.document(req, app)


@app.route(route="api/v1/usage", methods=["GET"])
async def usage_report(req: Request) -> Response:
    return await usage.usage(req)


@app.route(route="api/v1/feedback", methods=["POST"])
async def post_feedback(req: Request) -> Response:
    return await feedback.feedback(req)


@app.route(route="api/v1/jobs", methods=["POST"])
async def submit_job(req: Request) -> Response:
    return await jobs.submit(req)


@app.route(route="api/v1/jobs/{id}", methods=["GET"])
async def get_job(req: Request) -> Response:
    return await jobs.status(req)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SERVICE_BUS_QUEUE%", connection="ServiceBusConnection")
async def route_job_message(msg: func.ServiceBusMessage) -> None:
    await jobs.process_message(msg)


@app.route(route="api/v1/examples", methods=["GET", "POST"])
async def routing_examples(req: Request) -> Response:
    return await examples.examples(req)


# run_on_startup comes from BACKUP_CHECK_RUN_ON_STARTUP (default false, as Azure advises for
# production); the local host reads it from this binding like the Functions host does.
@app.timer_trigger(
    schedule="%BACKUP_CHECK_SCHEDULE%",
    arg_name="timer",
    run_on_startup=get_settings().backup_check_run_on_startup,
)
async def backup_check(timer: func.TimerRequest) -> None:
    await backups.on_timer(timer.past_due)


@app.timer_trigger(schedule="%FEEDBACK_EXAMPLES_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def feedback_to_examples(timer: func.TimerRequest) -> None:
    await examples_pipeline.on_feedback_timer(timer.past_due)
