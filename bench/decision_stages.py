"""Where a routing decision's time goes, step by step, hot and cache-cold, in one process.

Builds the router as the local host does (shipped catalog, encoder state, starter examples,
difficulty prior, typicality floor), then decides the routing table's prompts
(tests/data/everyday_and_hard_prompts.csv) round after round, each step wrapped in a timer. With
`--evict-mb N` a buffer of N MB is read and written before every decision: at c=1 the serving process
runs a whole request's other code and data between two decisions, and 48 MB (more than this
machine's L3) reproduces the decision times its histogram shows (docs/performance.md).

    OPENBLAS_NUM_THREADS=1 python -m bench.decision_stages [--evict-mb 48] [--rounds 400] [--tenant acme]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.composition.assemble import build_local_router
from shared.config import Settings
from shared.routing import router as router_module
from shared.routing.request import RoutingRequest
from shared.routing.router import Router

TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "everyday_and_hard_prompts.csv"
WARMUP = 100


def timed(times: dict[str, list[float]], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if asyncio.iscoroutinefunction(fn):

        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                times.setdefault(label, []).append(time.perf_counter() - t0)

        return wrapped_async

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.setdefault(label, []).append(time.perf_counter() - t0)

    return wrapped


def instrument(router: Router, times: dict[str, list[float]]) -> None:
    """Wrap each step of Router.decide in a timer (this process only; nothing is replaced)."""
    steps: list[tuple[object, str, str]] = [
        (router, "encode", "encode"),
        (router.index, "search", "search (shared examples)"),
        (router.index, "search_own", "search (tenant's own)"),
        (router, "_predict", "estimate"),
        (router, "_confidence", "confidence"),
        (router, "_atypical", "typicality"),
        (router_module, "rank", "rank"),
    ]
    if router.difficulty is not None:
        steps.append((router.difficulty, "predict", "difficulty prior"))
    for owner, name, label in steps:
        if hasattr(owner, name):
            object.__setattr__(owner, name, timed(times, label, getattr(owner, name)))


async def measure(evict_mb: int, rounds: int, tenant: str | None) -> None:
    router = await build_local_router(Settings())
    with TABLE.open(encoding="utf-8", newline="") as fh:
        prompts = [row["prompt"] for row in csv.DictReader(fh)]
    times: dict[str, list[float]] = {}
    instrument(router, times)
    evict = np.ones(evict_mb * 1024 * 1024 // 8) if evict_mb else None
    totals = []
    for i in range(WARMUP + rounds):
        if evict is not None:
            evict[::8] += 1.0  # one write per cache line: the buffer replaces what the caches held
        t0 = time.perf_counter()
        await router.decide(RoutingRequest(prompt=prompts[i % len(prompts)], policy="balanced", tenant=tenant))
        totals.append(time.perf_counter() - t0)
        if i == WARMUP - 1:
            times.clear()
            totals.clear()
    state = f"{evict_mb} MB evicted before each decision" if evict_mb else "hot (nothing evicted)"
    print(f"decision, {state}, {rounds} decisions over {len(prompts)} prompts (p50 / mean, ms)")
    print(f"  {'whole decision':<26} {statistics.median(totals) * 1e3:7.3f} {statistics.mean(totals) * 1e3:7.3f}")
    for label, values in times.items():
        print(f"  {label:<26} {statistics.median(values) * 1e3:7.3f} {statistics.mean(values) * 1e3:7.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decision_stages", description=__doc__.splitlines()[0])
    parser.add_argument("--evict-mb", type=int, default=0, help="MB of memory touched before each decision")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--tenant", default=None, help="decide for this tenant (a second, tenant-only search)")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.evict_mb, args.rounds, args.tenant))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
