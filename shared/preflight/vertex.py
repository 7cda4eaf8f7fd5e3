"""Vertex AI: a token obtainable with the configured credentials, and one catalog model reachable."""

from __future__ import annotations

import asyncio

import google.auth
import google.auth.transport.requests

from ..catalog import Catalog
from ..providers.vertex_client import build_client
from ..providers.vertex_credentials import project_and_credentials
from .base import CheckResult, Environment, describe, failed, passed, skipped

NAME = "vertex"


class VertexCheck:
    name = NAME
    timeout_fix = (
        "check GOOGLE_CLOUD_PROJECT_ID, VERTEX_AI_LOCATION and the Workload Identity Federation setup (docs/deploy.md)"
    )

    async def run(self, env: Environment) -> CheckResult:

        s = env.settings
        if not s.google_cloud_project_id:
            return skipped(NAME, "GOOGLE_CLOUD_PROJECT_ID unset: no Vertex AI models")
        try:
            _project, creds = project_and_credentials(s)
            if creds is None:
                creds, _ = await asyncio.to_thread(
                    google.auth.default, scopes=["https://www.googleapis.com/auth/cloud-platform"]
                )

            await asyncio.to_thread(creds.refresh, google.auth.transport.requests.Request())
        except Exception as exc:
            return failed(
                NAME,
                f"no Google token: {describe(exc)}",
                "fix GOOGLE_APPLICATION_CREDENTIALS_JSON (external_account for Workload Identity Federation) and the federated credential on the Google side",
            )
        models = [m for m in Catalog.load(s.model_catalog_path) if m.provider == "vertex"]
        if not models:
            return passed(NAME, "token obtained; the catalog has no Vertex AI model")
        model = models[0]
        client = build_client(s, credentials=creds, timeout_s=env.timeout_s / 2)
        try:
            await client.aio.models.get(model=model.upstream_model)
        except Exception as exc:
            return failed(
                NAME,
                f"token obtained but model {model.upstream_model} is not reachable in {s.vertex_ai_location}: {describe(exc)}",
                "enable the Vertex AI API for the project, grant roles/aiplatform.user to the federated identity, and check the model's region",
            )
        return passed(NAME, f"token obtained; {model.upstream_model} reachable in {s.vertex_ai_location}")
