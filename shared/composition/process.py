"""The one Services of this process, built on first use (the Functions worker has no startup
hook) and shared by every invocation. Only entry points call get_services()."""

from __future__ import annotations

import asyncio
import gc

from ..config import get_settings
from .backends import build_services
from .services import Services

_services: Services | None = None
_lock: asyncio.Lock | None = None


async def get_services() -> Services:
    global _services, _lock
    if _services is not None:
        return _services
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _services is None:
            _services = await build_services(get_settings())
            # The examples, catalog and modules built at start live as long as the process; moving
            # them out of the collector's generations spares every later full collection from
            # walking them (the cyclic GC showed up as ~15% of CPU under load before this).
            gc.collect()
            gc.freeze()
    return _services


def set_services(services: Services | None) -> None:
    """Install a process's services (the local host, tests)."""
    global _services
    _services = services


async def close_services() -> None:
    global _services
    if _services is not None:
        services, _services = _services, None
        await services.close()


def services_installed() -> bool:
    return _services is not None
