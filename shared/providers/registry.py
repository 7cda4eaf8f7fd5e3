"""Which provider object serves which catalog model; built lazily, reused for the process."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import google.auth

from ..catalog import ModelSpec
from ..config import Settings
from ..errors import ProviderNotConfigured
from .base import Provider
from .openai_compat import OpenAICompatibleProvider
from .vertex_credentials import project_and_credentials
from .vertex_wif import SCOPES


class GoogleAccessToken:
    """OAuth access tokens for Vertex AI's OpenAI-compatible endpoint, from the same credentials
    the Vertex provider uses (given ones, GOOGLE_APPLICATION_CREDENTIALS_JSON, else Application
    Default Credentials), refreshed before expiry."""

    def __init__(self, credentials: Any = None) -> None:
        self._creds: Any = credentials
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        async with self._lock:
            if self._creds is None:
                self._creds, _ = google.auth.default(scopes=list(SCOPES))
            if not self._creds.valid:
                # google-auth's requests transport (~16 MB with requests) only once a token is needed
                from google.auth.transport.requests import Request

                await asyncio.to_thread(self._creds.refresh, Request())
            return str(self._creds.token)


class ProviderRegistry:
    def __init__(
        self,
        settings: Settings,
        *,
        vertex_credentials: Any = None,
    ) -> None:
        self.settings = settings
        # google-auth credentials for Vertex; None means GOOGLE_APPLICATION_CREDENTIALS_JSON or ADC
        self._vertex_credentials = vertex_credentials
        self._providers: dict[str, Provider] = {}
        self._google_token: GoogleAccessToken | None = None

    def for_model(self, model: ModelSpec) -> Provider:
        key = self._key(model)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._build(model)
            self._providers[key] = provider
        return provider

    def _key(self, model: ModelSpec) -> str:
        if model.provider == "vertex":
            return "vertex"
        return f"openai|{model.base_url}|{model.api_key_env}|{model.auth}"

    def _build(self, model: ModelSpec) -> Provider:
        s = self.settings
        if model.provider == "vertex":
            if not s.google_cloud_project_id:
                raise ProviderNotConfigured(
                    f"Vertex AI is not configured, so model '{model.id}' cannot be called: set "
                    "GOOGLE_CLOUD_PROJECT_ID (and VERTEX_AI_LOCATION, plus credentials through "
                    "GOOGLE_APPLICATION_CREDENTIALS_JSON or Application Default Credentials), or "
                    "point MODEL_CATALOG_PATH at a catalog of OpenAI-compatible models."
                )
            # google-genai (~30 MB) only when the catalog has a Vertex model
            from .vertex import VertexProvider

            vertex: Provider = VertexProvider.from_settings(s, credentials=self._vertex_credentials)
            return vertex
        assert model.base_url is not None
        base_url = model.base_url
        if "{project}" in base_url or "{location}" in base_url:
            if not s.google_cloud_project_id:
                raise ProviderNotConfigured(
                    f"Model '{model.id}' is served through Vertex AI's OpenAI-compatible endpoint: "
                    "set GOOGLE_CLOUD_PROJECT_ID and VERTEX_AI_LOCATION."
                )
            base_url = base_url.format(project=s.google_cloud_project_id, location=s.vertex_ai_location)
        return OpenAICompatibleProvider(base_url, token=self._token_source(model))

    def _token_source(self, model: ModelSpec) -> Any:
        if model.auth == "google":
            if self._google_token is None:
                _, credentials = project_and_credentials(self.settings, self._vertex_credentials)
                self._google_token = GoogleAccessToken(credentials)
            return self._google_token
        env = model.api_key_env

        async def from_env() -> str | None:
            # the catalog names the variable; the key itself never enters the catalog file
            return os.environ.get(env) if env else None

        return from_env

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
