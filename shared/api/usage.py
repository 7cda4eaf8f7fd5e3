"""GET /api/v1/usage?from=&to=&group_by=model|day|tenant|purpose[&tenant=][&purpose=]: tokens,
requests and cost.

`purpose` picks what is counted: `answer` (the default: the caller's own requests), `shadow`,
`judge` (the calls made after answers to label traffic, shared/shadow/), a comma list, or `all`.

Every caller sees its own tenant only (a tenant's Admin included), as examples and jobs are
tenant-scoped; a PlatformAdmin (the platform's operator) sees every tenant and may pick one with
`tenant=`. `from`/`to` are ISO 8601 (a date alone means midnight UTC, no offset means UTC);
the range is half-open. Defaults: the last 30 days up to now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from ..auth.base import Role
from ..errors import DependencyUnavailable, InvalidRequest, PermissionDenied, shorten
from ..store.usage import GROUP_BY, PURPOSES
from .endpoint import HttpCall
from .http import json_response

DEFAULT_RANGE = timedelta(days=30)
# Dates far outside any log overflow date arithmetic (0001-01-02 once answered 500): bounded.
FIRST_YEAR, LAST_YEAR = 2000, 2200


def parse_instant(value: str, param: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"Invalid '{param}': expected an ISO 8601 date or date-time, got {shorten(value)!r}.",
            param=param,
            code="invalid_value",
        ) from None
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:  # before any offset arithmetic, which could overflow
        raise InvalidRequest(
            f"Invalid '{param}': years {FIRST_YEAR} to {LAST_YEAR} are accepted.",
            param=param,
            code="invalid_value",
        )
    return parsed


def parse_purposes(value: str | None) -> tuple[str, ...]:
    if not value:
        return ("answer",)
    if value.strip() == "all":
        return PURPOSES
    asked = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    bad = [p for p in asked if p not in PURPOSES]
    if bad or not asked:
        raise InvalidRequest(
            f"Invalid 'purpose': expected 'all' or a comma list of {', '.join(PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    return asked


async def usage(call: HttpCall) -> Response:
    store, principal = call.services.usage, call.principal
    if store is None:
        raise DependencyUnavailable("Usage needs the database (DATABASE_URL).")
    q = call.request.query_params
    unknown = sorted(set(q.keys()) - {"from", "to", "group_by", "tenant", "purpose"})
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter '{shorten(unknown[0])}'.", param=shorten(unknown[0]), code="unknown_parameter"
        )
    group_by = q.get("group_by", "model")
    if group_by not in GROUP_BY:
        raise InvalidRequest(
            f"Invalid 'group_by': expected one of {', '.join(GROUP_BY)}.", param="group_by", code="invalid_value"
        )
    end = parse_instant(q["to"], "to") if q.get("to") else datetime.now(UTC)
    start = parse_instant(q["from"], "from") if q.get("from") else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'.", param="from", code="invalid_range")

    tenant: str | None = principal.tenant
    if principal.has(Role.PLATFORM_ADMIN):
        tenant = q.get("tenant") or None
    elif q.get("tenant") and q["tenant"] != principal.tenant:
        raise PermissionDenied(f"Reading another tenant's usage needs the {Role.PLATFORM_ADMIN.value} role.")

    purposes = parse_purposes(q.get("purpose"))
    data = await store.query(tenant, start, end, group_by, purposes)
    body: dict[str, Any] = {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "group_by": group_by,
        "purpose": list(purposes),
        "data": data,
    }
    return json_response(body, 200, {"x-request-id": call.request_id})
