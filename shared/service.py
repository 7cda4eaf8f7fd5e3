"""route -> cache -> call (retries, fallback) -> account: the one path HTTP and Service Bus share."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from .auth.base import Principal
from .cache.base import KeyValueCache
from .caching import ResponseCaching, SemanticSlot
from .catalog import Catalog, ModelSpec
from .circuit.base import CircuitBreaker
from .config import Settings
from .errors import (
    RouterError,
    UpstreamError,
    UpstreamUnavailable,
)
from .metrics import (
    COST_USD,
    DECISION_MS,
    OVERHEAD_MS,
    REQUESTS,
    TOKENS,
    UPSTREAM_ERRORS,
)
from .providers.base import Chunk, Completion, Timeouts
from .providers.registry import ProviderRegistry
from .resilience import Attempt, Deadline, call_with_fallback
from .routing.policy import PolicyName
from .routing.router import Decision, Router, RoutingRequest
from .schemas import POLICY_ALIASES, ChatCompletionRequest
from .store.base import RequestLogRow, RequestLogSink
from .streaming import SSE_DONE, chunks_from_completion, completion_from_stream, next_or_none, sse
from .telemetry import end_model_span
from .telemetry import span as tracing_span
from .tokens import count_usage, estimate_prompt_tokens

log = logging.getLogger(__name__)


AfterAnswer = Callable[[str, str | None, str, Any], Coroutine[Any, Any, None]]


class QuotaGuard(Protocol):
    """Admits a request before the upstream call and settles its real usage after it."""

    async def admit(self, principal: Principal, est_tokens: int, est_cost_usd: float) -> Any: ...

    async def settle(self, reservation: Any, tokens: int, cost_usd: float) -> None: ...


@dataclass
class ChatOutcome:
    request_id: str
    decision: Decision | None
    headers: dict[str, str]
    completion: Completion | None = None
    stream: AsyncIterator[bytes] | None = None


class RouterService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        router: Router,
        providers: ProviderRegistry,
        circuit: CircuitBreaker,
        request_log: RequestLogSink,
        cache: KeyValueCache | None = None,
        quota: QuotaGuard | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.router = router
        self.providers = providers
        self.circuit = circuit
        self.request_log = request_log
        self.cache = cache
        self.quota = quota
        self.caching = ResponseCaching(settings, cache, router)
        # called after a successful answer, off the request path (e.g. keeping the prompt so
        # that feedback on this request can become a labelled example)
        self.after_answer: list[AfterAnswer] = []
        self._answered_queue: deque[tuple[str, str | None, str, Any]] = deque(maxlen=10_000)
        self._answered_task: asyncio.Task[None] | None = None
        self.timeouts = Timeouts(
            connect_s=settings.upstream_connect_timeout_s,
            read_s=settings.upstream_read_timeout_s,
            stream_idle_s=settings.stream_idle_timeout_s,
        )

    # -- decision ---------------------------------------------------------------------------
    def routing_request(self, req: ChatCompletionRequest, principal: Principal | None) -> RoutingRequest:
        model = req.model
        opts = req.routing
        explicit = None
        policy: PolicyName | None = opts.policy if opts and opts.policy else None
        if model in POLICY_ALIASES:
            policy = POLICY_ALIASES[model] or policy
        else:
            explicit = model
        return RoutingRequest(
            prompt=req.prompt_text(),
            policy=policy or self.settings.default_policy,
            explicit_model=explicit,
            needs=frozenset(req.needs_capabilities()),
            prompt_tokens=estimate_prompt_tokens(req),
            max_output_tokens=req.output_limit,
            allowed_models=opts.allowed_models if opts else None,
            exclude_models=(opts.exclude_models or ()) if opts else (),
            max_cost_usd=opts.max_cost_usd if opts else None,
            min_quality=opts.min_quality if opts else None,
            tenant=principal.tenant if principal else None,
            tenant_allowed_models=self.settings.tenant_model_allowlist.get(principal.tenant) if principal else None,
        )

    async def decide(self, req: ChatCompletionRequest, principal: Principal | None) -> Decision:
        with tracing_span("route") as span:
            rreq = self.routing_request(req, principal)
            decision = await self.router.decide(rreq, open_circuits=await self.circuit.open_models())
            DECISION_MS.observe(decision.decision_ms)
            top = decision.ranked[0]
            span.set_attributes(
                {
                    "llm_router.requested_model": req.model,
                    "llm_router.policy": decision.policy,
                    "llm_router.chosen_model": decision.chosen.id,
                    "llm_router.candidates": [c.model.id for c in decision.ranked],
                    "llm_router.predicted_quality": round(top.predicted_quality, 4),
                    "llm_router.decision_ms": round(decision.decision_ms, 3),
                    "llm_router.index_status": decision.index_status,
                    "llm_router.neighbours": len(decision.neighbours),
                }
            )
            return decision

    # -- chat -------------------------------------------------------------------------------
    async def chat(
        self,
        req: ChatCompletionRequest,
        principal: Principal,
        *,
        request_id: str,
        cache_control: str | None = None,
        source: str = "http",
    ) -> ChatOutcome:
        t0 = time.perf_counter()
        deadline = Deadline(self.settings.request_deadline_s)
        row = RequestLogRow(
            id=request_id,
            tenant=principal.tenant,
            requested_model=req.model,
            policy=None,
            chosen_model=None,
            decision=None,
            cache="bypass",
            stream=bool(req.stream),
            source=source,
            prompt_text=req.prompt_text() if self.settings.log_prompts else None,
        )
        try:
            decision = await self.decide(req, principal)
        except RouterError as exc:
            self._finish_error(row, exc, t0)
            raise
        row.policy = "explicit" if req.model not in POLICY_ALIASES else decision.policy
        row.chosen_model = decision.chosen.id
        row.decision = _decision_summary(decision)
        headers = {
            "x-request-id": request_id,
            "x-router-model": decision.chosen.id,
            "x-router-policy": row.policy,
        }

        directives = (cache_control or "").lower()
        no_cache, no_store = "no-cache" in directives, "no-store" in directives
        cache_key = self.caching.key(req, principal, cache_control)
        store_in_cache = cache_key is not None and not no_store
        if cache_key is not None and not no_cache:
            cached, reachable = await self.caching.get(cache_key)
            if cached is not None:
                return self._replay(cached, req, row, headers, t0)
            row.cache = "miss" if reachable else "bypass"
        elif cache_key is not None:
            row.cache = "bypass"
        semantic = await self.caching.semantic_slot(req, principal, decision) if not (no_cache and no_store) else None
        if semantic is not None and not no_cache:
            cached = await self.caching.semantic_get(semantic)
            if cached is not None:
                return self._replay(cached, req, row, headers, t0, kind="semantic")
            if cache_key is None:
                row.cache = "miss"
        if no_store:
            semantic = None

        reservation = None
        if self.quota is not None:
            est = decision.ranked[0]
            try:
                reservation = await self.quota.admit(
                    principal,
                    estimate_prompt_tokens(req) + (req.output_limit or 0),
                    est.estimated_cost_usd,
                )
            except RouterError as exc:
                self._finish_error(row, exc, t0)
                raise

        if req.stream:
            return await self._stream(
                req,
                decision,
                row,
                headers,
                t0,
                deadline,
                cache_key if store_in_cache else None,
                reservation,
                semantic=semantic,
            )

        try:
            completion, attempt = await self._call_ranked(
                decision, deadline, lambda p, m: p.complete(req, m, self.timeouts)
            )
        except RouterError as exc:
            await self._settle(reservation, 0, 0.0)
            self._finish_error(row, exc, t0)
            raise
        model = attempt.model
        completion["model"] = model.id
        usage = completion.get("usage") or {}
        prompt_tokens, completion_tokens, usage_source = _usage_numbers(usage, req, completion)
        if not usage:
            completion["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        cost = model.cost_usd(prompt_tokens, completion_tokens)
        finish = [str(c.get("finish_reason")) for c in completion.get("choices") or [] if c.get("finish_reason")]
        end_model_span(
            attempt.span,
            response_model=str(completion.get("model") or model.id),
            usage=(prompt_tokens, completion_tokens),
            finish_reasons=finish,
            cost_usd=cost,
            tenant=principal.tenant,
            attempts=attempt.attempts,
        )
        await self._settle(reservation, prompt_tokens + completion_tokens, cost)
        total_ms = (time.perf_counter() - t0) * 1000
        overhead = max(0.0, total_ms - attempt.upstream_ms)
        row.chosen_model = model.id
        row.prompt_tokens, row.completion_tokens, row.cost_usd = prompt_tokens, completion_tokens, cost
        row.usage_source = usage_source
        row.latency_ms, row.upstream_ms, row.overhead_ms = total_ms, attempt.upstream_ms, overhead
        row.fallbacks = attempt.fallbacks
        headers.update(self._timing_headers(model, overhead, attempt, row.cache))
        self._account(row)
        if store_in_cache and cache_key is not None:
            await self.caching.set(cache_key, completion)
        if semantic is not None:
            await self.caching.semantic_set(semantic, completion)
        self._answered(request_id, principal.tenant, req, decision)
        return ChatOutcome(request_id=request_id, decision=decision, headers=headers, completion=completion)

    # -- streaming --------------------------------------------------------------------------
    async def _stream(
        self,
        req: ChatCompletionRequest,
        decision: Decision,
        row: RequestLogRow,
        headers: dict[str, str],
        t0: float,
        deadline: Deadline,
        cache_key: str | None,
        reservation: Any,
        semantic: SemanticSlot | None = None,
    ) -> ChatOutcome:
        async def open_stream(provider: Any, model: ModelSpec) -> tuple[Chunk, AsyncIterator[Chunk]]:
            it = provider.stream(req, model, self.timeouts).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                raise UpstreamUnavailable(f"{model.id} closed the stream without data.", model=model.id) from None
            return first, it

        try:
            (first, rest), attempt = await self._call_ranked(decision, deadline, open_stream)
        except RouterError as exc:
            await self._settle(reservation, 0, 0.0)
            self._finish_error(row, exc, t0)
            raise
        model = attempt.model
        first_byte_ms = (time.perf_counter() - t0) * 1000
        overhead = max(0.0, first_byte_ms - attempt.upstream_ms)
        headers.update(self._timing_headers(model, overhead, attempt, row.cache))
        row.chosen_model = model.id
        row.fallbacks = attempt.fallbacks
        wants_usage = req.wants_usage_in_stream

        async def body() -> AsyncIterator[bytes]:
            text_parts: list[str] = []
            finish_reason: str | None = None
            usage: dict[str, Any] | None = None
            completed = False
            cacheable = cache_key is not None or semantic is not None
            meta: dict[str, Any] = {"id": first.get("id"), "created": first.get("created")}
            stream_error: UpstreamError | None = None
            try:
                chunk: Chunk | None = first
                while chunk is not None:
                    chunk["model"] = model.id
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    choices = chunk.get("choices") or []
                    for ch in choices:
                        delta = ch.get("delta") or {}
                        if delta.get("content"):
                            text_parts.append(delta["content"])
                        if delta.get("tool_calls"):
                            cacheable = False
                        if ch.get("finish_reason"):
                            finish_reason = ch["finish_reason"]
                    if choices or wants_usage:
                        if not wants_usage and "usage" in chunk:
                            chunk = {k: v for k, v in chunk.items() if k != "usage"}
                        yield sse(chunk)
                    chunk = await next_or_none(rest)
                completed = True
            except UpstreamError as exc:
                # bytes are already with the caller: no fallback now; end with an error event
                row.status, row.error_code = exc.status, exc.code
                stream_error = exc
                UPSTREAM_ERRORS.labels(model.id, exc.reason).inc()
                yield sse(exc.body())
            finally:
                total_ms = (time.perf_counter() - t0) * 1000
                if usage:
                    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                    row.usage_source = "provider"
                else:
                    pt, ct, row.usage_source = count_usage(req, "".join(text_parts))
                cost = model.cost_usd(pt, ct)
                row.prompt_tokens, row.completion_tokens, row.cost_usd = pt, ct, cost
                row.latency_ms, row.upstream_ms, row.overhead_ms = total_ms, total_ms - overhead, overhead
                end_model_span(
                    attempt.span,
                    response_model=model.id,
                    usage=(pt, ct),
                    finish_reasons=[finish_reason] if finish_reason else [],
                    cost_usd=cost,
                    tenant=row.tenant,
                    attempts=attempt.attempts,
                    error=stream_error,
                )
                await self._settle(reservation, pt + ct, cost)
                self._account(row)
            yield SSE_DONE
            if completed and row.status < 400:
                self._answered(row.id, row.tenant, req, decision)
            if completed and cacheable and row.status < 400:
                completion = completion_from_stream(meta, model.id, "".join(text_parts), finish_reason, usage)
                if cache_key is not None:
                    await self.caching.set(cache_key, completion)
                if semantic is not None:
                    await self.caching.semantic_set(semantic, completion)

        return ChatOutcome(request_id=row.id, decision=decision, headers=headers, stream=body())

    def _answered(self, request_id: str, tenant: str | None, req: ChatCompletionRequest, decision: Decision) -> None:
        """Queue the after-answer hooks; one background task runs them (a task per request cost
        more than the hooks themselves). A full queue drops the oldest: the hooks are best effort."""
        if not self.after_answer:
            return
        self._answered_queue.append((request_id, tenant, req.prompt_text(), decision.vector))
        if self._answered_task is None or self._answered_task.done():
            self._answered_task = asyncio.create_task(self._run_after_answer())

    async def _run_after_answer(self) -> None:
        while self._answered_queue:
            item = self._answered_queue.popleft()
            for hook in self.after_answer:
                try:
                    await hook(*item)
                except Exception:
                    log.exception("after-answer hook failed")

    # -- the retry / fallback loop --------------------------------------------------------------
    async def _call_ranked(
        self,
        decision: Decision,
        deadline: Deadline,
        call: Callable[[Any, ModelSpec], Awaitable[Any]],
    ) -> tuple[Any, Attempt]:
        candidates = [c.model for c in decision.ranked][: 1 + self.settings.max_fallbacks]
        return await call_with_fallback(
            candidates, call, providers=self.providers, circuit=self.circuit, settings=self.settings, deadline=deadline
        )

    def _replay(
        self,
        cached: Completion,
        req: ChatCompletionRequest,
        row: RequestLogRow,
        headers: dict[str, str],
        t0: float,
        kind: str = "response",
    ) -> ChatOutcome:
        row.cache = "semantic_hit" if kind == "semantic" else "hit"
        row.chosen_model = cached.get("model", row.chosen_model)
        total_ms = (time.perf_counter() - t0) * 1000
        row.latency_ms = row.overhead_ms = total_ms
        row.usage_source = "none"
        headers.update(
            {
                "x-router-model": str(cached.get("model")),
                "x-router-cache": "hit",
                "x-router-cache-kind": kind,
                "x-router-overhead-ms": f"{total_ms:.2f}",
                "x-router-upstream-ms": "0",
            }
        )
        self._account(row)
        if not req.stream:
            return ChatOutcome(request_id=row.id, decision=None, headers=headers, completion=cached)

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks_from_completion(cached, req.wants_usage_in_stream):
                yield sse(chunk)
            yield SSE_DONE

        return ChatOutcome(request_id=row.id, decision=None, headers=headers, stream=replay())

    # -- accounting ----------------------------------------------------------------------------
    def _timing_headers(self, model: ModelSpec, overhead: float, attempt: Attempt, cache: str) -> dict[str, str]:
        h = {
            "x-router-model": model.id,
            "x-router-overhead-ms": f"{overhead:.2f}",
            "x-router-upstream-ms": f"{attempt.upstream_ms:.2f}",
            "x-router-cache": cache,
        }
        if attempt.fallbacks:
            h["x-router-fallbacks"] = ",".join(f"{f['from']}>{f['to']}:{f['reason']}" for f in attempt.fallbacks)
        return h

    async def _settle(self, reservation: Any, tokens: int, cost: float) -> None:
        if self.quota is not None and reservation is not None:
            try:
                await self.quota.settle(reservation, tokens, cost)
            except Exception:
                log.exception("quota settle failed")

    def _finish_error(self, row: RequestLogRow, exc: RouterError, t0: float) -> None:
        row.status = exc.status
        row.error_code = exc.code
        row.latency_ms = (time.perf_counter() - t0) * 1000
        self._account(row)

    def _account(self, row: RequestLogRow) -> None:
        model = row.chosen_model or "none"
        REQUESTS.labels(model, row.policy or "none", str(row.status), row.cache).inc()
        if row.status < 400 or row.prompt_tokens:
            OVERHEAD_MS.observe(row.overhead_ms)
            TOKENS.labels(model, "input").inc(row.prompt_tokens)
            TOKENS.labels(model, "output").inc(row.completion_tokens)
            COST_USD.labels(model).inc(row.cost_usd)
        self.request_log.record(row)


def _usage_numbers(usage: dict[str, Any], req: ChatCompletionRequest, completion: Completion) -> tuple[int, int, str]:
    if usage and ("prompt_tokens" in usage or "completion_tokens" in usage):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), "provider"
    text = ""
    for ch in completion.get("choices") or []:
        text += (ch.get("message") or {}).get("content") or ""
    return count_usage(req, text)


def _decision_summary(d: Decision) -> dict[str, Any]:
    return {
        "policy": d.policy,
        "chosen": d.chosen.id,
        "fallbacks": [m.id for m in d.fallbacks],
        "predicted_quality": {c.model.id: round(c.predicted_quality, 4) for c in d.ranked},
        "neighbours": len(d.neighbours),
        "index": d.index_status,
        "decision_ms": round(d.decision_ms, 3),
    }
