"""Step 3, cache: the response caches as the chat path uses them: which requests take part (deterministic ones,
opt-ins, Cache-Control), their keys, and lookups that never fail a request (a cache outage is a
bypass). Exact entries live in the KeyValueCache backend; the semantic cache (cache/semantic.py)
matches single-turn prompts by vector."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import orjson
from opentelemetry import trace

from ..auth.base import Principal
from ..cache.base import KeyValueCache
from ..cache.keys import is_deterministic, response_cache_key
from ..cache.semantic import SemanticCache, bucket_key, single_turn_text
from ..config import Settings
from ..metrics import CACHE
from ..providers.base import Completion
from ..routing.decision import Decision
from ..routing.router import Router
from ..schemas import ChatCompletionRequest
from ..telemetry import span as tracing_span

log = logging.getLogger(__name__)


@dataclass
class SemanticSlot:
    bucket: str
    text: str
    vector: np.ndarray


@dataclass
class CachePlan:
    """One request's cache: a hit to replay, or where to store the answer."""

    status: str  # the request log's cache column: hit | miss | bypass | semantic_hit
    key: str | None = None  # store the answer under this exact key
    semantic: SemanticSlot | None = None  # and in this semantic slot
    hit: Completion | None = None
    hit_kind: str | None = None  # response | semantic

    @property
    def stores(self) -> bool:
        return self.key is not None or self.semantic is not None


class ResponseCaching:
    def __init__(self, settings: Settings, cache: KeyValueCache | None, router: Router) -> None:
        self.settings = settings
        self.cache = cache
        self.router = router
        self.semantic = (
            SemanticCache.over(
                cache,
                threshold=settings.semantic_cache_threshold,
                ttl_s=settings.cache_ttl_s,
                default_on=settings.semantic_cache_enabled,
                tenants_on=frozenset(t.strip() for t in settings.semantic_cache_tenants.split(",") if t.strip()),
                memory_max_bytes=settings.cache_max_bytes // 4,
            )
            if cache is not None
            else None
        )

    def key(self, req: ChatCompletionRequest, principal: Principal, cache_control: str | None) -> str | None:
        if self.cache is None or not self.settings.cache_enabled:
            return None
        opted = req.routing.cache if req.routing else None
        if opted is False:
            return None
        if not (is_deterministic(req) or opted or self.settings.cache_nondeterministic):
            return None
        return response_cache_key(req, principal.tenant)

    async def get(self, key: str) -> tuple[Completion | None, bool]:
        """The cached completion, and whether the cache answered at all (False: bypassed)."""
        assert self.cache is not None
        with tracing_span("cache get", kind=trace.SpanKind.CLIENT, attributes={"db.system": self.cache.kind}) as span:
            try:
                raw = await self.cache.get(key)
            except Exception as exc:  # a cache outage bypasses the cache
                log.warning("cache get failed, bypassing: %s", type(exc).__name__)
                CACHE.labels("response", "error").inc()
                span.set_attribute("llm_router.cache.result", "error")
                return None, False
            result = "hit" if raw else "miss"
            span.set_attribute("llm_router.cache.result", result)
            CACHE.labels("response", result).inc()
            return (orjson.loads(raw) if raw else None), True

    async def semantic_slot(
        self, req: ChatCompletionRequest, principal: Principal, decision: Decision
    ) -> SemanticSlot | None:
        """Where this request lives in the semantic cache, when it takes part at all."""
        if self.semantic is None or not self.settings.cache_enabled or req.n not in (None, 1):
            return None
        if (req.routing and req.routing.cache is False) or not self.semantic.wanted(req, principal.tenant):
            return None
        text = single_turn_text(req)
        bucket = bucket_key(req, principal.tenant, self.router.encoder.name)
        if text is None or bucket is None:
            return None
        vector = decision.vector
        if vector is None:
            try:
                vector = await self.router.encode(text)
            except Exception as exc:  # no vector, no semantic cache: never fail the request
                log.warning("semantic cache: encoding failed: %s", type(exc).__name__)
                return None
        return SemanticSlot(bucket=bucket, text=text, vector=vector)

    async def semantic_get(self, slot: SemanticSlot) -> Completion | None:
        assert self.semantic is not None
        try:
            raw = await self.semantic.lookup(slot.bucket, slot.vector)
        except Exception as exc:
            log.warning("semantic cache get failed, bypassing: %s", type(exc).__name__)
            CACHE.labels("semantic", "error").inc()
            return None
        CACHE.labels("semantic", "hit" if raw else "miss").inc()
        return orjson.loads(raw) if raw else None

    async def semantic_set(self, slot: SemanticSlot, completion: Completion) -> None:
        assert self.semantic is not None
        choice = (completion.get("choices") or [{}])[0]
        if choice.get("finish_reason") not in (None, "stop") or (choice.get("message") or {}).get("tool_calls"):
            return  # only plain finished answers stand in for a similar prompt
        try:
            await self.semantic.store(slot.bucket, slot.text, slot.vector, orjson.dumps(completion))
        except Exception as exc:
            log.warning("semantic cache set failed: %s", type(exc).__name__)

    async def set(self, key: str, completion: Completion) -> None:
        assert self.cache is not None
        try:
            await self.cache.set(key, orjson.dumps(completion), self.settings.cache_ttl_s)
        except Exception as exc:
            log.warning("cache set failed: %s", type(exc).__name__)

    async def lookup(
        self, req: ChatCompletionRequest, principal: Principal, decision: Decision, cache_control: str | None
    ) -> CachePlan:
        """Exact cache first, then the semantic one; Cache-Control no-cache skips the lookups and
        no-store the writes."""
        directives = (cache_control or "").lower()
        no_cache, no_store = "no-cache" in directives, "no-store" in directives
        key = self.key(req, principal, cache_control)
        plan = CachePlan(status="bypass", key=None if no_store else key)
        if key is not None and not no_cache:
            cached, reachable = await self.get(key)
            if cached is not None:
                return CachePlan(status="hit", hit=cached, hit_kind="response")
            plan.status = "miss" if reachable else "bypass"
        if no_cache and no_store:
            return plan
        slot = await self.semantic_slot(req, principal, decision)
        if slot is not None and not no_cache:
            cached = await self.semantic_get(slot)
            if cached is not None:
                return CachePlan(status="semantic_hit", hit=cached, hit_kind="semantic")
            if key is None:
                plan.status = "miss"
        plan.semantic = None if no_store else slot
        return plan

    async def store(self, plan: CachePlan, completion: Completion) -> None:
        if plan.key is not None:
            await self.set(plan.key, completion)
        if plan.semantic is not None:
            await self.semantic_set(plan.semantic, completion)
