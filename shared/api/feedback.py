"""POST /api/v1/feedback {request_id, score (0..1), model?, comment?}: 201 with the stored row."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from ..errors import DependencyUnavailable
from ..schemas import invalid_from_validation
from .endpoint import HttpCall
from .http import json_response, read_json_object

MAX_FEEDBACK_BYTES = 16_384


class FeedbackBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    score: float = Field(ge=0, le=1)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=4000)


async def feedback(call: HttpCall) -> Response:
    store = call.services.feedback
    if store is None:
        raise DependencyUnavailable("Feedback needs the database (DATABASE_URL).")
    data = await read_json_object(call.request, MAX_FEEDBACK_BYTES)
    try:
        body = FeedbackBody.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    stored = await store.add(call.principal.tenant, body.request_id, body.score, body.model, body.comment)
    return json_response(stored, 201, {"x-request-id": call.request_id})
