"""What an HTTP endpoint is: its route, methods and role, stated once. function_app.py's
decorators, the role check and the OpenAPI document all read the same Endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from ..auth.base import Principal, Role
from ..composition.services import Services


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request on its way to a handler, with who is calling."""

    request: Request
    services: Services
    request_id: str
    principal: Principal


Handler = Callable[[HttpCall], Awaitable[Response]]


@dataclass(frozen=True)
class QueryParam:
    """A query parameter an endpoint reads, as the OpenAPI document states it."""

    name: str
    description: str
    kind: str = "string"  # the JSON Schema type
    minimum: int | None = None
    maximum: int | None = None
    default: int | str | None = None

    def schema(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.kind}
        for key in ("minimum", "maximum", "default"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Endpoint:
    name: str  # the route label in metrics and logs
    route: str  # as the Functions host reads it: no leading slash, `{id}` parameters
    methods: tuple[str, ...]
    role: Role | None  # None: anonymous
    summary: str
    handler: Handler
    tag: str = "router"
    body_model: type[BaseModel] | None = None  # the pydantic model the handler validates
    statuses: tuple[int, ...] = ()
    query: tuple[QueryParam, ...] = ()
    text_response: bool = False
    # an Ops endpoint that a setting may open to anonymous callers (METRICS_PUBLIC)
    anonymous_when: Callable[[Services], bool] | None = None

    @property
    def path(self) -> str:
        return "/" + self.route.strip("/")

    def role_for(self, services: Services) -> Role | None:
        if self.anonymous_when is not None and self.anonymous_when(services):
            return None
        return self.role
