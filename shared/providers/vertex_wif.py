"""Vertex AI from Azure without a key: workload identity federation, the Azure token supplied by the app.

The chain, every hop with the real libraries:
1. azure-identity's ManagedIdentityCredential (the app's user-assigned identity, AZURE_CLIENT_ID)
   gets an Entra ID token for VERTEX_WIF_ENTRA_AUDIENCE (an application ID URI such as
   `api://llm-router-gcp-wif`). In Container Apps and App Service the identity endpoint is
   IDENTITY_ENDPOINT/IDENTITY_HEADER, not the VM metadata address that a `gcloud ... --azure`
   credential file points at; that is why the app supplies the token itself.
2. google-auth's identity-pool credentials exchange it at Google STS for a federated token of the
   pool's provider (VERTEX_WIF_PROVIDER: `projects/<number>/locations/global/
   workloadIdentityPools/<pool>/providers/<provider>`),
3. and impersonate VERTEX_WIF_SERVICE_ACCOUNT through IAM Credentials `generateAccessToken`.

Refresh: google-auth refreshes the Google token when it is within a few minutes of expiry (the
SDK asks `credentials.expired` before each call); azure-identity caches the Entra token and fetches
a new one before it expires, so the supplier can be asked as often as google-auth likes. A refresh
that fails raises WorkloadIdentityError whose message names the hop, the setting to check and the
gcloud binding to fix; the tokens themselves are never logged or put in a message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential
from google.auth import exceptions as auth_exceptions
from google.auth import identity_pool

from ..config import Settings
from ..errors import ProviderNotConfigured

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type name, not a secret
STS_URL = "https://sts.googleapis.com/v1/token"
IAM_CREDENTIALS_URL = "https://iamcredentials.googleapis.com/v1"
PROVIDER_NAME = re.compile(
    r"^projects/(\d+)/locations/global/workloadIdentityPools/([a-z0-9-]+)/providers/([a-z0-9-]+)$"
)
SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")
DOCS = "docs/deploy.md, step 5"


class WorkloadIdentityError(auth_exceptions.RefreshError):
    """A hop of the federation failed; the message says which, and what to check."""


@dataclass(frozen=True)
class WifConfig:
    provider: str
    service_account: str
    entra_audience: str
    client_id: str | None = None
    sts_url: str = STS_URL
    iam_url: str = IAM_CREDENTIALS_URL
    token_lifetime_s: int = 3600

    @property
    def sts_audience(self) -> str:
        return f"//iam.googleapis.com/{self.provider}"

    @property
    def impersonation_url(self) -> str:
        return f"{self.iam_url.rstrip('/')}/projects/-/serviceAccounts/{self.service_account}:generateAccessToken"

    @property
    def entra_scope(self) -> str:
        return f"{self.entra_audience.rstrip('/')}/.default"

    @property
    def principal_set(self) -> str:
        """The federated principal prefix the service-account binding names (subject appended)."""
        m = PROVIDER_NAME.match(self.provider)
        pool = f"projects/{m.group(1)}/locations/global/workloadIdentityPools/{m.group(2)}" if m else self.provider
        return f"principal://iam.googleapis.com/{pool}/subject/"


def config_from_settings(settings: Settings) -> WifConfig | None:
    """The federation settings, or None when they are not configured (JSON or ADC then)."""
    if not (settings.vertex_wif_provider or settings.vertex_wif_service_account or settings.vertex_wif_entra_audience):
        return None
    return WifConfig(
        provider=(settings.vertex_wif_provider or "").strip().removeprefix("//iam.googleapis.com/"),
        service_account=(settings.vertex_wif_service_account or "").strip(),
        entra_audience=(settings.vertex_wif_entra_audience or "").strip(),
        client_id=settings.azure_client_id,
        sts_url=settings.vertex_wif_sts_url,
        iam_url=settings.vertex_wif_iam_url,
        token_lifetime_s=settings.vertex_wif_token_lifetime_s,
    )


def settings_problems(settings: Settings) -> list[str]:
    """What is wrong with the federation settings, before any token is asked for."""
    cfg = config_from_settings(settings)
    if cfg is None:
        return []
    problems: list[str] = []
    if not PROVIDER_NAME.match(cfg.provider):
        problems.append(
            "VERTEX_WIF_PROVIDER must be projects/<project number>/locations/global/workloadIdentityPools/"
            f"<pool>/providers/<provider> (got {cfg.provider!r}; {DOCS})"
        )
    if not SERVICE_ACCOUNT.match(cfg.service_account):
        problems.append(
            f"VERTEX_WIF_SERVICE_ACCOUNT must be a service account e-mail (<name>@<project>.iam.gserviceaccount.com),"
            f" got {cfg.service_account!r}"
        )
    if not cfg.entra_audience:
        problems.append(f"VERTEX_WIF_ENTRA_AUDIENCE is empty: set the application ID URI the provider allows ({DOCS})")
    if settings.google_application_credentials_json is not None:
        problems.append("both GOOGLE_APPLICATION_CREDENTIALS_JSON and VERTEX_WIF_* are set: the JSON wins; remove one")
    return problems


class EntraTokenSupplier(identity_pool.SubjectTokenSupplier):
    """The subject token: an Entra ID access token of the app's managed identity for the audience."""

    def __init__(self, credential: Any, cfg: WifConfig) -> None:
        self._credential = credential
        self._cfg = cfg

    def get_subject_token(self, context: Any, request: Any) -> str:

        try:
            return str(self._credential.get_token(self._cfg.entra_scope).token)
        except ClientAuthenticationError as exc:
            who = f"managed identity {self._cfg.client_id}" if self._cfg.client_id else "the managed identity"
            raise WorkloadIdentityError(  # type: ignore[no-untyped-call]
                f"Vertex AI workload identity: {who} could not get an Entra ID token for "
                f"VERTEX_WIF_ENTRA_AUDIENCE={self._cfg.entra_audience!r}: {_first_line(exc)}. The audience must be "
                f"the application ID URI of an app registration in this tenant (az ad app show --id "
                f"'{self._cfg.entra_audience}'), and AZURE_CLIENT_ID the client ID of the app's identity ({DOCS})."
            ) from None


