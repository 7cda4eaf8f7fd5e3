"""Google credentials for Vertex AI from the settings, without the genai SDK: a service-account or
external_account JSON (GOOGLE_APPLICATION_CREDENTIALS_JSON, in memory only), else workload
identity federation from Azure (VERTEX_WIF_*, vertex_wif.py), else Application Default
Credentials (None)."""

from __future__ import annotations

import json
from typing import Any

import google.auth
from google.auth import exceptions as auth_exceptions

from ..config import Settings, secret_value
from ..errors import ProviderNotConfigured
from .vertex_wif import SCOPES, credentials_from_settings

CREDENTIAL_SETTING = "GOOGLE_APPLICATION_CREDENTIALS_JSON"


def project_and_credentials(settings: Settings, credentials: Any = None) -> tuple[str, Any]:
    """Credentials: the given ones (tests), else GOOGLE_APPLICATION_CREDENTIALS_JSON, else workload
    identity federation from Azure (VERTEX_WIF_*, vertex_wif.py), else ADC (None)."""
    if not settings.google_cloud_project_id:
        raise ProviderNotConfigured("Vertex AI needs GOOGLE_CLOUD_PROJECT_ID.")
    if credentials is None:
        credentials = credentials_from_json(secret_value(settings.google_application_credentials_json))
    if credentials is None:
        credentials = credentials_from_settings(settings)
    return settings.google_cloud_project_id, credentials


def credentials_from_json(raw: str | None) -> Any:
    """Credentials from a service-account or external_account JSON, built in memory only."""
    if not raw:
        return None

    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} is not valid JSON.") from None
    if not isinstance(info, dict):
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} must hold a JSON object.")
    try:
        creds, _ = google.auth.load_credentials_from_dict(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
    except auth_exceptions.GoogleAuthError as exc:
        raise ProviderNotConfigured(f"{CREDENTIAL_SETTING} holds unusable credentials: {exc}") from None
    return creds
