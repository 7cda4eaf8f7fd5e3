"""pytest fixtures (plugin module, registered in tests/conftest.py): Weaviate for tests.

By default a fake Weaviate (tests/fakes/weaviate.py) runs on 127.0.0.1 for the session and the
real weaviate-client talks to it. With TEST_WEAVIATE_URL (or WEAVIATE_URL) set in the
environment, plus WEAVIATE_API_KEY and WEAVIATE_GRPC_HOST/PORT/SECURE as needed, the index tests
run against that Weaviate instead, each in its own throw-away collection; tests that script the
fake (failure modes, backup states) are skipped there. See docs/weaviate.md.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.index.weaviate import WeaviateIndex
from tests.fakes.weaviate import QUERY_MAXIMUM_RESULTS, FakeWeaviate, FakeWeaviateServer

REAL_WEAVIATE_URL = os.environ.get("TEST_WEAVIATE_URL") or os.environ.get("WEAVIATE_URL")


@pytest.fixture(scope="session")
def weaviate_server() -> Iterator[FakeWeaviateServer | None]:
    if REAL_WEAVIATE_URL:
        yield None
        return
    with FakeWeaviateServer() as server:
        yield server


@pytest.fixture
def fake_weaviate(weaviate_server: FakeWeaviateServer | None) -> Iterator[FakeWeaviate]:
    """The fake's state, reset for this test. Skips when running against a real Weaviate."""
    if weaviate_server is None:
        pytest.skip("scripts the fake Weaviate; WEAVIATE_URL points at a real one")
    weaviate_server.fake.reset()
    yield weaviate_server.fake
    # tests that do not script the fake share it: leave it serving as a default Weaviate
    weaviate_server.fake.mode = "ok"
    weaviate_server.fake.api_key = None
    weaviate_server.fake.query_maximum_results = QUERY_MAXIMUM_RESULTS


@pytest.fixture
def weaviate_settings(weaviate_server: FakeWeaviateServer | None, tmp_path: Path) -> Settings:
    """Settings pointing at the test Weaviate, with a collection of this test's own."""
    collection = f"LLMDocumentTest{uuid.uuid4().hex[:10]}"
    common = {
        "environment": "test",
        "auth_enabled": False,
        "database_enabled": False,
        "embedded_data_dir": tmp_path / "data",
        "weaviate_collection": collection,
        "encoder": "hashing",
    }
    if weaviate_server is None:
        return Settings(**common, weaviate_url=REAL_WEAVIATE_URL)  # type: ignore[arg-type]
    return Settings(
        **common,  # type: ignore[arg-type]
        weaviate_url=weaviate_server.url,
        weaviate_grpc_host="127.0.0.1",
        weaviate_grpc_port=weaviate_server.grpc_port,
        weaviate_timeout_s=2.0,
    )


async def drop_collection(index: WeaviateIndex) -> None:
    try:
        if not index.client.is_connected():
            await index.client.connect()
        await index.client.collections.delete(index.collection_name)
    except Exception:
        pass
    await index.client.close()


@pytest.fixture
async def make_weaviate_index(weaviate_settings: Settings) -> AsyncIterator[object]:
    """Factory: a WeaviateIndex on this test's collection, dropped afterwards. The schema is
    created on first use (the index does that lazily), so sync fixtures can call it too."""
    made: list[WeaviateIndex] = []

    def factory(dim: int, encoder_name: str = "test-encoder") -> WeaviateIndex:
        index = WeaviateIndex.from_settings(weaviate_settings, dim=dim, encoder_name=encoder_name)
        made.append(index)
        return index

    yield factory
    for index in made:
        await drop_collection(index)
