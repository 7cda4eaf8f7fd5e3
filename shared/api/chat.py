"""POST /api/v1/chat/completions and POST /api/v1/route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..auth.base import Role
from ..context import AppContext
from .common import authorize, handle, json_response, parse_chat


async def _chat(request: Request, ctx: AppContext, request_id: str) -> Response:
    principal = await authorize(ctx, request, Role.INVOKE)
    req = await parse_chat(request, ctx)
    outcome = await ctx.service.chat(
        req, principal, request_id=request_id, cache_control=request.headers.get("cache-control")
    )
    if outcome.stream is not None:
        headers = {**outcome.headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(outcome.stream, media_type="text/event-stream", headers=headers)
    return json_response(outcome.completion, 200, outcome.headers)


async def chat_completions(request: Request) -> Response:
    return await handle(request, "chat", _chat)


async def _route(request: Request, ctx: AppContext, request_id: str) -> Response:
    principal = await authorize(ctx, request, Role.INVOKE)
    req = await parse_chat(request, ctx)
    decision = await ctx.service.decide(req, principal)
    body = {"id": request_id, "object": "router.decision", **decision.public()}
    return json_response(body, 200, {"x-request-id": request_id, "x-router-model": decision.chosen.id})


async def route(request: Request) -> Response:
    return await handle(request, "route", _route)
