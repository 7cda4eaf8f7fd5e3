"""Shared fixtures: a fake OpenAI-compatible upstream on loopback, a catalog pointing at it,
the starter examples index (built once), and app contexts wired from real components."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.catalog import Catalog, ModelSpec
from shared.composition.assemble import Parts, assemble, build_encoder, build_local_index
from shared.composition.process import set_services
from shared.composition.services import Services
from shared.config import Settings
from shared.encoders.base import Encoder
from shared.index.local import LocalIndex
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ServerThread

pytest_plugins = ["tests.plugins.databases", "tests.plugins.auth_tokens", "tests.plugins.weaviate_fake"]

ROOT = Path(__file__).resolve().parent.parent
# seven MMLU subjects shipped with the tests (tests/data/mmlu/README.md), so any clone runs them
MMLU_DIR = ROOT / "tests" / "data" / "mmlu"


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[tuple[FakeOpenAI, ServerThread]]:
    fake = FakeOpenAI(hang_s=5.0)
    with ServerThread(fake.app) as server:
        yield fake, server


@pytest.fixture
def fake_openai(fake_openai_server: tuple[FakeOpenAI, ServerThread]) -> FakeOpenAI:
    fake, _ = fake_openai_server
    fake.script.clear()
    fake.responders.clear()
    fake.requests.clear()
    fake.headers.clear()
    return fake


@pytest.fixture
def upstream_url(fake_openai_server: tuple[FakeOpenAI, ServerThread]) -> str:
    return fake_openai_server[1].url + "/v1"


def local_models(base_url: str) -> list[ModelSpec]:
    common: dict[str, Any] = {
        "provider": "openai",
        "base_url": base_url,
        "context_window": 32_000,
        "max_output_tokens": 4096,
        "capabilities": frozenset({"tools", "json"}),
    }
    return [
        ModelSpec(
            id="big",
            upstream_model="big-upstream",
            tier="frontier",
            input_usd_per_mtok=2.0,
            output_usd_per_mtok=8.0,
            quality_prior=0.8,
            latency_ms_p50=900,
            **common,
        ),
        ModelSpec(
            id="small",
            upstream_model="small-upstream",
            tier="economy",
            input_usd_per_mtok=0.1,
            output_usd_per_mtok=0.4,
            quality_prior=0.68,
            latency_ms_p50=200,
            **common,
        ),
    ]


@pytest.fixture
def catalog(upstream_url: str) -> Catalog:
    return Catalog(local_models(upstream_url), {"gemini-1.5-pro": "gemini-2.5-pro", "text-bison": "gemini-2.5-flash"})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        auth_enabled=False,
        database_enabled=False,
        embedded_data_dir=tmp_path / "data",
        request_deadline_s=10.0,
        upstream_read_timeout_s=2.0,
        stream_idle_timeout_s=2.0,
    )


@pytest.fixture(scope="session")
def starter_index() -> tuple[Encoder, LocalIndex, dict[str, float]]:
    """The shipped starter examples, encoded once for the session with the default encoder.
    Read-only by convention."""
    import asyncio

    s = Settings()
    encoder = build_encoder(s)
    assert isinstance(encoder, Encoder)
    index, priors = asyncio.run(build_local_index(s, encoder))
    return encoder, index, priors


ContextFactory = Callable[..., Awaitable[Services]]


@pytest.fixture
async def make_context(
    settings: Settings, catalog: Catalog, starter_index: tuple[Encoder, LocalIndex, dict[str, float]]
) -> AsyncIterator[ContextFactory]:
    """Assemble Services from real components (the fields of composition.Parts; `cache=None`
    means no cache) and install them as the process's services."""
    made: list[tuple[Services, bool]] = []

    async def factory(**overrides: Any) -> Services:
        """`parts=` starts from Parts a production wire_* function filled."""
        encoder, index, priors = starter_index
        s = overrides.pop("settings", settings)
        parts: Parts = overrides.pop("parts", None) or Parts()
        if "cache" in overrides and overrides["cache"] is None:
            overrides.pop("cache")
            overrides["without_cache"] = True
        for name, value in overrides.items():
            setattr(parts, name, value)
        shared_index = parts.index is None
        parts.catalog = parts.catalog or catalog
        parts.encoder = parts.encoder or encoder
        if parts.index is None:
            parts.index, parts.priors = index, priors
        services = await assemble(s, parts)
        made.append((services, shared_index))
        set_services(services)
        return services

    yield factory
    set_services(None)
    for services, shared_index in made:
        # the session index is shared: do not close it
        await services.close(close_index=not shared_index)


@pytest.fixture
async def ctx(make_context: ContextFactory) -> Services:
    return await make_context()


@pytest.fixture
async def client(ctx: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking to function_app.app through the local host's ASGI app."""
    import function_app
    from devtools.localhost import build_app
    from shared.queue.local import LocalBus

    app = build_app(function_app.app, bus=LocalBus(), timers=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router.test") as c:
        yield c
