"""Step 4, call with fallback: the first ranked model (with retries); on a failure whose reason
is in FALLBACK_ON, the next, while the deadline lasts. Never a model outside the candidates: the
decision already dropped every model that breaks the request's constraints."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace

from ..catalog import ModelSpec
from ..circuit.base import CircuitBreaker
from ..config import Settings
from ..errors import ProviderNotConfigured, RouterError, UpstreamError
from ..metrics import FALLBACKS, RETRIES, UPSTREAM_ERRORS, UPSTREAM_MS
from ..providers.registry import ProviderRegistry
from ..resilience import Deadline, with_retries
from ..telemetry import end_model_span, model_span

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """The call that succeeded: its model, its time, the fallbacks before it, its span."""

    model: ModelSpec
    upstream_ms: float
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    span: Any = None  # the model call's span, ended once usage is known
    attempts: int = 1


class FallbackCaller:
    def __init__(self, settings: Settings, providers: ProviderRegistry, circuit: CircuitBreaker) -> None:
        self.settings = settings
        self.providers = providers
        self.circuit = circuit

    async def call(
        self, candidates: list[ModelSpec], call: Callable[[Any, ModelSpec], Awaitable[T]], deadline: Deadline
    ) -> tuple[T, Attempt]:
        fallbacks: list[dict[str, str]] = []
        not_configured: ProviderNotConfigured | None = None
        last_error: RouterError | None = None
        for pos, model in enumerate(candidates):
            nxt = candidates[pos + 1].id if pos + 1 < len(candidates) else None
            try:
                provider = self.providers.for_model(model)
            except ProviderNotConfigured as exc:
                not_configured = not_configured or exc
                if nxt:
                    fallbacks.append({"from": model.id, "to": nxt, "reason": "not_configured"})
                continue
            try:
                result, attempt = await self._one(model, functools.partial(call, provider, model), deadline)
            except UpstreamError as exc:
                last_error = exc
                if nxt and exc.reason in self.settings.fallback_reasons and not deadline.expired:
                    fallbacks.append(_fell_back(model.id, nxt, exc.reason))
                    continue
                raise
            attempt.fallbacks = fallbacks
            return result, attempt
        if last_error is not None:
            raise last_error
        assert not_configured is not None
        raise not_configured

    async def _one(self, model: ModelSpec, fn: Callable[[], Awaitable[T]], deadline: Deadline) -> tuple[T, Attempt]:
        """One model, with retries; its span, metrics and circuit record."""
        t_call = time.perf_counter()
        span = model_span(model)
        tries = [1]

        def on_retry(exc: BaseException, attempt: int) -> None:
            tries[0] = attempt + 1
            RETRIES.labels(model.id, getattr(exc, "reason", "error")).inc()

        try:
            result = await with_retries(
                fn, attempts=self.settings.max_attempts_per_model, deadline=deadline, on_retry=on_retry
            )
        except UpstreamError as exc:
            UPSTREAM_ERRORS.labels(model.id, exc.reason).inc()
            end_model_span(span, error=exc, attempts=tries[0])
            if exc.transient:
                await self.circuit.record_failure(model.id)
            raise
        upstream_ms = (time.perf_counter() - t_call) * 1000
        UPSTREAM_MS.labels(model.id).observe(upstream_ms)
        await self.circuit.record_success(model.id)
        return result, Attempt(model=model, upstream_ms=upstream_ms, span=span, attempts=tries[0])


def _fell_back(src: str, dst: str, reason: str) -> dict[str, str]:
    FALLBACKS.labels(src, dst, reason).inc()
    trace.get_current_span().add_event(
        "fallback",
        {"llm_router.fallback.from": src, "llm_router.fallback.to": dst, "llm_router.fallback.reason": reason},
    )
    log.warning(
        "fallback %s -> %s (%s)",
        src,
        dst,
        reason,
        extra={"fallback_from": src, "fallback_to": dst, "fallback_reason": reason},
    )
    return {"from": src, "to": dst, "reason": reason}
