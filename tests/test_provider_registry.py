"""Which credentials reach which upstream: Vertex's OpenAI-compatible endpoint (partner and open
models) authenticates with the same Google credentials as the Vertex provider."""

from __future__ import annotations

import google.oauth2.credentials
import pytest

from shared.catalog import ModelSpec
from shared.config import Settings
from shared.providers.base import Timeouts
from shared.providers.registry import ProviderRegistry
from shared.schemas import ChatCompletionRequest
from tests.fakes.openai_upstream import FakeOpenAI


async def test_maas_models_use_the_vertex_credentials(fake_openai: FakeOpenAI, upstream_url: str) -> None:
    llama = ModelSpec(
        id="llama",
        provider="openai",
        upstream_model="meta/llama-3.3-70b-instruct-maas",
        base_url=upstream_url,
        auth="google",
        tier="economy",
        context_window=128_000,
        max_output_tokens=8192,
        input_usd_per_mtok=0.72,
        output_usd_per_mtok=0.72,
    )
    settings = Settings(google_cloud_project_id="test-project")
    creds = google.oauth2.credentials.Credentials(token="vertex-token")
    registry = ProviderRegistry(settings, vertex_credentials=creds)
    provider = registry.for_model(llama)
    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]})
    out = await provider.complete(req, llama, Timeouts(connect_s=2, read_s=5, stream_idle_s=5))
    await registry.aclose()
    assert out["choices"][0]["message"]["content"]
    assert fake_openai.headers[-1]["authorization"] == "Bearer vertex-token"
    assert fake_openai.requests[-1]["model"] == "meta/llama-3.3-70b-instruct-maas"


async def test_api_key_models_read_their_named_variable(
    fake_openai: FakeOpenAI, upstream_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-local")
    spec = ModelSpec(
        id="m",
        provider="openai",
        upstream_model="small-upstream",
        base_url=upstream_url,
        api_key_env="LOCAL_LLM_KEY",
        tier="economy",
        context_window=8000,
        max_output_tokens=1000,
        input_usd_per_mtok=0.1,
        output_usd_per_mtok=0.1,
    )
    registry = ProviderRegistry(Settings())
    req = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]})
    await registry.for_model(spec).complete(req, spec, Timeouts(connect_s=2, read_s=5, stream_idle_s=5))
    await registry.aclose()
    assert fake_openai.headers[-1]["authorization"] == "Bearer sk-local"
