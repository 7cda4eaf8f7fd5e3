"""The circuit-breaker protocol and its rules.

N failed calls to a model within `window_s` open its circuit for `cooldown_s`; routing skips
an open model. After the cooldown one request is let through (half-open): its success closes
the circuit, its failure opens it for another cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5
    window_s: float = 30.0
    cooldown_s: float = 30.0


class CircuitBreaker(Protocol):
    async def open_models(self) -> set[str]:
        """Models to skip now. A half-open model is returned to all callers but one (the probe)."""
        ...

    async def record_success(self, model: str) -> None: ...

    async def record_failure(self, model: str) -> None: ...

    async def states(self) -> dict[str, str]:
        """closed | open | half_open per model that has a state."""
        ...
