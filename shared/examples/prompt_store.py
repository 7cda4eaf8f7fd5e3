"""Prompts of answered requests, kept so that later feedback on them can become labelled examples.

request_log.prompt_text exists only with LOG_PROMPTS=true. Otherwise each answered request is
kept here (the cache: Redis or memory) for FEEDBACK_PROMPT_TTL_S: the prompt's vector always, its
text only when STORE_PROMPT_TEXT is on and the tenant is listed in STORE_PROMPT_TEXT_TENANTS.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import orjson

from ..cache.base import KeyValueCache
from ..config import Settings


@dataclass(frozen=True)
class KeptPrompt:
    tenant: str | None
    text: str | None
    vector: np.ndarray | None


class PromptStore:
    """Prompts of answered requests, kept for FEEDBACK_PROMPT_TTL_S so feedback can label them."""

    def __init__(self, cache: KeyValueCache, ttl_s: int) -> None:
        self.cache = cache
        self.ttl_s = ttl_s

    @staticmethod
    def key(request_id: str) -> str:
        return f"feedback-prompt:{request_id}"

    async def keep(self, request_id: str, tenant: str | None, text: str | None, vector: np.ndarray | None) -> None:
        body = {
            "tenant": tenant,
            "text": text,
            "vector": base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()
            if vector is not None
            else None,
        }
        await self.cache.set(self.key(request_id), orjson.dumps(body), self.ttl_s)

    async def get(self, request_id: str) -> KeptPrompt | None:
        raw = await self.cache.get(self.key(request_id))
        if raw is None:
            return None
        body = orjson.loads(raw)
        vec = body.get("vector")
        vector = np.frombuffer(base64.b64decode(vec), dtype=np.float32) if vec else None
        return KeptPrompt(body.get("tenant"), body.get("text"), vector)


def prompt_text_allowed(settings: Settings, tenant: str | None) -> bool:
    if not settings.store_prompt_text:
        return False
    allowed = {t.strip() for t in settings.store_prompt_text_tenants.split(",") if t.strip()}
    return "*" in allowed or (tenant or "") in allowed
