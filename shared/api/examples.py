"""GET /api/v1/examples (list, paginated) and POST /api/v1/examples (add one or many).

Admin role. Tenant-scoped: a caller lists the shared examples plus its own tenant's; what it
adds belongs to its tenant. `"shared": true` (every tenant routes with it) and choosing the
`source` (e.g. the starter set) need LLMRouter.PlatformAdmin too (examples/ownership.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from ..errors import DependencyUnavailable, InvalidRequest
from ..examples.labelled import LabelledExample
from ..examples.ownership import MAX_WEIGHT, check_all_outcome_keys, placement
from ..examples.transfer import encode
from ..index.base import IndexUnavailable, PageTooDeep
from .endpoint import HttpCall
from .http import int_param, json_response, read_json_object

MAX_PAGE = 500
MAX_BATCH = 1000
MAX_CONTENT_CHARS = 100_000

Score = Annotated[float, Field(ge=0.0, le=1.0)]


class ExampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS, validation_alias="prompt")
    outcomes: dict[str, Score] = Field(min_length=1, max_length=64)
    category: str | None = Field(default=None, max_length=200)
    task_type: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=32)
    weight: float = Field(default=1.0, gt=0.0, le=MAX_WEIGHT)
    # only a platform operator's shared examples take it (ownership.placement)
    source: str | None = Field(default=None, min_length=1, max_length=200)
    shared: bool = False

    @field_validator("outcomes")
    @classmethod
    def _keys(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k in value if not k.strip() or len(k) > 200]
        if bad:
            raise ValueError("outcome keys must be non-empty model ids or tier:<name> keys")
        return value


class ExamplesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    examples: list[ExampleIn] = Field(min_length=1, max_length=MAX_BATCH)


def public(ex: LabelledExample) -> dict[str, Any]:
    return {
        "id": ex.id,
        "object": "routing.example",
        "content": ex.content,
        "outcomes": ex.outcomes,
        "best_model": ex.best_model,
        "label_source": ex.label_source,
        "source": ex.source,
        "category": ex.category,
        "task_type": ex.task_type,
        "language": ex.language,
        "shared": ex.tenant is None,
        "weight": ex.weight,
        "source_request_id": ex.source_request_id,
    }


async def list_examples(call: HttpCall) -> Response:
    request, index, principal = call.request, call.services.index, call.principal
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    try:
        # one extra row tells whether another page exists
        rows = await index.list(limit=limit + 1, offset=offset, tenant=principal.tenant)
    except IndexUnavailable as exc:
        raise DependencyUnavailable(f"The example index is unavailable: {exc}", code="index_unavailable") from None
    except PageTooDeep as exc:
        raise InvalidRequest(
            f"{exc}: ask for a smaller offset (operators export the shared examples whole with "
            "`python -m shared.cli examples export`).",
            param="offset",
            code="offset_too_large",
        ) from None
    body = {
        "object": "list",
        "data": [public(ex) for ex in rows[:limit]],
        "limit": limit,
        "offset": offset,
        "has_more": len(rows) > limit,
    }
    return json_response(body)


def _parse(data: dict[str, Any]) -> list[ExampleIn]:
    try:
        if "examples" in data:
            return ExamplesIn.model_validate(data).examples
        return [ExampleIn.model_validate(data)]
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise InvalidRequest(f"Invalid example: {param}: {err['msg']}", param=param, code="invalid_example") from None


async def add_examples(call: HttpCall) -> Response:
    svc, principal = call.services, call.principal
    data = await read_json_object(call.request, svc.settings.max_body_bytes)
    items = _parse(data)
    check_all_outcome_keys((it.outcomes for it in items), svc.catalog, batched="examples" in data)
    examples = []
    for it in items:
        tenant, source = placement(principal, it.shared, it.source)
        examples.append(
            LabelledExample(
                content=it.content,
                outcomes=dict(it.outcomes),
                label_source="manual",
                source=source,
                category=it.category,
                task_type=it.task_type,
                language=it.language,
                tenant=tenant,
                weight=it.weight,
            )
        )
    try:
        vectors = await encode(svc.encoder, [ex.content for ex in examples])
        await svc.index.upsert(examples, vectors)
    except IndexUnavailable as exc:
        raise DependencyUnavailable(f"The example index is unavailable: {exc}", code="index_unavailable") from None
    body = {"object": "list", "data": [public(ex) for ex in examples], "created": len(examples)}
    return json_response(body, 201, {"x-request-id": call.request_id})
