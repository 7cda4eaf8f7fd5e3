"""The speed harness (goals and history: docs/performance.md), all in one run on loopback:

fake upstream -> a bare pass-through proxy on the same server stack (bench/floor.py) -> the
router's local host on the full path -> LiteLLM's proxy, each loaded with wrk at c=1 (latency) and c=32 (throughput); plus the decision endpoint over a
trivial one, the router's resident memory, and streaming time to first byte.

    python -m bench.run [--quick | --smoke] [--skip-litellm] [--profile [CONNECTIONS]] [--profile-endpoint route|stream]

`--smoke` (make bench-smoke, run by CI) is a second of each load without LiteLLM: it proves the
harness runs and that every measured request was answered, and exits 1 otherwise.

Prints a table with the goals' ratios and writes bench/results/bench-<time>.json (git-ignored).
Every process it starts it stops, and every load is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.embedded import free_port
from shared.config import PROJECT_DIR

from . import litellm_peer, profile, ttfb, wrk
from .procs import Proc, processes_mentioning, rss_mb_of, started, stop_strays

RESULTS = PROJECT_DIR / "bench" / "results"
MESSAGES = [{"role": "user", "content": "What is 2 + 2? Answer with one number."}]
TENANT = "bench"
# generous quotas: the quota check stays on the measured path without refusing the load
QUOTA_ENV = {
    "QUOTA_REQUESTS_PER_MINUTE": "1000000000",
    "QUOTA_TOKENS_PER_DAY": "1000000000000",
    "QUOTA_USD_PER_MONTH": "1000000000",
}
# backends the bench must not pick up from the caller's shell
UNSET = ("DATABASE_URL", "REDIS_URL", "WEAVIATE_URL", "KEY_VAULT_URL", "APPLICATIONINSIGHTS_CONNECTION_STRING")


@dataclass(frozen=True)
class Durations:
    latency_s: int
    throughput_s: int
    warmup_s: int
    ttfb_n: int
    profile_s: int


FULL = Durations(latency_s=10, throughput_s=15, warmup_s=2, ttfb_n=300, profile_s=10)
QUICK = Durations(latency_s=3, throughput_s=4, warmup_s=1, ttfb_n=60, profile_s=5)
SMOKE = Durations(latency_s=1, throughput_s=1, warmup_s=1, ttfb_n=10, profile_s=1)

# The goals of issue #12 / the speed brief, each a ratio within one run (machines of this kind
# differ several-fold in absolute speed): value <= 1 (or >= for throughput) passes.
GOALS = {
    "added_latency_vs_litellm": 1 / 8,  # router's added latency at c=1 p50 over LiteLLM's
    "throughput_c32_vs_litellm": 10.0,  # router's req/s at c=32 over LiteLLM's
    "decision_share_of_added": 1 / 4,  # a decision (encode + search + estimate) over the added latency
    "route_over_budget": 1.0,  # /api/v1/route p50 over (2 x /health/live p50 + the decision)
    "rss_mb": 300.0,  # resident memory after the loads, starter examples loaded
    "ttfb_over_budget": 1.0,  # stream first byte over (upstream's first byte + the added latency)
}
DECISION_SAMPLES = 200


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load(
    url: str,
    script: Path | None,
    d: Durations,
    server: Proc | None = None,
    decisions: Callable[[], tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """c=1 and c=32 loads; with `server`, also the CPU it spent per answered request under each
    (its children included), which contention on a shared machine does not inflate as it does
    wall-clock throughput; with `decisions` (the server's decision-time sum and count), the mean
    decision time of the requests of each load."""
    wrk.run(url, connections=1, duration_s=d.warmup_s, script=script)
    out: dict[str, Any] = {}
    for name, connections, seconds in (("c1", 1, d.latency_s), ("c32", 32, d.throughput_s)):
        before = server.cpu_s() if server else (0.0, 0.0)
        decided = decisions() if decisions else (0.0, 0.0)
        r = wrk.run(url, connections=connections, duration_s=seconds, script=script)
        if r.non_2xx or r.socket_errors:
            log(f"warning: {url}: {r.non_2xx} non-2xx responses, {r.socket_errors} socket errors")
        out[name] = r.as_dict()
        if server and r.requests:
            after = server.cpu_s()
            out[name]["cpu_ms_per_request"] = round((after[1] - before[1]) * 1000 / r.requests, 3)
            out[name]["own_cpu_ms_per_request"] = round((after[0] - before[0]) * 1000 / r.requests, 3)
        if decisions:
            out[name]["decision_mean_ms"] = mean_decision_since(decisions, decided)
    return out


def mean_decision_since(read: Callable[[], tuple[float, float]], before: tuple[float, float]) -> float | None:
    """The mean decision time (ms) of the decisions made since `before` was read."""
    total_ms, count = (now - then for now, then in zip(read(), before, strict=True))
    return round(total_ms / count, 3) if count else None


def decision_totals(base: str, auth: dict[str, str]) -> Callable[[], tuple[float, float]]:
    """Reads the router's decision-time histogram (sum in ms, count) from /metrics."""

    def read() -> tuple[float, float]:
        req = urllib.request.Request(f"{base}/metrics", headers=auth)  # noqa: S310 - loopback URL
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            text = resp.read().decode()
        values = {"llm_router_decision_duration_ms_sum": 0.0, "llm_router_decision_duration_ms_count": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in values:
                    values[sample.name] = float(sample.value)
        return values["llm_router_decision_duration_ms_sum"], values["llm_router_decision_duration_ms_count"]

    return read


def post_json(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(  # noqa: S310 - loopback URL
        url, data=orjson.dumps(body), headers={"content-type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, headers: dict[str, str]) -> Any:
    req = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read() or b"{}")


# -- the router ---------------------------------------------------------------------------------
def write_catalog(path: Path, upstream_base_url: str) -> Path:
    raw = yaml.safe_load((PROJECT_DIR / "examples" / "catalog.local.yaml").read_text())
    for model in raw["models"]:
        model["base_url"] = upstream_base_url
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def mint_token(secret: str, roles: list[str]) -> str:
    """With the project's CLI; PyJWT directly (the same claims) if the CLI cannot."""
    argv = [sys.executable, "-m", "shared.cli", "token", "--tenant", TENANT, "--ttl", "2h"]
    for role in roles:
        argv += ["--role", role]
    env = {**os.environ, "JWT_SECRET": secret}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PROJECT_DIR, check=False)
    token = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    if token.count(".") == 2:
        return token
    import jwt

    names = {"invoke": "LLMRouter.Invoke", "ops": "LLMRouter.Ops", "admin": "LLMRouter.Admin"}
    now = int(time.time())
    claims = {
        "iss": os.environ.get("JWT_ISSUER", "llm-router"),
        "aud": os.environ.get("JWT_AUDIENCE", "llm-router"),
        "sub": f"service:{TENANT}",
        "tenant": TENANT,
        "roles": [names[r] for r in roles],
        "iat": now,
        "exp": now + 7200,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def router_env(catalog: Path, data_dir: Path, secret: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "MODEL_CATALOG_PATH": str(catalog),
        "CACHE_ENABLED": "false",
        "AUTH_ENABLED": "true",
        "JWT_SECRET": secret,
        "DATABASE_ENABLED": "true",
        "EMBEDDED_DATA_DIR": str(data_dir),
        "LOCAL_LLM_API_KEY": "sk-bench-not-a-secret",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **QUOTA_ENV,
    }
    env.update({k: None for k in UNSET})
    return env


def request_log_state(health: Any) -> str:
    deps = health.get("dependencies") or health.get("checks") or {} if isinstance(health, dict) else {}
    for name, dep in deps.items() if isinstance(deps, dict) else []:
        if any(w in name.lower() for w in ("database", "postgres", "store", "request_log")):
            status = dep.get("status") if isinstance(dep, dict) else dep
            return f"postgres ({name}: {status})"
    return "in memory: no database dependency reported (wire_store not wired yet?)"


@dataclass(frozen=True)
class Profiling:
    """py-spy under load: how many connections (0: no profile) on which endpoint."""

    connections: int = 0
    endpoint: str = "chat"

    @property
    def path(self) -> str:
        return "/api/v1/route" if self.endpoint == "route" else "/api/v1/chat/completions"

    def body(self, chat: dict[str, Any]) -> dict[str, Any]:
        """The request body the profiled load sends."""
        return {**chat, "stream": True} if self.endpoint == "stream" else chat


def bench_router(upstream_url: str, tmp: Path, d: Durations, profiling: Profiling, stamp: str) -> dict[str, Any]:
    secret = secrets.token_urlsafe(48)
    catalog = write_catalog(tmp / "catalog.yaml", upstream_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "devtools.localhost", "--port", str(port)]
    out: dict[str, Any] = {}
    pgdata = tmp / "pgdata"
    try:
        with started("router", argv, tmp / "router.log", router_env(catalog, pgdata, secret)) as proc:
            _bench_router(proc, base, port, tmp, d, profiling, stamp, secret, pgdata, out)
    finally:
        strays = stop_strays(str(pgdata))
        if strays:
            log(f"stopped {strays} embedded PostgreSQL processes the router left running")
    return out


def _bench_router(
    proc: Proc,
    base: str,
    port: int,
    tmp: Path,
    d: Durations,
    profiling: Profiling,
    stamp: str,
    secret: str,
    pgdata: Path,
    out: dict[str, Any],
) -> None:
    t0 = time.perf_counter()
    proc.wait_http(f"{base}/health/ready", timeout_s=120)
    out["startup_s"] = round(time.perf_counter() - t0, 2)
    token = mint_token(secret, ["invoke"])
    auth = {"Authorization": f"Bearer {token}"}
    body = {"model": "auto", "messages": MESSAGES}
    status, answer = post_json(f"{base}/api/v1/chat/completions", body, auth)
    if status != 200:
        raise RuntimeError(f"router answered {status}: {answer[:300]!r}\n{proc.tail()}")
    out["chosen_model"] = orjson.loads(answer).get("model")
    health = get_json(f"{base}/api/v1/health", {"Authorization": f"Bearer {mint_token(secret, ['ops'])}"})
    out["request_log"] = request_log_state(health)
    out["dependencies"] = health.get("dependencies", health) if isinstance(health, dict) else health
    out["rss_mb_idle"] = round(proc.rss_mb(), 1)
    log(f"router up in {out['startup_s']} s, RSS {out['rss_mb_idle']} MB, request log: {out['request_log']}")

    chat_script = wrk.post_script(tmp / "router_chat.lua", body, auth)
    route_script = wrk.post_script(tmp / "router_route.lua", body, auth)
    log("router: chat completions, c=1 then c=32")
    decided = decision_totals(base, {"Authorization": f"Bearer {mint_token(secret, ['ops'])}"})
    out["chat"] = load(f"{base}/api/v1/chat/completions", chat_script, d, proc, decided)
    log("router: /api/v1/route and /health/live at c=1")
    wrk.run(f"{base}/api/v1/route", connections=1, duration_s=d.warmup_s, script=route_script)
    before = decided()
    route = wrk.run(f"{base}/api/v1/route", connections=1, duration_s=d.latency_s, script=route_script)
    out["route_c1"] = {**route.as_dict(), "decision_mean_ms": mean_decision_since(decided, before)}
    out["live_c1"] = wrk.run(f"{base}/health/live", connections=1, duration_s=d.latency_s).as_dict()
    out["decision_ms"] = decision_times(f"{base}/api/v1/route", body, auth, d.ttfb_n)
    log("router: streaming time to first byte")
    stream_body = {**body, "stream": True}
    out["ttfb"] = ttfb.measure_sync(
        "127.0.0.1", port, "/api/v1/chat/completions", stream_body, n=d.ttfb_n, headers=auth
    )
    out["rss_mb"] = round(proc.rss_mb(), 1)
    out["postgres_rss_mb"] = round(rss_mb_of(processes_mentioning(str(pgdata))), 1)
    if profiling.connections:
        script = wrk.post_script(tmp / "router_profiled.lua", profiling.body(body), auth)
        out["profile"] = profile_router(proc, base, script, d, stamp, profiling)


def decision_times(url: str, body: dict[str, Any], auth: dict[str, str], n: int) -> list[float]:
    """The router's own decision time (encode + search + estimate), as /api/v1/route reports it."""
    times = []
    for _ in range(min(n, DECISION_SAMPLES)):
        status, raw = post_json(url, body, auth)
        if status == 200:
            times.append(float(orjson.loads(raw)["decision_ms"]))
    return times


def profile_router(
    proc: Proc, base: str, script: Path, d: Durations, stamp: str, profiling: Profiling
) -> dict[str, Any] | None:
    raw = RESULTS / f"profile-{stamp}.txt"
    path, connections = profiling.path, profiling.connections
    log(f"router: profiling {d.profile_s} s of {path} at c={connections} with py-spy -> {raw.relative_to(PROJECT_DIR)}")
    sampler = profile.record(proc.pid, raw, d.profile_s + 1)
    if sampler is None:
        return None
    try:
        time.sleep(0.5)
        wrk.run(f"{base}{path}", connections=connections, duration_s=d.profile_s, script=script)
        _, err = sampler.communicate(timeout=60)
    finally:
        if sampler.poll() is None:
            sampler.terminate()
            sampler.wait(10)
    if not raw.exists():
        log(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
        return None
    summary = profile.summarise(raw)
    profile.print_summary(summary)
    return {"raw": str(raw.relative_to(PROJECT_DIR)), **summary}


# -- the proxy floor --------------------------------------------------------------------------------
def bench_floor(upstream_url: str, tmp: Path, d: Durations) -> dict[str, Any]:
    """A bare pass-through on the router's server stack (bench/floor.py): what being a Python
    proxy costs here before any work, the reference for how much of the budget is left."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--upstream", upstream_url]
    with started("floor", argv, tmp / "floor.log") as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/", timeout_s=30)
        log("proxy floor: chat completions, c=1 then c=32")
        body = {"model": "large", "messages": MESSAGES}
        script = wrk.post_script(tmp / "floor.lua", body)
        return {"chat": load(f"http://127.0.0.1:{port}/v1/chat/completions", script, d, proc)}


# -- the peer -------------------------------------------------------------------------------------
def bench_litellm(upstream_url: str, tmp: Path, d: Durations) -> dict[str, Any]:
    version = litellm_peer.ensure_installed()
    config = litellm_peer.write_config(tmp / "litellm.yaml", upstream_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {"version": version}
    # auth on for the peer too (it refuses to start without a master key): like for like
    master_key = "sk-" + secrets.token_hex(32)
    env: dict[str, str | None] = {**litellm_peer.ENV, "LITELLM_MASTER_KEY": master_key}
    auth = {"Authorization": f"Bearer {master_key}"}
    with started("litellm", litellm_peer.argv(config, port), tmp / "litellm.log", env) as proc:
        proc.wait_http(f"{base}/health/liveliness", timeout_s=180)
        body = {"model": litellm_peer.MODEL_NAME, "messages": MESSAGES}
        status, answer = post_json(f"{base}/v1/chat/completions", body, auth)
        if status != 200:
            raise RuntimeError(f"litellm answered {status}: {answer[:300]!r}\n{proc.tail()}")
        log(f"litellm {version}: chat completions, c=1 then c=32")
        out["chat"] = load(f"{base}/v1/chat/completions", wrk.post_script(tmp / "litellm.lua", body, auth), d, proc)
        out["rss_mb"] = round(proc.rss_mb() + proc.children_rss_mb(), 1)
    return out


# -- the report -------------------------------------------------------------------------------------
def ratios(res: dict[str, Any]) -> dict[str, Any]:
    up, router = res["upstream"], res["router"]
    lite = res.get("litellm")
    added = router["chat"]["c1"]["p50_ms"] - up["chat"]["c1"]["p50_ms"]
    # the decisions of the very requests measured (the server's histogram over each load); the p50
    # of sequential /api/v1/route calls from a Python client, between which the caches go cold,
    # is kept beside it
    decisions = sorted(router.get("decision_ms") or [0.0])
    sequential = decisions[len(decisions) // 2]
    decision = router["chat"]["c1"].get("decision_mean_ms") or sequential
    route_budget = 2 * router["live_c1"]["p50_ms"] + (router["route_c1"].get("decision_mean_ms") or sequential)
    ttfb_budget = up["ttfb"]["p50_ms"] + added
    r: dict[str, Any] = {
        "added_latency_c1_p50_ms": round(added, 3),
        "decision_mean_c1_ms": round(decision, 3),
        "decision_p50_ms": round(sequential, 3),
        "decision_share_of_added": round(decision / added, 3) if added > 0 else None,
        "route_p50_ms": router["route_c1"]["p50_ms"],
        "route_budget_ms": round(route_budget, 3),
        "route_over_budget": round(router["route_c1"]["p50_ms"] / route_budget, 3),
        "rss_mb": router["rss_mb"],
        "ttfb_over_upstream_ms": round(router["ttfb"]["p50_ms"] - up["ttfb"]["p50_ms"], 3),
        "ttfb_over_budget": round(router["ttfb"]["p50_ms"] / ttfb_budget, 3) if ttfb_budget > 0 else None,
    }
    floor = res.get("floor")
    if floor:
        r["floor_added_latency_c1_p50_ms"] = round(floor["chat"]["c1"]["p50_ms"] - up["chat"]["c1"]["p50_ms"], 3)
        r["floor_cpu_ms_per_request_c32"] = floor["chat"]["c32"].get("cpu_ms_per_request")
    r["router_cpu_ms_per_request_c32"] = router["chat"]["c32"].get("cpu_ms_per_request")
    if lite:
        r["litellm_cpu_ms_per_request_c32"] = lite["chat"]["c32"].get("cpu_ms_per_request")
        lite_added = lite["chat"]["c1"]["p50_ms"] - up["chat"]["c1"]["p50_ms"]
        r["litellm_added_latency_c1_p50_ms"] = round(lite_added, 3)
        r["added_latency_vs_litellm"] = round(added / lite_added, 4) if lite_added > 0 else None
        r["throughput_c32_vs_litellm"] = round(router["chat"]["c32"]["rps"] / lite["chat"]["c32"]["rps"], 2)
    return r


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []

    def row(name: str, key: str, fmt: str, better: str, detail: str = "") -> None:
        value, goal = r.get(key), GOALS[key]
        if value is None:
            rows.append((name, "n/a", f"{better} {fmt.format(goal)}", "skipped"))
            return
        ok = value <= goal if better == "≤" else value >= goal
        rows.append((name, fmt.format(value) + detail, f"{better} {fmt.format(goal)}", "PASS" if ok else "FAIL"))

    added = f" ({r['added_latency_c1_p50_ms']:.3f} ms added"
    lite = r.get("litellm_added_latency_c1_p50_ms")
    row(
        "added latency / LiteLLM's",
        "added_latency_vs_litellm",
        "{:.3f}",
        "≤",
        added + (f" vs {lite:.3f} ms)" if lite else ")"),
    )
    row("throughput c=32 / LiteLLM's", "throughput_c32_vs_litellm", "{:.1f}x", "≥")
    row(
        "decision / added latency",
        "decision_share_of_added",
        "{:.3f}",
        "≤",
        f" (decision {r['decision_mean_c1_ms']:.3f} ms, mean over the c=1 chat load; p50 of sequential "
        f"/api/v1/route calls {r['decision_p50_ms']:.3f} ms)",
    )
    row(
        "/api/v1/route p50 / (2 x /health/live p50 + decision)",
        "route_over_budget",
        "{:.3f}",
        "≤",
        f" ({r['route_p50_ms']:.3f} / {r['route_budget_ms']:.3f} ms)",
    )
    row("router RSS after the loads", "rss_mb", "{:.0f} MB", "≤")
    row(
        "stream TTFB / (upstream's + added latency)",
        "ttfb_over_budget",
        "{:.3f}",
        "≤",
        f" (+{r['ttfb_over_upstream_ms']:.3f} ms over upstream)",
    )
    return rows


def table(res: dict[str, Any]) -> str:
    lines = [
        "| target | c=1 p50 | c=1 p99 | c=1 req/s | c=32 req/s | c=32 p50 | c=32 p99 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def add(name: str, c1: dict[str, Any], c32: dict[str, Any] | None) -> None:
        errors = c1["non_2xx"] + c1["socket_errors"] + ((c32["non_2xx"] + c32["socket_errors"]) if c32 else 0)
        lines.append(
            f"| {name} | {c1['p50_ms']:.3f} ms | {c1['p99_ms']:.3f} ms | {c1['rps']:,.0f} | "
            + (f"{c32['rps']:,.0f} | {c32['p50_ms']:.2f} ms | {c32['p99_ms']:.2f} ms" if c32 else "— | — | —")
            + f" | {errors} |"
        )

    add("upstream direct", res["upstream"]["chat"]["c1"], res["upstream"]["chat"]["c32"])
    if res.get("floor"):
        add("proxy floor (bench/floor.py)", res["floor"]["chat"]["c1"], res["floor"]["chat"]["c32"])
    add("router (chat, model auto)", res["router"]["chat"]["c1"], res["router"]["chat"]["c32"])
    if res.get("litellm"):
        add(f"LiteLLM {res['litellm']['version']} proxy", res["litellm"]["chat"]["c1"], res["litellm"]["chat"]["c32"])
    add("router POST /api/v1/route", res["router"]["route_c1"], None)
    add("router GET /health/live", res["router"]["live_c1"], None)
    lines.append("")
    lines.append(
        f"stream TTFB p50: upstream {res['upstream']['ttfb']['p50_ms']:.3f} ms, "
        f"router {res['router']['ttfb']['p50_ms']:.3f} ms (n={res['router']['ttfb']['n']})"
    )
    lines.append(
        f"router RSS: {res['router']['rss_mb_idle']:.0f} MB idle with the starter examples, "
        f"{res['router']['rss_mb']:.0f} MB after the loads (embedded PostgreSQL, separate processes: "
        f"{res['router']['postgres_rss_mb']:.0f} MB); request log: {res['router']['request_log']}"
    )
    cpu = {
        name: (res.get(key) or {}).get("chat", {}).get("c32", {})
        for name, key in (("proxy floor", "floor"), ("router", "router"), ("LiteLLM", "litellm"))
    }
    shown = [
        f"{name} {c['cpu_ms_per_request']:.2f} ms ({c['own_cpu_ms_per_request']:.2f} ms in its own process)"
        for name, c in cpu.items()
        if c.get("cpu_ms_per_request") is not None
    ]
    if shown:
        lines.append("server CPU per request at c=32, children included: " + ", ".join(shown))
    lines.append("")
    lines.append("| goal | measured | target | |")
    lines.append("|---|---|---|---|")
    for name, value, goal, verdict in verdicts(res["ratios"]):
        lines.append(f"| {name} | {value} | {goal} | {verdict} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short loads (for development; noisier)")
    parser.add_argument("--skip-litellm", action="store_true", help="do not run the LiteLLM peer")
    parser.add_argument(
        "--profile",
        nargs="?",
        type=int,
        const=32,
        default=0,
        metavar="CONNECTIONS",
        help="sample the router with py-spy under load (c=32, or the connections given: 1 for the latency path)",
    )
    parser.add_argument(
        "--profile-endpoint",
        choices=("chat", "route", "stream"),
        default="chat",
        help="what --profile loads: chat completions (default), /api/v1/route, or streamed chat completions",
    )
    parser.add_argument("--smoke", action="store_true", help="a second of each load, no LiteLLM; exit 1 on any failure")
    args = parser.parse_args(argv)
    d = SMOKE if args.smoke else QUICK if args.quick else FULL
    args.skip_litellm = args.skip_litellm or args.smoke
    wrk.ensure_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    res: dict[str, Any] = {"date": stamp, "quick": args.quick, "machine": machine(), "durations": d.__dict__}
    with tempfile.TemporaryDirectory(prefix="llm-router-bench-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        up_argv = [sys.executable, "-m", "bench.upstream", "--port", str(up_port)]
        with started("upstream", up_argv, tmp / "upstream.log") as up:
            up.wait_http(f"http://127.0.0.1:{up_port}/health", timeout_s=20, expect=404)
            upstream_url = f"http://127.0.0.1:{up_port}/v1"
            log("upstream direct: c=1 then c=32")
            body = {"model": "large", "messages": MESSAGES}
            up_script = wrk.post_script(tmp / "upstream.lua", body)
            res["upstream"] = {"chat": load(f"{upstream_url}/chat/completions", up_script, d)}
            res["upstream"]["ttfb"] = ttfb.measure_sync(
                "127.0.0.1", up_port, "/v1/chat/completions", {**body, "stream": True}, n=d.ttfb_n
            )
            res["floor"] = bench_floor(upstream_url, tmp, d)
            res["router"] = bench_router(upstream_url, tmp, d, Profiling(args.profile, args.profile_endpoint), stamp)
            if not args.skip_litellm:
                res["litellm"] = bench_litellm(upstream_url, tmp, d)
    res["ratios"] = ratios(res)
    res["goals"] = GOALS
    out = RESULTS / f"bench-{stamp}.json"
    out.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    print()
    print(
        f"LLM Router speed, {stamp} ({'smoke' if args.smoke else 'quick' if args.quick else 'full'} run), {res['machine']['cpus']} cores"
    )
    print(table(res))
    print(f"\nresults: {out.relative_to(PROJECT_DIR)}")
    problems = smoke_problems(res)
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


def smoke_problems(res: dict[str, Any]) -> list[str]:
    """What makes a run worthless whatever its timings: a load with no answers or failed ones, a
    request log that is not PostgreSQL, a stream without a first byte."""
    router = res.get("router") or {}
    loads = {
        "chat c=1": (router.get("chat") or {}).get("c1"),
        "chat c=32": (router.get("chat") or {}).get("c32"),
        "route c=1": router.get("route_c1"),
        "live c=1": router.get("live_c1"),
    }
    problems = []
    for name, r in loads.items():
        if not r or not r.get("requests"):
            problems.append(f"router {name}: no request answered")
        elif r.get("non_2xx") or r.get("socket_errors"):
            problems.append(f"router {name}: {r.get('non_2xx')} non-2xx, {r.get('socket_errors')} socket errors")
    if not str(router.get("request_log", "")).startswith("postgres (postgres: up"):
        problems.append(f"request log: {router.get('request_log')}")
    if not (router.get("ttfb") or {}).get("p50_ms"):
        problems.append("streaming: no first byte measured")
    if not router.get("decision_ms"):
        problems.append("/api/v1/route: no decision time reported")
    return problems


if __name__ == "__main__":
    sys.exit(main())
