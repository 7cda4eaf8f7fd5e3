"""HS256 service tokens signed with JWT_SECRET: minted by `python -m shared.cli token`, verified here.

The tenant travels in the `tenant` claim and the roles in `roles`. `exp`, `iss` and `aud` are
required; the algorithm is pinned to HS256 so a token cannot choose how it is checked.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from ..config import Settings, secret_value
from ..errors import AuthenticationFailed
from .base import Principal

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32
LEEWAY_S = 30
DEV_SECRET_FILE = "dev-jwt-secret"  # noqa: S105 - a file name, not a secret


class ServiceTokens:
    def __init__(self, secret: str, *, issuer: str, audience: str, leeway_s: float = LEEWAY_S) -> None:
        if not secret:
            raise ValueError("a service-token secret is required")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = min(leeway_s, 60.0)

    @classmethod
    def from_settings(cls, settings: Settings, secret: str | None = None) -> ServiceTokens:
        value = secret or secret_value(settings.jwt_secret)
        if not value:
            raise ValueError("JWT_SECRET is not set")
        return cls(value, issuer=settings.jwt_issuer, audience=settings.jwt_audience)

    def mint(
        self,
        tenant: str,
        roles: list[str] | tuple[str, ...],
        *,
        ttl_s: float = 3600,
        subject: str | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject or f"service:{tenant}",
            "tenant": tenant,
            "roles": list(roles),
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl_s),
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims)
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError:
            raise AuthenticationFailed() from None
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationFailed()
        return Principal(
            subject=str(claims.get("sub") or f"service:{tenant}"),
            tenant=tenant,
            roles=roles_claim(claims),
            issuer=self.issuer,
        )


def roles_claim(claims: dict[str, Any]) -> frozenset[str]:
    roles = claims.get("roles")
    if isinstance(roles, str):
        return frozenset({roles})
    if isinstance(roles, list):
        return frozenset(r for r in roles if isinstance(r, str))
    return frozenset()


def dev_jwt_secret(data_dir: Path) -> str:
    """A per-data-dir secret for development when JWT_SECRET is unset, so `make run` works from a
    fresh clone and the printed dev token stays valid across restarts. Never used in production
    (check_auth_settings refuses to start there without a real JWT_SECRET)."""
    path = data_dir / DEV_SECRET_FILE
    if path.exists():
        value = path.read_text().strip()
        if len(value.encode()) >= MIN_SECRET_BYTES:
            return value
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # 0600 from the start: the secret is never readable by other users, not even briefly
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def service_secret(settings: Settings) -> str | None:
    """JWT_SECRET, or outside production the generated development secret."""
    value = secret_value(settings.jwt_secret)
    if value:
        return value
    if settings.is_production:
        return None
    return dev_jwt_secret(settings.embedded_data_dir)
