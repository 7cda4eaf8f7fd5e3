"""Retries: tenacity, the only retry loop (provider SDK retries are off). Circuit breakers are
in shared/circuit/."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry import trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from .catalog import ModelSpec
from .circuit.base import CircuitBreaker
from .config import Settings
from .errors import ProviderNotConfigured, RouterError, UpstreamError, UpstreamRateLimited
from .metrics import FALLBACKS, RETRIES, UPSTREAM_ERRORS, UPSTREAM_MS
from .providers.registry import ProviderRegistry
from .telemetry import end_model_span, model_span

T = TypeVar("T")
log = logging.getLogger(__name__)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.transient


def backoff_wait(base_s: float, cap_s: float, deadline: Deadline) -> Callable[[RetryCallState], float]:
    """Full-jitter exponential backoff; a Retry-After from the upstream wins when it is given."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UpstreamRateLimited) and exc.retry_after_s is not None:
            delay = exc.retry_after_s
        else:
            delay = random.uniform(0, min(cap_s, base_s * (2 ** (state.attempt_number - 1))))
        return min(delay, deadline.remaining())

    return wait


class _StopAtDeadline(stop_base):
    """Stop when the next wait would run past the deadline: better to fall back now."""

    def __init__(self, deadline: Deadline, needed: Callable[[RetryCallState], float]) -> None:
        self.deadline = deadline
        self.needed = needed

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline.remaining() <= self.needed(retry_state)


async def with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    deadline: Deadline,
    base_s: float = 0.2,
    cap_s: float = 2.0,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Call `fn` until it succeeds, a non-transient error, `attempts`, or the deadline."""

    def predicted_wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, UpstreamRateLimited) and exc.retry_after_s is not None:
            return exc.retry_after_s
        return 0.0

    def before_sleep(state: RetryCallState) -> None:
        if on_retry and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.attempt_number)

    retrying = AsyncRetrying(
        stop=stop_any(stop_after_attempt(attempts), _StopAtDeadline(deadline, predicted_wait)),
        wait=backoff_wait(base_s, cap_s, deadline),
        retry=retry_if_exception(_is_transient),
        reraise=True,
        before_sleep=before_sleep,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity reraises the last error")


# --- fallback along the ranked candidates -----------------------------------------------------------


@dataclass
class Attempt:
    """The call that succeeded: its model, its time, the fallbacks before it, its span."""

    model: ModelSpec
    upstream_ms: float
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    span: Any = None  # the model call's span, ended once usage is known
    attempts: int = 1


async def call_with_fallback(
    candidates: list[ModelSpec],
    call: Callable[[Any, ModelSpec], Awaitable[T]],
    *,
    providers: ProviderRegistry,
    circuit: CircuitBreaker,
    settings: Settings,
    deadline: Deadline,
) -> tuple[T, Attempt]:
    """Call the first candidate (with retries); on a failure whose reason is in FALLBACK_ON, the
    next, while the deadline lasts. Never a model outside `candidates`: the decision already
    dropped every model that breaks the request's constraints."""
    fallbacks: list[dict[str, str]] = []
    not_configured: ProviderNotConfigured | None = None
    last_error: RouterError | None = None
    for pos, model in enumerate(candidates):
        nxt = candidates[pos + 1].id if pos + 1 < len(candidates) else None
        try:
            provider = providers.for_model(model)
        except ProviderNotConfigured as exc:
            not_configured = not_configured or exc
            if nxt:
                fallbacks.append({"from": model.id, "to": nxt, "reason": "not_configured"})
            continue
        t_call = time.perf_counter()
        span = model_span(model)
        tries = [1]

        def on_retry(exc: BaseException, attempt: int, model_id: str = model.id, tries: list[int] = tries) -> None:
            tries[0] = attempt + 1
            RETRIES.labels(model_id, getattr(exc, "reason", "error")).inc()

        try:
            result = await with_retries(
                functools.partial(call, provider, model),
                attempts=settings.max_attempts_per_model,
                deadline=deadline,
                on_retry=on_retry,
            )
        except UpstreamError as exc:
            UPSTREAM_ERRORS.labels(model.id, exc.reason).inc()
            end_model_span(span, error=exc, attempts=tries[0])
            if exc.transient:
                await circuit.record_failure(model.id)
            last_error = exc
            if nxt and exc.reason in settings.fallback_reasons and not deadline.expired:
                fallbacks.append({"from": model.id, "to": nxt, "reason": exc.reason})
                FALLBACKS.labels(model.id, nxt, exc.reason).inc()
                trace.get_current_span().add_event(
                    "fallback",
                    {
                        "llm_router.fallback.from": model.id,
                        "llm_router.fallback.to": nxt,
                        "llm_router.fallback.reason": exc.reason,
                    },
                )
                log.warning(
                    "fallback %s -> %s (%s)",
                    model.id,
                    nxt,
                    exc.reason,
                    extra={"fallback_from": model.id, "fallback_to": nxt, "fallback_reason": exc.reason},
                )
                continue
            raise
        upstream_ms = (time.perf_counter() - t_call) * 1000
        UPSTREAM_MS.labels(model.id).observe(upstream_ms)
        await circuit.record_success(model.id)
        return result, Attempt(model=model, upstream_ms=upstream_ms, fallbacks=fallbacks, span=span, attempts=tries[0])
    if last_error is not None:
        raise last_error
    assert not_configured is not None
    raise not_configured
