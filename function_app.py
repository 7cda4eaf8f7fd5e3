"""The Azure Functions app (v2 programming model). Thin adapters only: all logic is in shared/."""

from __future__ import annotations

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from shared.api import chat, ops

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
