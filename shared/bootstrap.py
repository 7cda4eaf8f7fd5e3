"""Production wiring: which backend serves each concept, chosen from settings.

Each backend is picked here and nowhere else:
- request log / usage / jobs: PostgreSQL (DATABASE_URL, or the embedded server), else memory;
- cache, quotas, circuit state: Redis (REDIS_URL), else in-process memory;
- example index: Weaviate (WEAVIATE_URL), else the in-process LocalIndex;
- auth: Entra ID JWKS and/or HS256 service tokens (AUTH_ENABLED).
"""

from __future__ import annotations

from .config import Settings
from .context import AppContext


async def build_context(settings: Settings) -> AppContext:
    return await AppContext.create(settings)
