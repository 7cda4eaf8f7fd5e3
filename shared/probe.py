"""A dependency's health as a probe reports it. Neutral: backends (store/, index/, cache/) return
it and shared/health.py aggregates it, without either importing the other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass
class DependencyStatus:
    status: str  # up | down | degraded | disabled
    latency_ms: float | None = None
    detail: str = ""
    critical: bool = False  # down here means the router cannot serve at all


Probe = Callable[[], Awaitable[DependencyStatus]]
