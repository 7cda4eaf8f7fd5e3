"""Prometheus metrics, all prefixed llm_router_.

With several worker processes (FUNCTIONS_WORKER_PROCESS_COUNT > 1) prometheus_client's
multiprocess mode is used: PROMETHEUS_MULTIPROC_DIR must point at a directory shared by the
workers, and /metrics aggregates it (see render()).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

_MS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

REQUESTS = Counter(
    "llm_router_requests_total",
    "Requests answered, by chosen model, policy, HTTP status and cache result.",
    ["model", "policy", "status", "cache"],
)
REQUEST_MS = Histogram("llm_router_request_duration_ms", "Whole request duration (ms).", ["route"], buckets=_MS_BUCKETS)
OVERHEAD_MS = Histogram(
    "llm_router_overhead_duration_ms",
    "Time the router adds on top of the upstream call (ms).",
    buckets=_MS_BUCKETS,
)
DECISION_MS = Histogram("llm_router_decision_duration_ms", "Routing decision time (ms).", buckets=_MS_BUCKETS)
UPSTREAM_MS = Histogram(
    "llm_router_upstream_duration_ms", "Upstream model call duration (ms).", ["model"], buckets=_MS_BUCKETS
)
TOKENS = Counter("llm_router_tokens_total", "Tokens by model and direction.", ["model", "direction"])
COST_USD = Counter("llm_router_cost_usd_total", "Spend in USD by model.", ["model"])
FALLBACKS = Counter(
    "llm_router_fallbacks_total", "Fallbacks from one model to the next.", ["from_model", "to_model", "reason"]
)
RETRIES = Counter("llm_router_retries_total", "Retries of the same model.", ["model", "reason"])
UPSTREAM_ERRORS = Counter(
    "llm_router_upstream_errors_total", "Upstream failures by model and reason.", ["model", "reason"]
)
CIRCUIT_STATE = Gauge(
    "llm_router_circuit_state",
    "Circuit state by model: 0 closed, 1 half-open, 2 open.",
    ["model"],
    multiprocess_mode="max",
)
DEPENDENCY_UP = Gauge(
    "llm_router_dependency_up", "1 when the dependency answers, else 0.", ["dependency"], multiprocess_mode="min"
)
BACKUP_AGE_HOURS = Gauge(
    "llm_router_backup_age_hours",
    "Age of the newest successful Weaviate backup (hours; -1 when none).",
    multiprocess_mode="max",
)
JOBS = Counter("llm_router_jobs_total", "Async jobs reaching a status.", ["status"])
LOG_ROWS_DROPPED = Counter("llm_router_log_rows_dropped_total", "Request-log rows dropped because the buffer was full.")
CACHE = Counter("llm_router_cache_total", "Cache lookups by kind and result.", ["kind", "result"])
QUOTA_REJECTIONS = Counter("llm_router_quota_rejections_total", "Requests refused by a quota.", ["limit"])

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


LOW_CONFIDENCE = Counter(
    "llm_router_low_confidence_decisions_total",
    "Routing decisions whose confidence was below the router's calibrated level (the labelled "
    "examples hold nothing close to the prompt), by tenant and policy.",
    ["tenant", "policy"],
)


def count_low_confidence(tenant: str | None, policy: str, low_confidence: bool) -> None:
    """Call once per routing decision (the service, after Router.decide): counts the decisions
    the router was not confident about, so operators see the traffic it does not understand yet."""
    if low_confidence:
        LOW_CONFIDENCE.labels(tenant=tenant or "-", policy=policy).inc()


TENANT_PRIOR_FITS = Counter(
    "llm_router_tenant_prior_fits_total",
    "Fits of a tenant's own prior (routing/tenant_prior.py), by outcome: fitted, too_few_labels "
    "(no model has 120 labels yet), failed (the index could not be read; the last fit stays).",
    ["outcome"],
)


def count_tenant_prior_fit(outcome: str) -> None:
    TENANT_PRIOR_FITS.labels(outcome=outcome).inc()


TENANT_SPACES = Counter(
    "llm_router_tenant_space_choices_total",
    "Which space a tenant's own neighbours are searched in after a fit of its prior "
    "(routing/tenant_space.py): own (an encoder fitted on its prompts) or shared (the index's).",
    ["space"],
)


def count_tenant_space(space: str) -> None:
    TENANT_SPACES.labels(space=space).inc()


TENANT_SPACES_HELD = Gauge(
    "llm_router_tenant_spaces_held",
    "Tenants holding a space of their own after the last fit, summed over live processes (each at most 16).",
    multiprocess_mode="livesum",
)
TENANT_SPACE_BYTES = Gauge(
    "llm_router_tenant_space_bytes",
    "Memory the tenants' own spaces hold (TenantSpace.nbytes), summed over live processes (each within "
    "TENANT_SPACES_MB).",
    multiprocess_mode="livesum",
)
TENANT_SPACE_DROPS = Counter(
    "llm_router_tenant_space_drops_total",
    "Spaces dropped, least recently used first, to stay within 16 spaces and TENANT_SPACES_MB: those "
    "tenants' neighbours are searched in the shared space until their next fit chooses again.",
)


def record_tenant_spaces(held: int, held_bytes: int, dropped: int) -> None:
    TENANT_SPACES_HELD.set(held)
    TENANT_SPACE_BYTES.set(held_bytes)
    TENANT_SPACE_DROPS.inc(dropped)


DEAD_LETTERS = Counter(
    "llm_router_dead_letters_total",
    "Rows the database refused, moved to the dead_letters table instead of blocking their batch, by kind.",
    ["kind"],
)
LOG_BACKLOG = Gauge(
    "llm_router_log_backlog_rows",
    "Request-log rows waiting to be written (buffered or in flight).",
    multiprocess_mode="livesum",
)
