"""JWT / Entra ID: the settings the app refuses to start without, and their consistency."""

from __future__ import annotations

from ..auth.authenticator import InsecureConfiguration, check_auth_settings
from .base import CheckResult, Environment, failed, passed, skipped

NAME = "auth"


class AuthCheck:
    name = NAME
    timeout_fix = "check the auth settings"

    async def run(self, env: Environment) -> CheckResult:

        s = env.settings
        try:
            check_auth_settings(s)
        except InsecureConfiguration as exc:
            return failed(
                NAME,
                str(exc),
                "set JWT_SECRET (32+ bytes, Key Vault llm-router-jwt-secret) and/or AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_APP_ID_URI",
            )
        if not s.auth_enabled:
            return skipped(NAME, f"AUTH_ENABLED=false (ENVIRONMENT={s.environment})")
        entra = [s.azure_tenant_id, s.azure_client_id, s.azure_app_id_uri]
        if any(entra) and not all(entra):
            missing = [
                n
                for n, v in zip(("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_APP_ID_URI"), entra, strict=True)
                if not v
            ]
            return failed(
                NAME,
                f"Entra ID half configured: {', '.join(missing)} unset",
                "set all three of AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_APP_ID_URI (the API's application ID URI is the token audience)",
            )
        if s.jwt_issuer == s.jwt_audience == "" or not s.jwt_issuer or not s.jwt_audience:
            return failed(NAME, "JWT_ISSUER or JWT_AUDIENCE is empty", "set both (default llm-router)")
        modes = [m for m, on in (("HS256 service tokens", s.jwt_secret is not None), ("Entra ID", all(entra))) if on]
        return passed(NAME, "bearer tokens: " + (" and ".join(modes) or "a development secret under EMBEDDED_DATA_DIR"))