class AzureFederatedCredentials(identity_pool.Credentials):  # type: ignore[misc]
    """google-auth identity-pool credentials whose refresh errors say what to fix.

    google-auth builds the STS-only copy used under impersonation with `self.__class__`, so a
    failure is explained once, at the hop where it happened: STS in that copy, IAM in this one.
    """

    def refresh(self, request: Any) -> None:
        try:
            super().refresh(request)  # type: ignore[no-untyped-call]
        except WorkloadIdentityError:
            raise
        except auth_exceptions.GoogleAuthError as exc:
            raise WorkloadIdentityError(self._explain(exc)) from None  # type: ignore[no-untyped-call]

    def _explain(self, exc: BaseException) -> str:
        supplier = self._subject_token_supplier
        cfg: WifConfig | None = getattr(supplier, "_cfg", None)
        audience = cfg.entra_audience if cfg else "?"
        provider = str(self._audience).removeprefix("//iam.googleapis.com/")
        detail = _google_error(exc).rstrip(".")
        if self._service_account_impersonation_url is None:
            return (
                f"Vertex AI workload identity: Google STS refused the Entra ID token issued for "
                f"VERTEX_WIF_ENTRA_AUDIENCE={audience!r} to provider {provider!r}: {detail}. Check that "
                f"VERTEX_WIF_PROVIDER names an existing, enabled provider, that the provider's allowed audiences "
                f"contain exactly {audience!r} (gcloud iam workload-identity-pools providers describe ... "
                f"--format='value(oidc.allowedAudiences)'), that its issuer is https://sts.windows.net/<tenant id>/, "
                f"and that its attribute condition names the managed identity's object ID ({DOCS})."
            )
        sa = self.service_account_email
        principal = cfg.principal_set if cfg else "principal://iam.googleapis.com/<pool>/subject/"
        return (
            f"Vertex AI workload identity: Google STS accepted the managed identity's token, but impersonating "
            f"VERTEX_WIF_SERVICE_ACCOUNT={sa!r} failed: {detail}. Check the e-mail, and that the federated identity "
            f"may act as it: gcloud iam service-accounts add-iam-policy-binding {sa} "
            f"--role=roles/iam.workloadIdentityUser --member={principal}<managed identity object ID> ({DOCS})."
        )


def credentials_from_config(cfg: WifConfig, azure_credential: Any = None) -> AzureFederatedCredentials:
    """Identity-pool credentials for Vertex AI; azure_credential defaults to the app's managed identity."""
    if azure_credential is None:
        azure_credential = ManagedIdentityCredential(client_id=cfg.client_id)
    return AzureFederatedCredentials(  # type: ignore[no-untyped-call]
        audience=cfg.sts_audience,
        subject_token_type=SUBJECT_TOKEN_TYPE,
        token_url=cfg.sts_url,
        subject_token_supplier=EntraTokenSupplier(azure_credential, cfg),
        service_account_impersonation_url=cfg.impersonation_url,
        service_account_impersonation_options={"token_lifetime_seconds": cfg.token_lifetime_s},
        scopes=SCOPES,
    )


def credentials_from_settings(settings: Settings, azure_credential: Any = None) -> AzureFederatedCredentials | None:
    """The federated credentials when VERTEX_WIF_* is configured, else None.

    Raises ProviderNotConfigured when the settings are incomplete or malformed."""
    cfg = config_from_settings(settings)
    if cfg is None:
        return None
    problems = [p for p in settings_problems(settings) if "both" not in p]
    if problems:
        raise ProviderNotConfigured("; ".join(problems))
    return credentials_from_config(cfg, azure_credential)


def check(settings: Settings, azure_credential: Any = None) -> list[str]:
    """Preflight: run the whole chain once (Entra token, STS, impersonation); the problems found."""
    problems = settings_problems(settings)
    if problems or config_from_settings(settings) is None:
        return problems

    # google-auth's requests transport (~16 MB with requests) only for this one-off check
    from google.auth.transport.requests import Request

    creds = credentials_from_settings(settings, azure_credential)
    assert creds is not None
    try:
        creds.refresh(Request())
    except auth_exceptions.GoogleAuthError as exc:
        return [str(exc)]
    return []


def _google_error(exc: BaseException) -> str:
    """The service's own words from a google-auth error (its args hold the response body)."""
    for arg in reversed(exc.args):
        if not isinstance(arg, str | bytes):
            continue
        try:
            body = json.loads(arg)
        except ValueError:
            continue
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                return f"{err.get('status', err.get('code', 'error'))}: {err.get('message', '')}".strip()
            if isinstance(err, str):
                return f"{err}: {body.get('error_description', '')}".strip()
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


__all__ = [
    "AzureFederatedCredentials",
    "EntraTokenSupplier",
    "WifConfig",
    "WorkloadIdentityError",
    "check",
    "config_from_settings",
    "credentials_from_config",
    "credentials_from_settings",
    "settings_problems",
]
