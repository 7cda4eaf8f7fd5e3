"""function_app.app on the local host, served by uvicorn on a loopback port in a thread, with a
test context assembled in the server's own loop (for tests that need a real socket: fuzzing over
HTTP, a client that goes away mid-stream)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

import function_app
from devtools.localhost import build_app
from shared.auth.authenticator import BearerAuthenticator
from shared.auth.service_tokens import ServiceTokens
from shared.catalog import Catalog
from shared.composition.assemble import Parts, assemble
from shared.composition.process import set_services
from shared.composition.services import Services
from shared.config import Settings
from shared.queue.local import LocalBus
from tests.conftest import local_models
from tests.fakes.server import ServerThread


def host_settings(data_dir: Path, jwt_secret: str, **overrides: Any) -> Settings:
    """A test host's settings: auth on (service tokens), no database, embedded data in data_dir."""
    return Settings(
        environment="test",
        auth_enabled=True,
        jwt_secret=SecretStr(jwt_secret),
        database_enabled=False,
        embedded_data_dir=data_dir,
        **overrides,
    )


def host_parts(upstream_url: str, starter_index: Any, service_tokens: ServiceTokens, **overrides: Any) -> Parts:
    """The parts a test host runs on: the local catalog against the fake upstream, the session's
    starter index, service-token auth."""
    encoder, index, priors = starter_index
    parts: dict[str, Any] = {
        "catalog": Catalog(local_models(upstream_url + "/v1"), {}),
        "encoder": encoder,
        "index": index,
        "priors": priors,
        "authenticator": BearerAuthenticator(service_tokens),
    }
    return Parts(**{**parts, **overrides})


@dataclass
class ServedHost:
    url: str
    services: list[Services] = field(default_factory=list)  # the context, once the lifespan built it


@contextlib.contextmanager
def served_host(settings: Settings, parts: Parts) -> Iterator[ServedHost]:
    inner = build_app(function_app.app, bus=LocalBus(), timers=False)
    served = ServedHost("")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        ctx = await assemble(settings, parts)
        set_services(ctx)
        served.services.append(ctx)
        try:
            yield
        finally:
            set_services(None)
            await ctx.close(close_index=False)  # the session index is shared: do not close it

    app = Starlette(routes=[Mount("/", app=inner)], lifespan=lifespan)
    with ServerThread(app) as server:
        served.url = server.url
        yield served
