"""Retries: tenacity, the only retry loop (provider SDK retries are off), and the request deadline.
The fallback along ranked models is shared/chat/fallback.py; circuit breakers are shared/circuit/."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from .errors import UpstreamError, UpstreamRateLimited

T = TypeVar("T")


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
    """Call `fn` until it succeeds, a non-transient error, `attempts`, or the deadline.

    The first call runs outside tenacity: nearly every call succeeds at once, and building the
    retry loop per call showed up in the profile (~3% of the router's CPU). On a transient failure
    tenacity takes over and is handed that first attempt's error as its own attempt 1, so it waits,
    counts and stops exactly as if it had made the call itself."""
    try:
        return await fn()
    except Exception as exc:
        if attempts <= 1 or not _is_transient(exc):
            raise
        first_error = exc
    replayed = False

    async def attempt_fn() -> T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_error
        return await fn()

    async for attempt in _retrying(attempts, deadline, base_s, cap_s, on_retry):
        with attempt:
            return await attempt_fn()
    raise AssertionError("unreachable: tenacity reraises the last error")


def _retrying(
    attempts: int,
    deadline: Deadline,
    base_s: float,
    cap_s: float,
    on_retry: Callable[[BaseException, int], None] | None,
) -> AsyncRetrying:
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

    return AsyncRetrying(
        stop=stop_any(stop_after_attempt(attempts), _StopAtDeadline(deadline, predicted_wait)),
        wait=backoff_wait(base_s, cap_s, deadline),
        retry=retry_if_exception(_is_transient),
        reraise=True,
        before_sleep=before_sleep,
    )
