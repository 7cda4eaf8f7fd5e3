"""GET /api/v1/judge/agreement?from=&to=: how often the shadow judge agrees with human feedback
on the same requests, for the caller's tenant (Admin role). The numbers and what agreement means
are described in shared/store/verdicts.py; `from`/`to` as in /api/v1/usage (default: 30 days)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from ..errors import DependencyUnavailable, InvalidRequest
from .endpoint import HttpCall
from .http import json_response
from .usage import DEFAULT_RANGE, parse_instant


async def agreement(call: HttpCall) -> Response:
    store = call.services.verdicts
    if store is None:
        raise DependencyUnavailable("Judge agreement needs the database (DATABASE_URL).")
    q = call.request.query_params
    unknown = sorted(set(q.keys()) - {"from", "to"})
    if unknown:
        raise InvalidRequest(f"Unknown query parameter '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")
    end = parse_instant(q["to"], "to") if q.get("to") else datetime.now(UTC)
    start = parse_instant(q["from"], "from") if q.get("from") else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'.", param="from", code="invalid_range")
    tenant = call.principal.tenant
    report = await store.agreement(tenant, start, end)
    body = {"object": "judge.agreement", "tenant": tenant, "from": start.isoformat(), "to": end.isoformat(), **report}
    return json_response(body, 200, {"x-request-id": call.request_id})
