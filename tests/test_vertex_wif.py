"""Vertex AI from Azure without a key: the whole workload-identity chain with the real libraries.

azure-identity's ManagedIdentityCredential (IDENTITY_ENDPOINT/IDENTITY_HEADER, as in Container
Apps) -> google-auth identity-pool credentials with our subject-token supplier -> Google STS ->
IAM Credentials generateAccessToken -> google-genai -> the fake Vertex AI, which answers only to
the impersonated token. Nothing of ours is mocked: the fakes in tests/fakes/workload_identity.py
speak the services' wire protocols.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from shared.config import Settings
from shared.errors import ProviderNotConfigured, UpstreamUnavailable
from shared.providers import vertex_wif
from shared.providers.vertex import VertexProvider
from shared.schemas import ChatCompletionRequest
from tests.fakes import workload_identity as wi
from tests.fakes.vertex import FakeVertex
from tests.fakes.vertex import serve as serve_vertex
from tests.test_vertex_provider import SPEC, TIMEOUTS


@pytest.fixture(scope="module")
def federation() -> Iterator[tuple[wi.FakeFederation, str]]:
    yield from wi.serve()


@pytest.fixture(scope="module")
def vertex() -> Iterator[FakeVertex]:
    yield from serve_vertex(FakeVertex(require_token=wi.VERTEX_TOKEN))


@pytest.fixture(autouse=True)
def _managed_identity_env(
    federation: tuple[wi.FakeFederation, str], vertex: FakeVertex, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed, url = federation
    fed.reset()
    vertex.reset()
    # what Container Apps sets in every container with a managed identity
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", wi.IDENTITY_HEADER)
    monkeypatch.delenv("MSI_ENDPOINT", raising=False)
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)


def wif_settings(federation: tuple[wi.FakeFederation, str], vertex: FakeVertex, **overrides: Any) -> Settings:
    _, url = federation
    values: dict[str, Any] = {
        "google_cloud_project_id": "my-vertex-project",
        "vertex_ai_location": "us-east1",
        "vertex_ai_base_url": vertex.url,
        "google_application_credentials_json": None,
        "azure_client_id": wi.CLIENT_ID,
        "vertex_wif_provider": wi.PROVIDER_NAME,
        "vertex_wif_service_account": wi.SERVICE_ACCOUNT,
        "vertex_wif_entra_audience": wi.ENTRA_AUDIENCE,
        "vertex_wif_sts_url": f"{url}/sts/v1/token",
        "vertex_wif_iam_url": f"{url}/iam/v1",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def provider_for(federation: tuple[wi.FakeFederation, str], vertex: FakeVertex) -> AsyncIterator[Any]:
    made: list[VertexProvider] = []

    def make(**overrides: Any) -> VertexProvider:
        # no credentials passed: the provider builds them from the settings, as in Azure
        p = VertexProvider.from_settings(wif_settings(federation, vertex, **overrides))
        made.append(p)
        return p

    yield make
    for p in made:
        await p.aclose()


def ask(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": text}]})


@pytest.mark.asyncio
async def test_a_vertex_answer_through_managed_identity_sts_and_impersonation(
    provider_for: Any, federation: tuple[wi.FakeFederation, str], vertex: FakeVertex
) -> None:
    fed, _ = federation
    p = provider_for()
    assert isinstance(p._client._api_client._credentials, vertex_wif.AzureFederatedCredentials)

    out = await p.complete(ask("Say hello from Azure"), SPEC, TIMEOUTS)

    assert out["choices"][0]["message"]["content"] == "Echo: Say hello from Azure"
    assert vertex.last.headers["authorization"] == f"Bearer {wi.VERTEX_TOKEN}"
    assert vertex.last.location == "us-east1"
    assert dict(fed.calls) == {"msi": 1, "sts": 1, "iam": 1}


@pytest.mark.asyncio
async def test_tokens_are_reused_while_valid_and_refreshed_before_expiry(
    provider_for: Any, federation: tuple[wi.FakeFederation, str], vertex: FakeVertex
) -> None:
    fed, _ = federation
    p = provider_for()
    await p.complete(ask("one"), SPEC, TIMEOUTS)
    await p.complete(ask("two"), SPEC, TIMEOUTS)
    assert fed.calls["iam"] == 1, "a valid Google token is reused"

    # a Google token that expires within google-auth's refresh margin (minutes) is renewed before
    # the next call; the Entra ID token, valid for an hour, is not fetched again
    fed.calls.clear()
    fed.google_lifetime_s = 120
    q = provider_for(vertex_wif_entra_audience=wi.ENTRA_AUDIENCE + "/")  # its own credential chain
    await q.complete(ask("three"), SPEC, TIMEOUTS)
    await q.complete(ask("four"), SPEC, TIMEOUTS)
    assert fed.calls["iam"] == 2
    assert fed.calls["msi"] == 1
    assert [r.headers["authorization"] for r in vertex.requests[-2:]] == [f"Bearer {wi.VERTEX_TOKEN}"] * 2


async def failure(provider_for: Any, vertex: FakeVertex, **overrides: Any) -> str:
    p = provider_for(**overrides)
    with pytest.raises(UpstreamUnavailable) as info:
        await p.complete(ask("hi"), SPEC, TIMEOUTS)
    assert vertex.requests == [], "nothing may reach Vertex AI without a token"
    message = info.value.message
    assert wi.VERTEX_TOKEN not in message and "eyJ" not in message, "a token leaked into the message"
    return message


@pytest.mark.asyncio
async def test_an_audience_the_provider_does_not_allow_is_explained(provider_for: Any, vertex: FakeVertex) -> None:
    message = await failure(provider_for, vertex, vertex_wif_entra_audience="api://some-other-app")
    assert "Google STS refused the Entra ID token" in message
    assert "VERTEX_WIF_ENTRA_AUDIENCE='api://some-other-app'" in message
    assert "invalid_grant: The audience in ID Token [api://some-other-app] does not match" in message
    assert "allowed audiences" in message and "docs/deploy.md" in message


@pytest.mark.asyncio
async def test_an_audience_unknown_to_entra_is_explained(provider_for: Any, vertex: FakeVertex) -> None:
    message = await failure(provider_for, vertex, vertex_wif_entra_audience="api://llm-router-gcp-wf")
    assert f"managed identity {wi.CLIENT_ID} could not get an Entra ID token" in message
    assert "AADSTS500011" in message
    assert "application ID URI" in message


@pytest.mark.asyncio
async def test_a_wrong_service_account_is_explained(
    provider_for: Any, vertex: FakeVertex, federation: tuple[wi.FakeFederation, str]
) -> None:
    wrong = "llm-router@my-vertex-project.iam.gserviceaccount.com"
    message = await failure(provider_for, vertex, vertex_wif_service_account=wrong)
    assert f"impersonating VERTEX_WIF_SERVICE_ACCOUNT='{wrong}' failed" in message
    assert "PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied" in message
    assert "roles/iam.workloadIdentityUser" in message
    assert f"principal://iam.googleapis.com/projects/{wi.PROJECT_NUMBER}/locations/global/" in message
    assert federation[0].calls["sts"] == 1, "STS accepted the token; the failure is the binding"


@pytest.mark.asyncio
async def test_a_missing_provider_is_explained(provider_for: Any, vertex: FakeVertex) -> None:
    missing = wi.PROVIDER_NAME.replace("entra-id", "entra")
    message = await failure(provider_for, vertex, vertex_wif_provider=missing)
    assert "invalid_target" in message and repr(missing) in message


def test_preflight_check_runs_the_chain(federation: tuple[wi.FakeFederation, str], vertex: FakeVertex) -> None:
    assert vertex_wif.check(wif_settings(federation, vertex)) == []
    problems = vertex_wif.check(wif_settings(federation, vertex, vertex_wif_entra_audience="api://some-other-app"))
    assert len(problems) == 1 and "does not match the expected audience" in problems[0]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"vertex_wif_provider": "projects/my-project/pools/x"},
            "VERTEX_WIF_PROVIDER must be projects/<project number>",
        ),
        ({"vertex_wif_service_account": "llm-router-vertex"}, "VERTEX_WIF_SERVICE_ACCOUNT must be a service account"),
        ({"vertex_wif_entra_audience": ""}, "VERTEX_WIF_ENTRA_AUDIENCE is empty"),
    ],
)
def test_malformed_settings_are_refused_before_any_call(
    federation: tuple[wi.FakeFederation, str], vertex: FakeVertex, overrides: dict[str, str], expected: str
) -> None:
    settings = wif_settings(federation, vertex, **overrides)
    assert any(expected in p for p in vertex_wif.settings_problems(settings))
    with pytest.raises(ProviderNotConfigured) as info:
        VertexProvider.from_settings(settings)
    assert expected in info.value.message
    assert sum(federation[0].calls.values()) == 0


def test_a_json_key_still_wins_and_the_overlap_is_a_problem(
    federation: tuple[wi.FakeFederation, str], vertex: FakeVertex
) -> None:
    import json

    from google.oauth2 import service_account

    from tests.fakes.vertex import service_account_info

    settings = wif_settings(federation, vertex, google_application_credentials_json=json.dumps(service_account_info()))
    p = VertexProvider.from_settings(settings)
    assert isinstance(p._client._api_client._credentials, service_account.Credentials)
    p._client.close()
    assert any(
        "both GOOGLE_APPLICATION_CREDENTIALS_JSON and VERTEX_WIF_*" in m for m in vertex_wif.settings_problems(settings)
    )
    assert vertex_wif.config_from_settings(Settings(google_application_credentials_json=None)) is None
