"""Azure AD (Entra ID) access tokens: RS256, checked against the tenant's JWKS.

- Keys come from `{authority_host}/{tenant}/discovery/v2.0/keys` through PyJWKClient, which
  caches the key set (`lifespan`) and refetches for an unknown `kid` at most once per
  `cooldown_duration`, so a flood of tokens with made-up key ids cannot turn into a flood of
  JWKS fetches. The fetch is blocking (urllib), so it runs in a worker thread.
- Audiences: the app's client id and its App ID URI (default `api://<client id>`).
- Issuers: v1 (`https://sts.windows.net/<tid>/`) and v2 (`<authority>/<tid>/v2.0`).
- `tid` must be our tenant: a token issued by another Azure tenant is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

from ..config import Settings
from ..errors import AuthenticationFailed
from .base import Principal
from .service_tokens import roles_claim

ALGORITHM = "RS256"
LEEWAY_S = 60.0
JWKS_LIFESPAN_S = 3600.0
JWKS_REFRESH_COOLDOWN_S = 300.0
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"


class EntraVerifier:
    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        app_id_uri: str | None = None,
        authority_host: str = PUBLIC_AUTHORITY,
        leeway_s: float = LEEWAY_S,
        jwks_lifespan_s: float = JWKS_LIFESPAN_S,
        refresh_cooldown_s: float = JWKS_REFRESH_COOLDOWN_S,
        jwks_timeout_s: float = 5.0,
    ) -> None:
        self.tenant_id = tenant_id
        authority = authority_host.rstrip("/")
        self.jwks_uri = f"{authority}/{tenant_id}/discovery/v2.0/keys"
        self.audiences = [client_id, app_id_uri or f"api://{client_id}"]
        self.issuers = {
            f"https://sts.windows.net/{tenant_id}/",
            f"{PUBLIC_AUTHORITY}/{tenant_id}/v2.0",
            f"{authority}/{tenant_id}/v2.0",
        }
        self.leeway_s = min(leeway_s, 60.0)
        self._jwks = jwt.PyJWKClient(
            self.jwks_uri,
            cache_jwk_set=True,
            lifespan=jwks_lifespan_s,
            cooldown_duration=refresh_cooldown_s,
            timeout=jwks_timeout_s,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EntraVerifier:
        if not settings.azure_tenant_id or not settings.azure_client_id:
            raise ValueError("Entra ID needs AZURE_TENANT_ID and AZURE_CLIENT_ID")
        return cls(
            tenant_id=settings.azure_tenant_id,
            client_id=settings.azure_client_id,
            app_id_uri=settings.azure_app_id_uri,
            authority_host=settings.azure_authority_host,
        )

    def accepts_issuer(self, issuer: object) -> bool:
        return isinstance(issuer, str) and issuer in self.issuers

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthenticationFailed() from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise AuthenticationFailed()
        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key, kid)
        except jwt.PyJWKClientError:
            # unknown kid, or the JWKS endpoint is unreachable: either way the token is not proven
            raise AuthenticationFailed() from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self.audiences,
                issuer=frozenset(self.issuers),
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.InvalidTokenError:
            raise AuthenticationFailed() from None
        if claims.get("tid") != self.tenant_id:
            raise AuthenticationFailed()
        return Principal(
            subject=str(claims.get("oid") or claims.get("sub") or "unknown"),
            tenant=self.tenant_id,
            roles=roles_claim(claims),
            issuer=str(claims["iss"]),
        )
