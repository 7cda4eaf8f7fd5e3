"""POST /api/v1/feedback {request_id, score (0..1), model?, comment?}: 201 with the stored row."""

from __future__ import annotations

from typing import cast

from psycopg import Error as PsycopgError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Role
from ..context import AppContext
from ..errors import DependencyUnavailable
from ..schemas import invalid_from_validation
from ..store.feedback import FeedbackStore
from .common import authorize, handle, json_response, read_json_object

MAX_FEEDBACK_BYTES = 16_384


class FeedbackBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=4000)


def _store(ctx: AppContext) -> FeedbackStore:
    store = ctx.extras.get("feedback_store")
    if store is None:
        raise DependencyUnavailable("Feedback needs the database (DATABASE_ENABLED=true).")
    return cast(FeedbackStore, store)


async def _feedback(request: Request, ctx: AppContext, request_id: str) -> Response:
    principal = await authorize(ctx, request, Role.INVOKE)
    data = await read_json_object(request, MAX_FEEDBACK_BYTES)
    try:
        body = FeedbackBody.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    try:
        stored = await _store(ctx).add(principal.tenant, body.request_id, body.score, body.model, body.comment)
    except (PsycopgError, PoolTimeout, OSError):
        raise DependencyUnavailable("The feedback database is unavailable; try again shortly.") from None
    return json_response(stored, 201, {"x-request-id": request_id})


async def feedback(request: Request) -> Response:
    return await handle(request, "feedback", _feedback)
