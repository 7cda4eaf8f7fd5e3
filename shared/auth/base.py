"""Principals and roles, and the authenticator protocol the HTTP layer calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    INVOKE = "LLMRouter.Invoke"
    ADMIN = "LLMRouter.Admin"
    OPS = "LLMRouter.Ops"
    # held by platform operators only, never by a tenant: writes what every tenant routes with
    # (shared examples, the starter set, alongside ADMIN) and reads every tenant's usage
    PLATFORM_ADMIN = "LLMRouter.PlatformAdmin"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant: str
    roles: frozenset[str] = field(default_factory=frozenset)
    issuer: str = "anonymous"

    def has(self, role: Role) -> bool:
        return role.value in self.roles


# Used when AUTH_ENABLED=false (development only; production refuses to start that way).
ANONYMOUS = Principal(
    subject="anonymous",
    tenant="default",
    roles=frozenset(r.value for r in Role),
    issuer="auth-disabled",
)


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an Authorization header; raises AuthenticationFailed."""
        ...
