"""function_app.app on the local host, served by uvicorn on a loopback port in a thread, with a
test context assembled in the server's own loop (for tests that need a real socket: fuzzing over
HTTP, a client that goes away mid-stream)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.routing import Mount

import function_app
from devtools.localhost import build_app
from shared.composition.assemble import Parts, assemble
from shared.composition.process import set_services
from shared.composition.services import Services
from shared.config import Settings
from shared.queue.local import LocalBus
from tests.fakes.server import ServerThread


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
