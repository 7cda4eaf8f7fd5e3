"""In-process circuit breakers (one replica, or Redis down)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import CircuitPolicy


@dataclass
class _Circuit:
    failures: list[float] = field(default_factory=list)
    opened_at: float | None = None
    probing: bool = False


class MemoryCircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = CircuitPolicy(failure_threshold, window_s, cooldown_s)
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _state(self, c: _Circuit) -> str:
        if c.opened_at is None:
            return "closed"
        if self._clock() - c.opened_at >= self.policy.cooldown_s:
            return "half_open"
        return "open"

    async def open_models(self) -> set[str]:
        blocked = set()
        for model, c in self._circuits.items():
            state = self._state(c)
            if state == "open":
                blocked.add(model)
            elif state == "half_open":
                if c.probing:
                    blocked.add(model)  # one probe at a time
                else:
                    c.probing = True
        return blocked

    async def record_success(self, model: str) -> None:
        c = self._circuits.get(model)
        if c is not None:
            c.failures.clear()
            c.opened_at = None
            c.probing = False

    async def record_failure(self, model: str) -> None:
        c = self._circuits.setdefault(model, _Circuit())
        now = self._clock()
        if c.opened_at is not None and self._state(c) == "half_open":
            c.opened_at = now  # the probe failed: open again
            c.probing = False
            return
        c.failures = [t for t in c.failures if now - t < self.policy.window_s]
        c.failures.append(now)
        if len(c.failures) >= self.policy.failure_threshold:
            c.opened_at = now
            c.failures.clear()

    async def states(self) -> dict[str, str]:
        return {m: self._state(c) for m, c in self._circuits.items()}
