"""Fakes of the three services between an Azure managed identity and Vertex AI, on their wire protocols.

- The managed-identity endpoint of App Service / Container Apps (what azure-identity and MSAL call
  when IDENTITY_ENDPOINT and IDENTITY_HEADER are set): `GET /msi/token?api-version=2019-08-01&
  resource=...&client_id=...` with `X-IDENTITY-HEADER`; answers `{access_token, expires_on,
  resource, token_type}`. The token is a JWT as Entra ID v1 issues it: iss
  https://sts.windows.net/<tenant>/, aud = the resource, sub/oid = the identity's object ID. An
  unknown resource gets Entra's AADSTS500011, an unknown client ID the platform's 400.
- Google STS (`POST /sts/v1/token`, RFC 8693 token exchange as google-auth sends it): the audience
  must be the provider, the subject token's issuer and audience must be those the provider trusts,
  and its subject must pass the attribute condition; errors are STS's own JSON
  (`invalid_target`, `invalid_grant`, `unauthorized_client`).
- IAM Credentials (`POST /iam/v1/projects/-/serviceAccounts/<email>:generateAccessToken`): the
  caller's federated token must be bound (roles/iam.workloadIdentityUser) to that service account,
  else PERMISSION_DENIED as Google words it. Answers `{accessToken, expireTime}`.

Every call is counted (`calls`), tokens are never echoed in errors.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import ServerThread

TENANT = "11111111-2222-3333-4444-555555555555"
PROJECT_NUMBER = "123456789012"
POOL = "azure-llm-router"
PROVIDER = "entra-id"
PROVIDER_NAME = f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{POOL}/providers/{PROVIDER}"
PRINCIPAL_ID = "9f0e8d7c-6b5a-4321-9876-0fedcba98765"  # the managed identity's object ID
CLIENT_ID = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"  # its client ID
IDENTITY_HEADER = "fake-identity-header"
SERVICE_ACCOUNT = "llm-router-vertex@my-vertex-project.iam.gserviceaccount.com"
ENTRA_AUDIENCE = "api://llm-router-gcp-wif"
VERTEX_TOKEN = "ya29.fake-impersonated-vertex-token"
_SIGNING_KEY = "fake-entra-signing-key-for-tests-only-0123456789"


@dataclass
class FakeFederation:
    """The trust configured on both sides; tests change it to break one link."""

    known_apps: set[str] = field(default_factory=lambda: {ENTRA_AUDIENCE, "api://some-other-app"})
    allowed_audiences: set[str] = field(default_factory=lambda: {ENTRA_AUDIENCE})
    provider_name: str = PROVIDER_NAME
    allowed_subject: str = PRINCIPAL_ID
    bindings: dict[str, set[str]] = field(default_factory=lambda: {SERVICE_ACCOUNT: {PRINCIPAL_ID}})
    entra_lifetime_s: int = 3600
    sts_lifetime_s: int = 3600
    google_lifetime_s: int | None = None  # None: the lifetime the caller asked for
    calls: Counter[str] = field(default_factory=Counter)
    _sts_tokens: dict[str, str] = field(default_factory=dict)  # STS token -> federated subject

    def reset(self) -> None:
        fresh = FakeFederation()
        for name in ("known_apps", "allowed_audiences", "provider_name", "allowed_subject", "bindings"):
            setattr(self, name, getattr(fresh, name))
        self.entra_lifetime_s = self.sts_lifetime_s = 3600
        self.google_lifetime_s = None
        self.calls.clear()
        self._sts_tokens.clear()

    # --- managed identity ------------------------------------------------------------------
    async def msi(self, request: Request) -> JSONResponse:
        self.calls["msi"] += 1
        q = request.query_params
        if request.headers.get("x-identity-header") != IDENTITY_HEADER or q.get("api-version") != "2019-08-01":
            return JSONResponse({"statusCode": 400, "message": "Invalid request (fake)"}, status_code=400)
        if q.get("client_id") not in (None, CLIENT_ID):
            return JSONResponse(
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated Managed Identity found for specified "
                    "ClientId/ResourceId/PrincipalId.",
                },
                status_code=400,
            )
        resource = q.get("resource", "")
        if resource not in self.known_apps:
            return JSONResponse(
                {
                    "statusCode": 400,
                    "message": f"AADSTS500011: The resource principal named {resource} was not found in the "
                    f"tenant named {TENANT}. This can happen if the application has not been installed by the "
                    "administrator of the tenant or consented to by any user in the tenant.",
                },
                status_code=400,
            )
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": f"https://sts.windows.net/{TENANT}/",
                "aud": resource,
                "sub": PRINCIPAL_ID,
                "oid": PRINCIPAL_ID,
                "appid": CLIENT_ID,
                "tid": TENANT,
                "iat": now,
                "nbf": now,
                "exp": now + self.entra_lifetime_s,
            },
            _SIGNING_KEY,
            algorithm="HS256",
        )
        return JSONResponse(
            {
                "access_token": token,
                "expires_on": str(now + self.entra_lifetime_s),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": CLIENT_ID,
            }
        )

    # --- Google STS ---------------------------------------------------------------------------
    async def sts(self, request: Request) -> JSONResponse:
        self.calls["sts"] += 1
        # urlencoded by hand: Starlette's request.form() needs python-multipart
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}

        def error(code: str, description: str) -> JSONResponse:
            return JSONResponse({"error": code, "error_description": description}, status_code=400)

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
            return error("unsupported_grant_type", "Unsupported grant type.")
        if form.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
            return error("invalid_request", "Invalid requested_token_type.")
        if form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
            return error("invalid_request", "Invalid subject_token_type.")
        if form.get("audience") != f"//iam.googleapis.com/{self.provider_name}":
            return error(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This might either be '
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        try:
            claims = jwt.decode(
                str(form.get("subject_token", "")),
                _SIGNING_KEY,
                algorithms=["HS256"],
                options={"verify_aud": False},
            )
        except jwt.PyJWTError:
            return error("invalid_grant", "Invalid JWT.")
        if claims.get("iss") != f"https://sts.windows.net/{TENANT}/":
            return error("invalid_grant", "The issuer in ID Token does not match the expected issuer.")
        if claims.get("aud") not in self.allowed_audiences:
            return error(
                "invalid_grant", f"The audience in ID Token [{claims.get('aud')}] does not match the expected audience."
            )
        if claims.get("sub") != self.allowed_subject:
            return error("unauthorized_client", "The given credential is rejected by the attribute condition.")
        token = f"sts.{len(self._sts_tokens) + 1}.{int(time.time())}"
        self._sts_tokens[token] = str(claims["sub"])
        return JSONResponse(
            {
                "access_token": token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": self.sts_lifetime_s,
            }
        )

    # --- IAM Credentials ------------------------------------------------------------------------
    async def generate_access_token(self, request: Request) -> JSONResponse:
        self.calls["iam"] += 1
        target = request.path_params["target"]
        email, _, method = target.partition(":")

        def denied() -> JSONResponse:
            return JSONResponse(
                {
                    "error": {
                        "code": 403,
                        "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                        "(or it may not exist).",
                        "status": "PERMISSION_DENIED",
                    }
                },
                status_code=403,
            )

        if method != "generateAccessToken":
            return JSONResponse({"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, 404)
        auth = request.headers.get("authorization", "")
        subject = self._sts_tokens.get(auth.removeprefix("Bearer "))
        if subject is None:
            return JSONResponse(
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
                status_code=401,
            )
        if subject not in self.bindings.get(email, set()):
            return denied()
        body: dict[str, Any] = await request.json()
        if "https://www.googleapis.com/auth/cloud-platform" not in body.get("scope", []):
            return JSONResponse({"error": {"code": 400, "message": "scope", "status": "INVALID_ARGUMENT"}}, 400)
        lifetime = self.google_lifetime_s or int(str(body.get("lifetime", "3600s")).rstrip("s"))
        expire = datetime.now(UTC) + timedelta(seconds=lifetime)
        return JSONResponse({"accessToken": VERTEX_TOKEN, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/msi/token", self.msi, methods=["GET"]),
                Route("/sts/v1/token", self.sts, methods=["POST"]),
                Route("/iam/v1/projects/-/serviceAccounts/{target}", self.generate_access_token, methods=["POST"]),
            ]
        )


def serve(federation: FakeFederation | None = None) -> Any:
    """For a pytest fixture: yields (federation, base URL)."""
    federation = federation or FakeFederation()
    with ServerThread(federation.app()) as server:
        yield federation, server.url
