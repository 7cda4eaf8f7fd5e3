"""The semantic cache: answer a single-turn prompt with the cached answer to a near-identical one.

Opt-in (per request `routing.semantic_cache: true`, or per tenant through settings). Only
single-turn prompts (system/developer messages plus one user message) take part, and only
against prompts with the same tenant, requested model or policy, routing options, system
messages and generation parameters: those form the *bucket* key. Inside a bucket the prompt
vectors (the router's encoder vectors, unit length) are compared by cosine; a match at or
above the threshold returns the stored answer.

A bucket is a small bounded list of entries `response key + NUL + float32 vector bytes`; the
answers themselves live in the key-value cache under their response key. Buckets are Redis
lists (RPUSH + LTRIM, atomic) with the Redis backend, or an in-process LRU otherwise.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from typing import Protocol, runtime_checkable

import numpy as np
import orjson

from ..schemas import ChatCompletionRequest
from .base import KeyValueCache
from .memory import ENTRY_OVERHEAD_BYTES

KEY_VERSION = "v1"
# a bucket entry is a response key and a vector (~0.5-3 KB): 64 MiB holds ~30k-100k of them
DEFAULT_BUCKET_BYTES = 64 * 2**20
SINGLE_TURN_PRELUDE = frozenset({"system", "developer"})


@runtime_checkable
class BucketStore(Protocol):
    async def list_range(self, key: str) -> list[bytes]: ...

    async def list_push_bounded(self, key: str, value: bytes, max_len: int, ttl_s: int) -> None: ...


class MemoryBuckets:
    """In-process buckets: at most `max_buckets` and `max_bytes` (least recently used go first),
    each with a TTL."""

    def __init__(self, max_buckets: int = 10_000, max_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        self.max_buckets = max_buckets
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._data: OrderedDict[str, tuple[float, deque[bytes]]] = OrderedDict()

    @staticmethod
    def _cost(key: str, entries: deque[bytes]) -> int:
        return len(key) + ENTRY_OVERHEAD_BYTES + sum(len(e) + ENTRY_OVERHEAD_BYTES for e in entries)

    def _drop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.size_bytes -= self._cost(key, item[1])

    async def list_range(self, key: str) -> list[bytes]:
        item = self._data.get(key)
        if item is None:
            return []
        expires, entries = item
        if expires < time.monotonic():
            self._drop(key)
            return []
        self._data.move_to_end(key)
        return list(entries)

    async def list_push_bounded(self, key: str, value: bytes, max_len: int, ttl_s: int) -> None:
        item = self._data.get(key)
        entries: deque[bytes] = item[1] if item is not None else deque()
        self._drop(key)  # its cost is counted again below, as it is after this push
        entries.append(value)
        while len(entries) > max_len:
            entries.popleft()
        cost = self._cost(key, entries)
        if cost > self.max_bytes:
            return
        self._data[key] = (time.monotonic() + ttl_s, entries)
        self.size_bytes += cost
        while len(self._data) > self.max_buckets or self.size_bytes > self.max_bytes:
            old_key, (_, old_entries) = self._data.popitem(last=False)
            self.size_bytes -= self._cost(old_key, old_entries)


def single_turn_text(req: ChatCompletionRequest) -> str | None:
    """The user text of a single-turn, text-only prompt; None for anything else."""
    users = [m for m in req.messages if m.role == "user"]
    others = [m for m in req.messages if m.role not in SINGLE_TURN_PRELUDE and m.role != "user"]
    if len(users) != 1 or others or req.messages[-1].role != "user":
        return None
    user = users[0]
    if not isinstance(user.content, str) and (
        user.content is None or any(getattr(p, "type", "") != "text" for p in user.content)
    ):
        return None
    text = user.text()
    return text if text.strip() else None


def bucket_key(req: ChatCompletionRequest, tenant: str | None, encoder_name: str) -> str | None:
    if single_turn_text(req) is None:
        return None
    material = {
        "tenant": tenant or "",
        "model": req.model,
        "encoder": encoder_name,
        "routing": req.routing.model_dump(mode="json", exclude_none=True, exclude={"cache", "semantic_cache"})
        if req.routing
        else {},
        "prelude": [m.model_dump(mode="json", exclude_none=True) for m in req.messages if m.role != "user"],
        # everything about the user turn except its text (the text is compared by vector)
        "user": [
            m.model_dump(mode="json", exclude_none=True, exclude={"content"}) for m in req.messages if m.role == "user"
        ],
        "params": req.generation_params(),
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"llmr:sem:{KEY_VERSION}:{digest}"


def _response_key(bucket: str, text: str) -> str:
    digest = hashlib.sha256(bucket.encode() + b"\x00" + text.encode()).hexdigest()
    return f"llmr:semresp:{KEY_VERSION}:{digest}"


def _encode_entry(response_key: str, vector: np.ndarray) -> bytes:
    return response_key.encode() + b"\x00" + np.asarray(vector, dtype=np.float32).tobytes()


def _decode_entry(raw: bytes) -> tuple[str, np.ndarray]:
    key, _, vec = raw.partition(b"\x00")
    return key.decode(), np.frombuffer(vec, dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


class SemanticCache:
    def __init__(
        self,
        responses: KeyValueCache,
        buckets: BucketStore,
        *,
        threshold: float = 0.95,
        ttl_s: int = 3600,
        per_bucket: int = 32,
        default_on: bool = False,
        tenants_on: frozenset[str] = frozenset(),
    ) -> None:
        self.responses = responses
        self.buckets = buckets
        self.threshold = threshold
        self.ttl_s = ttl_s
        self.per_bucket = per_bucket
        self.default_on = default_on
        self.tenants_on = tenants_on

    @classmethod
    def over(
        cls,
        cache: KeyValueCache,
        *,
        threshold: float,
        ttl_s: int,
        default_on: bool = False,
        tenants_on: frozenset[str] = frozenset(),
        memory_max_bytes: int = DEFAULT_BUCKET_BYTES,
    ) -> SemanticCache:
        """Buckets in the same store as the cache when it can hold lists (Redis), else in memory
        (at most `memory_max_bytes`)."""
        buckets: BucketStore = cache if isinstance(cache, BucketStore) else MemoryBuckets(max_bytes=memory_max_bytes)
        return cls(cache, buckets, threshold=threshold, ttl_s=ttl_s, default_on=default_on, tenants_on=tenants_on)

    def wanted(self, req: ChatCompletionRequest, tenant: str | None) -> bool:
        asked = req.routing.semantic_cache if req.routing else None
        if asked is not None:
            return asked
        return self.default_on or (tenant or "") in self.tenants_on

    async def lookup(self, bucket: str, vector: np.ndarray) -> bytes | None:
        """The stored answer whose prompt is most similar, if at or above the threshold."""
        best_key, best = None, -1.0
        query = np.asarray(vector, dtype=np.float32)
        for raw in await self.buckets.list_range(bucket):
            key, vec = _decode_entry(raw)
            if vec.shape != query.shape:
                continue
            sim = cosine(query, vec)
            if sim > best:
                best_key, best = key, sim
        if best_key is None or best < self.threshold:
            return None
        return await self.responses.get(best_key)

    async def store(self, bucket: str, text: str, vector: np.ndarray, answer: bytes) -> None:
        key = _response_key(bucket, text)
        await self.responses.set(key, answer, self.ttl_s)
        known = {_decode_entry(raw)[0] for raw in await self.buckets.list_range(bucket)}
        if key not in known:
            await self.buckets.list_push_bounded(bucket, _encode_entry(key, vector), self.per_bucket, self.ttl_s)
