"""An embedding cache in front of a remote encoder (an embeddings API costs money and time).

Keyed by encoder name (the vector space) and the sha256 of the text. A cache failure never
fails encoding: the remote encoder is called for whatever the cache could not answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from ..encoders.base import AsyncEncoder
from ..metrics import CACHE
from .base import KeyValueCache

log = logging.getLogger(__name__)

KEY_VERSION = "v1"


def embedding_key(encoder_name: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"llmr:emb:{KEY_VERSION}:{encoder_name}:{digest}"


class CachedEncoder:
    """An AsyncEncoder that answers from the cache first; same name and dim as the one it wraps."""

    def __init__(self, inner: AsyncEncoder, cache: KeyValueCache, ttl_s: int) -> None:
        self.inner = inner
        self.cache = cache
        self.ttl_s = ttl_s
        self.name = inner.name
        self.dim = inner.dim

    async def _get(self, key: str) -> bytes | None:
        try:
            return await self.cache.get(key)
        except Exception as exc:
            log.debug("embedding cache get failed: %s", type(exc).__name__)
            return None

    async def _set(self, key: str, vector: np.ndarray) -> None:
        try:
            await self.cache.set(key, np.asarray(vector, dtype=np.float32).tobytes(), self.ttl_s)
        except Exception as exc:
            log.debug("embedding cache set failed: %s", type(exc).__name__)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    async def aencode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [embedding_key(self.name, t) for t in texts]
        cached = await asyncio.gather(*(self._get(k) for k in keys))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        for i, raw in enumerate(cached):
            vec = np.frombuffer(raw, dtype=np.float32) if raw else None
            if vec is not None and vec.shape == (self.dim,):
                out[i] = vec
            else:
                missing.append(i)
        CACHE.labels("embedding", "hit").inc(len(texts) - len(missing))
        CACHE.labels("embedding", "miss").inc(len(missing))
        if missing:
            fresh = await self.inner.aencode([texts[i] for i in missing])
            for row, i in enumerate(missing):
                out[i] = fresh[row]
            await asyncio.gather(*(self._set(keys[i], fresh[row]) for row, i in enumerate(missing)))
        return out
