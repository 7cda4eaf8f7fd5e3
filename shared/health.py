"""Health of every dependency, for /api/v1/health (detailed, Ops) and /health/ready (anonymous).

A probe is a coroutine returning a DependencyStatus (shared/probe.py); the composition root
gathers one per dependency into a HealthChecks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .cache.base import KeyValueCache
from .catalog import Catalog
from .index.base import ExampleIndex
from .metrics import DEPENDENCY_UP
from .probe import DependencyStatus, Probe
from .providers.registry import ProviderRegistry

PROBE_TIMEOUT_S = 2.0


async def _timed(probe: Probe) -> DependencyStatus:
    t0 = time.perf_counter()
    try:
        return await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
    except TimeoutError:
        return DependencyStatus("down", round((time.perf_counter() - t0) * 1000, 2), "timed out")
    except Exception as exc:
        return DependencyStatus("down", round((time.perf_counter() - t0) * 1000, 2), type(exc).__name__)


def index_probe(index: ExampleIndex) -> Probe:
    async def probe() -> DependencyStatus:
        h = await index.health()
        return DependencyStatus("up" if h.ok else "down", h.latency_ms, f"{index.kind}: {h.detail}")

    return probe


def cache_probe(cache: KeyValueCache | None) -> Probe:
    async def probe() -> DependencyStatus:
        if cache is None:
            return DependencyStatus("disabled", detail="cache disabled")
        ms = await cache.ping()
        return DependencyStatus("up", round(ms, 2), cache.kind)

    return probe


def providers_probe(catalog: Catalog, providers: ProviderRegistry) -> Probe:
    async def probe() -> DependencyStatus:
        missing = []
        for m in catalog.enabled():
            try:
                providers.for_model(m)
            except Exception as exc:
                missing.append(f"{m.id}: {getattr(exc, 'message', type(exc).__name__)}")
        enabled = len(catalog.enabled())
        if not missing:
            return DependencyStatus("up", 0.0, f"{enabled} models configured")
        return DependencyStatus("down" if len(missing) == enabled else "degraded", 0.0, "; ".join(missing))

    return probe


def _failing_protocols(detail: str) -> str:
    """' (REST failing)', ' (gRPC failing)' or '' from a probe's detail: which side of Weaviate
    fails, without the hosts (readiness is anonymous)."""
    failing = re.findall(r"\b(REST|gRPC) \S+(?: \(TLS\))? failing", detail)
    return f" ({' and '.join(failing)} failing)" if failing else ""


def overall(statuses: dict[str, DependencyStatus]) -> str:
    if any(s.status == "down" and s.critical for s in statuses.values()):
        return "down"
    if any(s.status in ("down", "degraded") for s in statuses.values()):
        return "degraded"
    return "ok"


Details = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HealthChecks:
    probes: Mapping[str, Probe]
    details: Details | None = None  # extra sections of the detailed report (the backup check)
    config_problems: tuple[str, ...] = ()  # settings that keep the router from serving
    started_at: float = field(default_factory=time.time)

    async def check_all(self) -> dict[str, DependencyStatus]:
        results = await asyncio.gather(*(_timed(p) for p in self.probes.values()))
        out = dict(zip(self.probes.keys(), results, strict=True))
        for name, st in out.items():
            if st.status != "disabled":
                DEPENDENCY_UP.labels(name).set(1 if st.status == "up" else 0)
        return out

    async def report(self) -> dict[str, Any]:
        statuses = await self.check_all()
        report: dict[str, Any] = {
            "status": overall(statuses),
            "uptime_s": round(time.time() - self.started_at, 1),
            "dependencies": {k: asdict(v) for k, v in statuses.items()},
        }
        if self.details is not None:
            report.update(await self.details())
        return report

    async def readiness(self) -> tuple[str, list[str]]:
        statuses = await self.check_all()
        problems = [
            f"{name}: {st.status}{_failing_protocols(st.detail)}"
            for name, st in statuses.items()
            if st.status in ("down", "degraded")
        ]
        problems += list(self.config_problems)
        return ("down" if self.config_problems else overall(statuses)), problems
