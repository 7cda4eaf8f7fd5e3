"""The one Services of this process, built on first use (the Functions worker has no startup
hook) and shared by every invocation. Only entry points call get_services()."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from ..config import get_settings
from .backends import build_services
from .services import Services

log = logging.getLogger(__name__)

_services: Services | None = None
_lock: asyncio.Lock | None = None
_warming: list[asyncio.Task[None]] = []


async def get_services() -> Services:
    global _services, _lock
    if _services is not None:
        return _services
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _services is None:
            _services = await build_services(get_settings())
            freeze_startup_heap()
    return _services


def freeze_startup_heap() -> None:
    """The examples, catalog and modules built at start live as long as the process; moving them
    out of the collector's generations spares every later full collection from walking them (the
    cyclic GC showed up as ~15% of CPU under load before this). Every entry point that builds the
    services calls it once they are built."""
    gc.collect()
    gc.freeze()


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


def warm_on_worker_start() -> None:
    """Under Microsoft's Python worker (init indexing), function_app.py is imported inside the
    WorkerInitRequest handler, on the worker's running loop: start building the services there, so
    the first invocation does not pay for it (5-9 s measured, bench/worker_startup.py). The local
    host and tests build their own; a failure here is retried by the first invocation."""
    if "azure_functions_worker" not in sys.modules:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _warming.append(loop.create_task(_warm()))


async def _warm() -> None:
    try:
        await get_services()
    except Exception:
        log.exception("building the services at worker start failed; the first invocation retries")
