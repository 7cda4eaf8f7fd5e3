"""A soak run: large unique prompts through the router's local host for a bounded time, sampling the
router's resident memory, to show it flat after warm-up (issue #16: 1,000 unique 110 KB prompts
once grew it by ~675 MB).

    python -m bench.soak --minutes 10 [--prompt-kb 110] [--concurrency 4] [--out soak.json]

Everything runs on loopback: the fake upstream (bench/upstream.py) and `python -m devtools.localhost`
are started here and stopped at the end, and the load stops at the deadline or after
--max-requests, whichever comes first. The caches' byte budgets are set small enough that the
warm-up fills them (what is measured is that nothing grows past them). Prints the RSS curve and
writes it as JSON (bench/results/soak-<time>.json unless --out); exits 1 when growth after
warm-up reaches --max-growth-pct or any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml

from devtools.embedded import free_port
from shared.config import PROJECT_DIR

from .procs import Proc, started, stop_strays

RESULTS = PROJECT_DIR / "bench" / "results"
MIB = 2**20
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "po", "ra", "si", "tu", "ve", "zo") for b in range(200)]
# backends the soak must not pick up from the caller's shell
UNSET = ("REDIS_URL", "WEAVIATE_URL", "KEY_VAULT_URL", "APPLICATIONINSIGHTS_CONNECTION_STRING")


@dataclass
class SoakConfig:
    duration_s: float
    warmup_s: float
    prompt_kb: int = 110
    concurrency: int = 4
    max_requests: int = 1_000_000
    cache_max_bytes: int = 1 * MIB
    prompt_max_bytes: int = 32 * MIB
    sample_every_s: float = 1.0
    database_url: str | None = None  # None: the router's embedded PostgreSQL, under a temp dir


@dataclass
class SoakResult:
    config: dict[str, Any]
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (s since start, RSS MiB, requests)
    requests: int = 0
    failures: int = 0
    failure_examples: list[str] = field(default_factory=list)
    baseline_mb: float = 0.0
    final_mb: float = 0.0
    max_after_warmup_mb: float = 0.0
    growth_pct: float = 0.0

    def summarise(self, warmup_s: float) -> None:
        after = [rss for t, rss, _ in self.samples if t >= warmup_s]
        if not after:
            return
        self.baseline_mb, self.final_mb, self.max_after_warmup_mb = after[0], after[-1], max(after)
        self.growth_pct = round(100 * (self.max_after_warmup_mb - self.baseline_mb) / self.baseline_mb, 2)


def unique_prompt(n: int, kb: int) -> str:
    rng = random.Random(n)
    words = [f"request{n}"]
    size = len(words[0])
    while size < kb * 1000:
        w = rng.choice(WORDS)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)[: kb * 1000]


def write_catalog(path: Path, upstream_base_url: str) -> Path:
    raw = yaml.safe_load((PROJECT_DIR / "examples" / "catalog.local.yaml").read_text())
    for model in raw["models"]:
        model["base_url"] = upstream_base_url
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def router_env(cfg: SoakConfig, catalog: Path, data_dir: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "MODEL_CATALOG_PATH": str(catalog),
        "ENVIRONMENT": "development",
        "AUTH_ENABLED": "false",
        "DATABASE_ENABLED": "true",
        "DATABASE_URL": cfg.database_url,
        "EMBEDDED_DATA_DIR": str(data_dir),
        "CACHE_MAX_BYTES": str(cfg.cache_max_bytes),
        "FEEDBACK_PROMPT_MAX_BYTES": str(cfg.prompt_max_bytes),
        "MAX_BODY_BYTES": str(max(1_048_576, 4 * cfg.prompt_kb * 1000)),
        "LOCAL_LLM_API_KEY": "sk-soak-not-a-secret",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "QUOTA_REQUESTS_PER_MINUTE": "1000000000",
        "QUOTA_TOKENS_PER_DAY": "1000000000000",
        "QUOTA_USD_PER_MONTH": "1000000000",
    }
    env.update({k: None for k in UNSET})
    return env


async def _load(base: str, cfg: SoakConfig, deadline: float, result: SoakResult) -> None:
    counter = iter(range(cfg.max_requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            if time.monotonic() >= deadline:
                return
            body = {
                "model": "auto",
                "temperature": 0,
                "messages": [{"role": "user", "content": unique_prompt(n, cfg.prompt_kb)}],
            }
            try:
                r = await client.post(f"{base}/api/v1/chat/completions", json=body)
                ok, detail = r.status_code == 200, f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                ok, detail = False, type(exc).__name__
            result.requests += 1
            if not ok:
                result.failures += 1
                if len(result.failure_examples) < 5:
                    result.failure_examples.append(detail)

    async with httpx.AsyncClient(timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(cfg.concurrency)))


async def _sample(proc: Proc, started_at: float, stop: asyncio.Event, cfg: SoakConfig, result: SoakResult) -> None:
    router = psutil.Process(proc.pid)
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            rss = router.memory_info().rss / MIB
            result.samples.append((round(time.monotonic() - started_at, 1), round(rss, 1), result.requests))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.sample_every_s)


async def _drive(proc: Proc, base: str, cfg: SoakConfig, result: SoakResult) -> None:
    started_at = time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(proc, started_at, stop, cfg, result))
    try:
        await _load(base, cfg, started_at + cfg.duration_s, result)
    finally:
        stop.set()
        await sampler


def run_soak(cfg: SoakConfig, log: Any = print) -> SoakResult:
    """Start the upstream and the router on loopback, load them until the deadline, stop both."""
    result = SoakResult(config=asdict(cfg))
    with tempfile.TemporaryDirectory(prefix="llm-router-soak-") as tmp_name:
        tmp = Path(tmp_name)
        up_port, port = free_port(), free_port()
        up_argv = [sys.executable, "-m", "bench.upstream", "--port", str(up_port)]
        router_argv = [sys.executable, "-m", "devtools.localhost", "--port", str(port)]
        pgdata = tmp / "data"
        try:
            with started("upstream", up_argv, tmp / "upstream.log") as up:
                up.wait_http(f"http://127.0.0.1:{up_port}/health", timeout_s=30, expect=404)
                catalog = write_catalog(tmp / "catalog.yaml", f"http://127.0.0.1:{up_port}/v1")
                with started("router", router_argv, tmp / "router.log", router_env(cfg, catalog, pgdata)) as proc:
                    base = f"http://127.0.0.1:{port}"
                    proc.wait_http(f"{base}/health/live", timeout_s=120)
                    log(f"soak: {cfg.duration_s:.0f} s of {cfg.prompt_kb} KB unique prompts, c={cfg.concurrency}")
                    asyncio.run(_drive(proc, base, cfg, result))
                    if result.failures:
                        log(proc.tail(20))
        finally:
            stop_strays(str(pgdata))
    result.summarise(cfg.warmup_s)
    return result


def curve(result: SoakResult, every_s: float = 10.0) -> str:
    lines, next_t = ["   t (s)   RSS (MiB)   requests"], 0.0
    for t, rss, n in result.samples:
        if t >= next_t:
            lines.append(f"{t:8.0f} {rss:11.1f} {n:10d}")
            next_t = t + every_s
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a fifth of the run, at least 30 s")
    parser.add_argument("--prompt-kb", type=int, default=110)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    # 1 MiB: the answer cache (one small answer per unique prompt) then fills within the warm-up;
    # at 32 MiB its 10,000-entry cap bound first and took ~10,000 requests (~9 min here) to fill
    parser.add_argument("--cache-mib", type=int, default=1, help="CACHE_MAX_BYTES in MiB")
    parser.add_argument("--prompt-store-mib", type=int, default=32, help="FEEDBACK_PROMPT_MAX_BYTES in MiB")
    parser.add_argument("--max-growth-pct", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    duration = args.minutes * 60
    warmup = args.warmup_minutes * 60 if args.warmup_minutes is not None else max(30.0, duration / 5)
    cfg = SoakConfig(
        duration_s=duration,
        warmup_s=warmup,
        prompt_kb=args.prompt_kb,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
        cache_max_bytes=args.cache_mib * MIB,
        prompt_max_bytes=args.prompt_store_mib * MIB,
    )
    result = run_soak(cfg)
    print(curve(result))
    print(
        f"requests {result.requests}, failures {result.failures}; RSS after warm-up ({warmup:.0f} s): "
        f"{result.baseline_mb:.1f} MiB, max {result.max_after_warmup_mb:.1f}, final {result.final_mb:.1f}: "
        f"growth {result.growth_pct:.2f}% (limit {args.max_growth_pct}%)"
    )
    out = args.out or RESULTS / f"soak-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(asdict(result), option=orjson.OPT_INDENT_2))
    print(f"curve written to {out}")
    return 0 if result.failures == 0 and result.growth_pct < args.max_growth_pct else 1


if __name__ == "__main__":
    sys.exit(main())
