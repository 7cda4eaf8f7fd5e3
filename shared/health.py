"""Health of every dependency, for /api/v1/health (detailed, Ops) and /health/ready (anonymous).

A probe is a coroutine returning a DependencyStatus; backends register theirs in
`ctx.extras["health_probes"]` (name -> probe) when bootstrap wires them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .metrics import DEPENDENCY_UP

if TYPE_CHECKING:
    from .context import AppContext


@dataclass
class DependencyStatus:
    status: str  # up | down | degraded | disabled
    latency_ms: float | None = None
    detail: str = ""
    critical: bool = False  # down here means the router cannot serve at all


Probe = Callable[[], Awaitable[DependencyStatus]]
PROBE_TIMEOUT_S = 2.0


async def _timed(probe: Probe) -> DependencyStatus:
    t0 = time.perf_counter()
    try:
        return await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
    except TimeoutError:
        return DependencyStatus("down", round((time.perf_counter() - t0) * 1000, 2), "timed out")
    except Exception as exc:
        return DependencyStatus("down", round((time.perf_counter() - t0) * 1000, 2), type(exc).__name__)


def _probes(ctx: AppContext) -> dict[str, Probe]:
    async def index() -> DependencyStatus:
        h = await ctx.index.health()
        return DependencyStatus("up" if h.ok else "down", h.latency_ms, f"{ctx.index.kind}: {h.detail}")

    async def cache() -> DependencyStatus:
        if ctx.cache is None:
            return DependencyStatus("disabled", detail="cache disabled")
        ms = await ctx.cache.ping()
        return DependencyStatus("up", round(ms, 2), ctx.cache.kind)

    async def providers() -> DependencyStatus:
        missing = []
        for m in ctx.catalog.enabled():
            try:
                ctx.providers.for_model(m)
            except Exception as exc:
                missing.append(f"{m.id}: {getattr(exc, 'message', type(exc).__name__)}")
        if not missing:
            return DependencyStatus("up", 0.0, f"{len(ctx.catalog.enabled())} models configured")
        enabled = len(ctx.catalog.enabled())
        status = "down" if len(missing) == enabled else "degraded"
        return DependencyStatus(status, 0.0, "; ".join(missing))

    probes: dict[str, Probe] = {"index": index, "cache": cache, "providers": providers}
    probes.update(ctx.extras.get("health_probes", {}))
    return probes


async def check_all(ctx: AppContext) -> dict[str, DependencyStatus]:
    probes = _probes(ctx)
    results = await asyncio.gather(*(_timed(p) for p in probes.values()))
    out = dict(zip(probes.keys(), results, strict=True))
    for name, st in out.items():
        if st.status != "disabled":
            DEPENDENCY_UP.labels(name).set(1 if st.status == "up" else 0)
    return out


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


async def health_report(ctx: AppContext) -> dict[str, Any]:
    statuses = await check_all(ctx)
    report: dict[str, Any] = {
        "status": overall(statuses),
        "uptime_s": round(time.time() - ctx.started_at, 1),
        "dependencies": {k: asdict(v) for k, v in statuses.items()},
    }
    extra = ctx.extras.get("health_details")
    if extra is not None:
        report.update(await extra())
    return report


async def readiness(ctx: AppContext) -> tuple[str, list[str]]:
    statuses = await check_all(ctx)
    problems = [
        f"{name}: {st.status}{_failing_protocols(st.detail)}"
        for name, st in statuses.items()
        if st.status in ("down", "degraded")
    ]
    from .preflight import config_problems

    found = [*ctx.extras.get("config_problems", []), *config_problems(ctx.settings)]
    problems += found
    status = overall(statuses)
    if found:
        status = "down"
    return status, problems
