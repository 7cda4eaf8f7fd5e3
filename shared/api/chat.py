"""POST /api/v1/chat/completions and POST /api/v1/route: the chat pipeline's result as HTTP
(x-router-* headers, SSE framing)."""

from __future__ import annotations

from starlette.responses import Response

from ..chat.result import AnswerMeta, ChatResult
from .endpoint import HttpCall
from .http import int_param, json_response, parse_chat
from .sse import SseResponse

# /api/v1/route lists this many of the decision's k neighbours unless `?neighbours=N` asks for
# more: the nearest few show why; all 200 are 15 KB of JSON that the caller rarely reads.
LISTED_NEIGHBOURS = 10
MAX_LISTED_NEIGHBOURS = 10_000


def router_headers(result: ChatResult) -> dict[str, str]:
    m: AnswerMeta = result.meta
    headers = {
        "x-request-id": result.request_id,
        "x-router-model": m.model,
        "x-router-policy": m.policy,
        "x-router-cache": m.cache,
        "x-router-overhead-ms": f"{m.overhead_ms:.2f}",
        "x-router-upstream-ms": f"{m.upstream_ms:.2f}" if m.upstream_ms else "0",
    }
    if m.cache_kind is not None:
        headers["x-router-cache-kind"] = m.cache_kind
    if m.fallbacks:
        headers["x-router-fallbacks"] = ",".join(f"{f['from']}>{f['to']}:{f['reason']}" for f in m.fallbacks)
    return headers


async def completions(call: HttpCall) -> Response:
    req = await parse_chat(call)
    result = await call.services.chat.chat(
        req, call.principal, request_id=call.request_id, cache_control=call.request.headers.get("cache-control")
    )
    headers = router_headers(result)
    if result.chunks is not None:
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return SseResponse(result.chunks, headers)
    return json_response(result.completion, 200, headers)


async def route(call: HttpCall) -> Response:
    listed = int_param(call.request, "neighbours", LISTED_NEIGHBOURS, 0, MAX_LISTED_NEIGHBOURS)
    req = await parse_chat(call)
    decision = await call.services.chat.decide(req, call.principal)
    body = {"id": call.request_id, "object": "router.decision", **decision.public(listed)}
    return json_response(body, 200, {"x-request-id": call.request_id, "x-router-model": decision.chosen.id})
