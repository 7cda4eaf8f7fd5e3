"""The bearer-token authenticator the HTTP layer calls, and the production start-up guard.

A token is sent to exactly one verifier, chosen by its (unverified) issuer and algorithm:
Entra ID issuers go to the RS256 verifier, our own issuer to the HS256 one. Each verifier
pins its algorithm, so `alg: none`, or an HS256 token signed with the RSA public key, never
reaches a verifier that would accept it. Every failure is the same generic 401: the message
never says which check failed and never echoes the token.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import jwt

from ..config import Settings, secret_value
from ..errors import AuthenticationFailed
from .base import Principal
from .entra import ALGORITHM as ENTRA_ALGORITHM
from .entra import EntraVerifier
from .service_tokens import ALGORITHM as SERVICE_ALGORITHM
from .service_tokens import MIN_SECRET_BYTES, ServiceTokens

log = logging.getLogger(__name__)

# Real Entra access tokens are a few KB; anything far larger is not worth parsing.
MAX_TOKEN_CHARS = 16_384


class InsecureConfiguration(RuntimeError):
    """The settings would run the router without real authentication where that is forbidden."""


class BearerAuthenticator:
    """Verifies bearer tokens, and remembers the ones it verified.

    A caller sends the same token on every request until it expires; verifying it once (a
    signature check, and PyJWT's parsing, ~0.3 ms) and then trusting it until its `exp` — never
    longer than `cache_ttl_s` — takes that cost off every later request. The cap bounds how long
    a token stays accepted after its signing key is rotated out.
    """

    def __init__(
        self,
        service: ServiceTokens | None = None,
        entra: EntraVerifier | None = None,
        *,
        cache_ttl_s: float = 300.0,
        cache_size: int = 10_000,
    ) -> None:
        if service is None and entra is None:
            raise ValueError("at least one verifier is needed")
        self.service = service
        self.entra = entra
        self.cache_ttl_s = cache_ttl_s
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        hit = self._verified.get(token)
        if hit is not None:
            principal, valid_until = hit
            if time.time() < valid_until:
                return principal
            del self._verified[token]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthenticationFailed() from None
        alg, issuer = header.get("alg"), claims.get("iss")
        if self.entra is not None and self.entra.accepts_issuer(issuer) and alg == ENTRA_ALGORITHM:
            principal = await self.entra.verify(token)
        elif self.service is not None and issuer == self.service.issuer and alg == SERVICE_ALGORITHM:
            principal = self.service.verify(token)
        else:
            raise AuthenticationFailed()
        self._remember(token, principal, claims.get("exp"))
        return principal

    def _remember(self, token: str, principal: Principal, exp: object) -> None:
        if not isinstance(exp, int | float):
            return
        valid_until = min(float(exp), time.time() + self.cache_ttl_s)
        self._verified[token] = (principal, valid_until)
        while len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed()
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise AuthenticationFailed()
    return token


def check_auth_settings(settings: Settings) -> None:
    """Refuse to start in production without real authentication. Names settings, never values."""
    secret = secret_value(settings.jwt_secret)
    short_secret = secret is not None and len(secret.encode()) < MIN_SECRET_BYTES
    if not settings.is_production:
        if settings.auth_enabled and short_secret:
            log.warning("JWT_SECRET is shorter than %d bytes; production would refuse it", MIN_SECRET_BYTES)
        return
    if not settings.auth_enabled:
        raise InsecureConfiguration("ENVIRONMENT=production refuses AUTH_ENABLED=false.")
    if short_secret:
        raise InsecureConfiguration(f"ENVIRONMENT=production needs a JWT_SECRET of at least {MIN_SECRET_BYTES} bytes.")
    if secret is None and not (settings.azure_tenant_id and settings.azure_client_id):
        raise InsecureConfiguration(
            "ENVIRONMENT=production needs JWT_SECRET (at least "
            f"{MIN_SECRET_BYTES} bytes) or AZURE_TENANT_ID and AZURE_CLIENT_ID."
        )


def build_authenticator(settings: Settings, service_secret: str | None) -> BearerAuthenticator:
    service = (
        ServiceTokens(service_secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        if service_secret
        else None
    )
    entra = EntraVerifier.from_settings(settings) if settings.azure_tenant_id and settings.azure_client_id else None
    if service is None and entra is None:
        raise InsecureConfiguration("AUTH_ENABLED=true needs JWT_SECRET or AZURE_TENANT_ID and AZURE_CLIENT_ID.")
    return BearerAuthenticator(service, entra)
