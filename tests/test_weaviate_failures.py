"""Weaviate down, slow or erroring: the router still answers on each model's prior and the
policy, says "index unavailable" in the decision, and readiness reports degraded. Also the
schema: created once, idempotent, and an incompatible collection is described exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from weaviate.classes.config import Configure, DataType, Property, VectorDistances

from shared.composition.assemble import Parts
from shared.composition.backends import wire_index
from shared.config import Settings
from shared.encoders.hashing import HashingEncoder
from shared.examples.labelled import LabelledExample
from shared.examples.transfer import import_csv
from shared.index.base import IndexUnavailable
from shared.index.weaviate import WeaviateIndex
from shared.index.weaviate_schema import PROPERTIES, SchemaMismatch
from tests.fakes.server import free_port
from tests.fakes.weaviate import FakeWeaviate

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Prove that the square root of 2 is irrational."}]}
RENAME = {"gpt-4-1106-preview": "big", "mistralai/Mixtral-8x7B-Instruct-v0.1": "small"}


def starter_csv(tmp_path: Path) -> Path:
    path = tmp_path / "starter.csv"
    rows = ["prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1"]
    for i in range(60):
        rows.append(f'"Prove statement {i} about irrational numbers and square roots",True,{i % 3 == 0}')
        rows.append(f'"Say hello number {i}",True,True')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


async def wired_context(make_context: Callable[..., Any], settings: Settings) -> Any:
    """Run the production wire_index, then build the context from what it wired."""
    parts = Parts()
    await wire_index(settings, parts, None)
    return await make_context(settings=settings, parts=parts)


async def route(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/api/v1/route", json=CHAT)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def wv_settings(weaviate_settings: Settings, tmp_path: Path) -> Settings:
    return weaviate_settings.model_copy(
        update={"examples_path": starter_csv(tmp_path), "weaviate_timeout_s": 0.5, "weaviate_seed_examples": True}
    )


async def test_healthy_weaviate_gives_evidence(
    fake_weaviate: FakeWeaviate, wv_settings: Settings, make_context: Callable[..., Any], client: httpx.AsyncClient
) -> None:
    ctx = await wired_context(make_context, wv_settings)
    assert isinstance(ctx.index, WeaviateIndex)
    # wire_index created the collection and seeded it with the starter examples
    assert fake_weaviate.count(wv_settings.weaviate_collection) == 120
    body = await route(client)
    assert body["index"] == "ok"
    assert len(body["neighbours"]) > 0
    ready = (await client.get("/health/ready")).json()
    assert ready["status"] == "ok", ready
    await ctx.index.close()


@pytest.mark.parametrize("mode", ["down", "slow", "error"])
async def test_router_answers_on_priors_when_weaviate_fails(
    mode: str,
    fake_weaviate: FakeWeaviate,
    wv_settings: Settings,
    make_context: Callable[..., Any],
    client: httpx.AsyncClient,
) -> None:
    ctx = await wired_context(make_context, wv_settings)
    assert (await route(client))["index"] == "ok"

    fake_weaviate.mode = mode
    fake_weaviate.slow_s = 3.0
    body = await route(client)
    assert body["index"] == "index unavailable"
    assert body["reason"] == "index unavailable"
    assert body["neighbours"] == []
    assert body["model"] in {"big", "small"}
    ready = (await client.get("/health/ready")).json()
    assert ready["status"] == "degraded"
    # both doors of the fake fail in these modes, and readiness says which (no hosts)
    assert [p for p in ready["problems"] if p.startswith("index: degraded")], ready["problems"]
    assert "127.0.0.1" not in str(ready)

    # and it comes back by itself
    fake_weaviate.mode = "ok"
    assert (await route(client))["index"] == "ok"
    assert (await client.get("/health/ready")).json()["status"] == "ok"
    await ctx.index.close()


async def test_weaviate_down_at_start_still_starts(
    wv_settings: Settings, make_context: Callable[..., Any], client: httpx.AsyncClient
) -> None:
    nowhere = wv_settings.model_copy(
        update={"weaviate_url": f"http://127.0.0.1:{free_port()}", "weaviate_grpc_port": free_port()}
    )
    ctx = await wired_context(make_context, nowhere)
    assert isinstance(ctx.index, WeaviateIndex)
    body = await route(client)
    assert body["index"] == "index unavailable"
    ready = (await client.get("/health/ready")).json()
    assert ready["status"] == "degraded"
    health = (await client.get("/api/v1/health")).json()
    assert health["dependencies"]["index"]["status"] == "degraded"
    assert "routing on priors" in health["dependencies"]["index"]["detail"]
    with pytest.raises(IndexUnavailable):
        await ctx.index.count()
    await ctx.index.close()


async def test_examples_api_says_503_when_weaviate_errors(
    fake_weaviate: FakeWeaviate, wv_settings: Settings, make_context: Callable[..., Any], client: httpx.AsyncClient
) -> None:
    await wired_context(make_context, wv_settings)
    fake_weaviate.mode = "error"
    r = await client.get("/api/v1/examples")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "index_unavailable"


async def test_schema_is_created_once_and_reused(make_weaviate_index: Callable[..., Any]) -> None:
    first: WeaviateIndex = make_weaviate_index(8)
    assert await first.ensure_schema() == "created"
    assert await first.ensure_schema() == "exists"
    second: WeaviateIndex = make_weaviate_index(8)
    assert await second.ensure_schema() == "exists"
    config = await first.client.collections.use(first.collection_name).config.get()
    assert [(p.name, p.data_type) for p in config.properties] == [(p.name, p.data_type) for p in PROPERTIES]
    assert len(config.properties) == 15
    vc = config.vector_config["default"]
    assert vc.vector_index_config.distance_metric == VectorDistances.COSINE


async def test_created_at_survives_reimport(make_weaviate_index: Callable[..., Any]) -> None:
    index: WeaviateIndex = make_weaviate_index(8)
    ex = LabelledExample(content="hello", outcomes={"big": 1.0})
    vec = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    await index.upsert([ex], vec)
    coll = index.client.collections.use(index.collection_name)
    before = (await coll.query.fetch_object_by_id(ex.id)).properties
    await index.upsert([ex], vec)
    after = (await coll.query.fetch_object_by_id(ex.id)).properties
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] >= before["updated_at"]
    assert after["token_count"] == 2
    assert after["best_model"] == "big"


async def test_incompatible_collection_is_described_exactly(make_weaviate_index: Callable[..., Any]) -> None:
    index: WeaviateIndex = make_weaviate_index(8)
    await index.client.connect()
    props = [Property(name=p.name, data_type=p.data_type) for p in PROPERTIES if p.name not in ("weight", "tenant")]
    props.append(Property(name="weight", data_type=DataType.TEXT))
    props.append(Property(name="extra_field", data_type=DataType.INT))
    await index.client.collections.create(
        index.collection_name,
        properties=props,
        vector_config=Configure.Vectors.self_provided(
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.DOT)
        ),
    )
    with pytest.raises(SchemaMismatch) as err:
        await index.ensure_schema()
    message = str(err.value)
    assert "property tenant (text) is missing" in message
    assert "property weight is text, expected number" in message
    assert "unexpected properties: extra_field" in message
    assert "distance is dot, expected cosine" in message
    assert "indexNullState is false" in message
    # the router treats it like an unavailable index: never a crash
    health = await index.health()
    assert health.ok is False and "incompatible" in health.detail


async def test_other_encoder_vectors_are_refused(make_weaviate_index: Callable[..., Any]) -> None:
    a: WeaviateIndex = make_weaviate_index(8, "hashing-w2-d8-v1")
    await a.ensure_schema()
    b: WeaviateIndex = make_weaviate_index(8, "vertex-text-embedding-005")
    with pytest.raises(SchemaMismatch, match="encoder hashing-w2-d8-v1, this router uses vertex-text-embedding-005"):
        await b.ensure_schema()


async def test_api_key_is_sent(fake_weaviate: FakeWeaviate, weaviate_settings: Settings, tmp_path: Path) -> None:
    from pydantic import SecretStr

    fake_weaviate.api_key = "s3cret-key"
    wrong = WeaviateIndex.from_settings(weaviate_settings, dim=8, encoder_name="t")
    with pytest.raises(IndexUnavailable):
        await wrong.count()
    await wrong.close()
    right_settings = weaviate_settings.model_copy(update={"weaviate_api_key": SecretStr("s3cret-key")})
    right = WeaviateIndex.from_settings(right_settings, dim=8, encoder_name="t")
    assert await right.count() == 0
    enc = HashingEncoder(dim=8)
    path = starter_csv(tmp_path)
    assert await import_csv(right, enc, path, rename=RENAME, progress=False) == 120
    await right.client.collections.delete(right.collection_name)
    await right.close()
