"""Weaviate's two doors: REST (schema, readiness, backups) and gRPC (every search and write).

The health probe checks both with the real weaviate-client and grpc against the fake Weaviate,
which serves both; readiness says which one fails (issue #15: a REST-only probe reported healthy
while every search failed over an unreachable gRPC port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from devtools.embedded import free_port
from shared.config import Settings
from shared.index.weaviate import WeaviateIndex
from shared.index.weaviate_connection import ConnectionTarget
from tests.fakes.weaviate import FakeWeaviate
from tests.plugins.auth_tokens import asgi_client
from tests.plugins.weaviate_fake import drop_collection


@pytest.fixture
async def index_for(weaviate_settings: Settings, fake_weaviate: FakeWeaviate) -> AsyncIterator[Any]:
    made: list[WeaviateIndex] = []

    def make(**overrides: Any) -> WeaviateIndex:
        index = WeaviateIndex.from_settings(weaviate_settings.model_copy(update=overrides), dim=8, encoder_name="t")
        made.append(index)
        return index

    yield make
    for index in made:
        await drop_collection(index)


def test_grpc_settings_reach_the_connection(weaviate_settings: Settings) -> None:
    s = weaviate_settings.model_copy(
        update={
            "weaviate_url": "https://weaviate.example.org",
            "weaviate_grpc_host": "grpc.weaviate.example.org",
            "weaviate_grpc_port": 443,
            "weaviate_grpc_secure": True,
        }
    )
    t = ConnectionTarget.from_settings(s)
    assert (t.http_host, t.http_port, t.http_secure) == ("weaviate.example.org", 443, True)
    assert (t.grpc_host, t.grpc_port, t.grpc_secure) == ("grpc.weaviate.example.org", 443, True)
    # unset: gRPC on the REST host, port 50051, TLS like REST
    d = ConnectionTarget.from_settings(Settings(weaviate_url="https://weaviate.example.org"))
    assert (d.grpc_host, d.grpc_port, d.grpc_secure) == ("weaviate.example.org", 50051, True)


async def test_both_doors_open_is_healthy(index_for: Callable[..., WeaviateIndex]) -> None:
    h = await index_for().health()
    assert h.ok, h.detail
    assert "REST http://127.0.0.1:" in h.detail and "gRPC 127.0.0.1:" in h.detail
    assert "failing" not in h.detail


async def test_an_unreachable_grpc_port_is_named(index_for: Callable[..., WeaviateIndex]) -> None:
    port = free_port()
    h = await index_for(weaviate_grpc_port=port).health()
    assert not h.ok
    assert f"gRPC 127.0.0.1:{port} failing: UNAVAILABLE" in h.detail
    assert "REST http://127.0.0.1:" in h.detail and "ok;" in h.detail


async def test_an_unreachable_rest_port_is_named(
    index_for: Callable[..., WeaviateIndex], weaviate_settings: Settings
) -> None:
    port = free_port()
    h = await index_for(weaviate_url=f"http://127.0.0.1:{port}").health()
    assert not h.ok
    assert f"REST http://127.0.0.1:{port} failing" in h.detail
    assert f"gRPC 127.0.0.1:{weaviate_settings.weaviate_grpc_port} ok" in h.detail


async def test_a_wrong_api_key_fails_grpc_too(
    index_for: Callable[..., WeaviateIndex], fake_weaviate: FakeWeaviate
) -> None:
    from pydantic import SecretStr

    fake_weaviate.api_key = "right-key"
    h = await index_for(weaviate_api_key=SecretStr("wrong-key")).health()
    assert not h.ok
    assert "UNAUTHENTICATED" in h.detail
    assert "wrong-key" not in h.detail
    ok = await index_for(weaviate_api_key=SecretStr("right-key")).health()
    assert ok.ok, ok.detail


async def test_readiness_says_which_door_fails(
    index_for: Callable[..., WeaviateIndex], make_context: Callable[..., Any]
) -> None:
    await make_context(index=index_for(weaviate_grpc_port=free_port()))
    async with asgi_client() as client:
        r = await client.get("/health/ready")
    # the router still answers (on priors), so readiness is degraded, not down
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    problems = r.json()["problems"]
    assert any(p.startswith("index: ") and p.endswith("(gRPC failing)") for p in problems), problems
    assert "127.0.0.1" not in r.text, "readiness is anonymous: no hosts"
