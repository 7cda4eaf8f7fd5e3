"""The chat path, step by step: decide -> admit -> cache -> call with fallback -> account -> log ->
after-answer hooks. HTTP and Service Bus share it; it returns a plain ChatResult."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..auth.base import Principal
from ..catalog import ModelSpec
from ..config import Settings
from ..errors import ClientClosedRequest, RouterError, UpstreamUnavailable
from ..providers.base import Chunk, Completion, Timeouts
from ..resilience import Deadline
from ..routing.decision import Decision
from ..schemas import POLICY_ALIASES, ChatCompletionRequest
from ..store.base import RequestLogRow
from .accounting import Answered, Ledger, Usage, completion_text
from .admission import Admission, QuotaGuard
from .completion_chunks import replay_chunks
from .decide import Decider, decision_summary
from .fallback import Attempt, FallbackCaller
from .hooks.base import Answer
from .hooks.runner import HookRunner
from .response_cache import CachePlan, ResponseCaching
from .result import AnswerMeta, ChatResult
from .stream_relay import StreamTally, relay


@dataclass
class _Call:
    """One request on its way through the steps."""

    req: ChatCompletionRequest
    principal: Principal
    row: RequestLogRow
    t0: float
    decision: Decision
    admission: Admission
    plan: CachePlan


class ChatService:
    def __init__(
        self,
        settings: Settings,
        decider: Decider,
        caching: ResponseCaching,
        caller: FallbackCaller,
        ledger: Ledger,
        quota: QuotaGuard | None,
        hooks: HookRunner,
    ) -> None:
        self.settings = settings
        self.decider = decider
        self.caching = caching
        self.caller = caller
        self.ledger = ledger
        self.quota = quota
        self.hooks = hooks
        self.timeouts = Timeouts(
            connect_s=settings.upstream_connect_timeout_s,
            read_s=settings.upstream_read_timeout_s,
            stream_idle_s=settings.stream_idle_timeout_s,
        )

    async def decide(self, req: ChatCompletionRequest, principal: Principal | None) -> Decision:
        return await self.decider.decide(req, principal)

    async def chat(
        self,
        req: ChatCompletionRequest,
        principal: Principal,
        *,
        request_id: str,
        cache_control: str | None = None,
        source: str = "http",
    ) -> ChatResult:
        row = self._row(req, principal, request_id, source)
        t0 = time.perf_counter()
        try:
            decision = await self.decide(req, principal)
            row.policy = "explicit" if req.model not in POLICY_ALIASES else decision.policy
            row.chosen_model, row.decision = decision.chosen.id, decision_summary(decision)
            admission = await Admission.admit(self.quota, principal, req, decision)
        except RouterError as exc:
            self.ledger.failed(row, exc, t0)
            raise
        plan = await self.caching.lookup(req, principal, decision, cache_control)
        row.cache = plan.status
        call = _Call(req, principal, row, t0, decision, admission, plan)
        if plan.hit is not None:
            await admission.settle(0, 0.0)  # counted by the request quota, no tokens spent
            return self._replay(call, plan.hit)
        if req.stream:
            return await self._streamed(call)
        return await self._whole(call)

    # -- the steps after the cache ------------------------------------------------------------
    async def _whole(self, c: _Call) -> ChatResult:
        completion, attempt = await self._call_models(
            c, lambda provider, model: provider.complete(c.req, model, self.timeouts)
        )
        model = attempt.model
        completion["model"] = model.id
        usage = Usage.of(completion.get("usage"), c.req, completion_text(completion))
        if not completion.get("usage"):
            completion["usage"] = usage.as_openai()
        total_ms = (time.perf_counter() - c.t0) * 1000
        finish = [str(ch["finish_reason"]) for ch in completion.get("choices") or [] if ch.get("finish_reason")]
        overhead = max(0.0, total_ms - attempt.upstream_ms)
        await self.ledger.account(c.row, Answered(model, attempt, usage, total_ms, overhead, finish), c.admission)
        await self.caching.store(c.plan, completion)
        self._after_answer(c, model.id, completion)
        return ChatResult(c.row.id, c.decision, self._meta(c, attempt, overhead), completion=completion)

    async def _streamed(self, c: _Call) -> ChatResult:
        async def open_stream(provider: Any, model: ModelSpec) -> tuple[Chunk, AsyncIterator[Chunk]]:
            it = provider.stream(c.req, model, self.timeouts).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                raise UpstreamUnavailable(f"{model.id} closed the stream without data.", model=model.id) from None
            return first, it

        (first, rest), attempt = await self._call_models(c, open_stream)
        overhead = max(0.0, (time.perf_counter() - c.t0) * 1000 - attempt.upstream_ms)
        tally = StreamTally(model=attempt.model.id)

        async def chunks() -> AsyncIterator[Chunk]:
            try:
                async for chunk in relay(first, rest, tally, c.req.wants_usage_in_stream):
                    yield chunk
            except (GeneratorExit, asyncio.CancelledError):  # the caller went away mid-stream
                tally.abandoned = True
                raise
            finally:
                await self._account_stream(c, attempt, tally, overhead)
            if tally.completed and tally.error is None:
                completion = tally.as_completion()
                self._after_answer(c, attempt.model.id, completion)
                if not tally.tool_calls:
                    await self.caching.store(c.plan, completion)

        return ChatResult(c.row.id, c.decision, self._meta(c, attempt, overhead), chunks=chunks())

    async def _account_stream(self, c: _Call, attempt: Attempt, tally: StreamTally, overhead: float) -> None:
        usage = Usage.of(tally.usage, c.req, "".join(tally.text))
        total_ms = (time.perf_counter() - c.t0) * 1000
        finish = [tally.finish_reason] if tally.finish_reason else []
        error: RouterError | None = tally.error
        if error is None and tally.abandoned:
            error = ClientClosedRequest("The caller closed the connection before the stream ended.")
        answered = Answered(attempt.model, attempt, usage, total_ms, overhead, finish, error=error)
        await self.ledger.account(c.row, answered, c.admission)

    async def _call_models(self, c: _Call, call: Any) -> tuple[Any, Attempt]:
        candidates = [cand.model for cand in c.decision.ranked][: 1 + self.settings.max_fallbacks]
        try:
            return await self.caller.call(candidates, call, Deadline(self.settings.request_deadline_s))
        except RouterError as exc:
            await c.admission.settle(0, 0.0)
            self.ledger.failed(c.row, exc, c.t0)
            raise

    def _replay(self, c: _Call, cached: Completion) -> ChatResult:
        total_ms = self.ledger.replayed(c.row, cached, c.t0)
        meta = AnswerMeta(
            model=str(cached.get("model")),
            policy=c.row.policy or c.decision.policy,
            cache="hit",
            overhead_ms=total_ms,
            cache_kind=c.plan.hit_kind,
        )
        if not c.req.stream:
            return ChatResult(c.row.id, None, meta, completion=cached)
        return ChatResult(c.row.id, None, meta, chunks=replay_chunks(cached, c.req.wants_usage_in_stream))

    def _after_answer(self, c: _Call, model: str, completion: Completion) -> None:
        self.hooks.submit(Answer(c.row.id, c.principal.tenant, c.req, c.decision, model, completion))

    def _meta(self, c: _Call, attempt: Attempt, overhead: float) -> AnswerMeta:
        return AnswerMeta(
            model=attempt.model.id,
            policy=c.row.policy or c.decision.policy,
            cache=c.row.cache,
            overhead_ms=overhead,
            upstream_ms=attempt.upstream_ms,
            fallbacks=attempt.fallbacks,
        )

    def _row(self, req: ChatCompletionRequest, principal: Principal, request_id: str, source: str) -> RequestLogRow:
        return RequestLogRow(
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
