"""Production wiring: which backend serves each concept, chosen from settings, and nowhere else.

- secrets: Key Vault (KEY_VAULT_URL) resolves secrets into settings before anything else;
- request log / usage / feedback / jobs / backup checks: PostgreSQL (DATABASE_URL);
- cache, quotas, circuit state: Redis (REDIS_URL), else in-process memory;
- example index: Weaviate (WEAVIATE_URL), else the in-process LocalIndex;
- auth: Entra ID JWKS and/or HS256 service tokens (AUTH_ENABLED);
- job queue: Azure Service Bus (ServiceBusConnection), else the in-process bus.
Each wire_* function fills its part of Parts. None of them fails the start because a dependency
is down: the router serves and readiness says what is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from ..allocator import large_blocks_from_the_os
from ..auth.authenticator import build_authenticator, check_auth_settings
from ..auth.service_tokens import service_secret
from ..backups import health_details
from ..cache.base import CacheUnavailable
from ..cache.embeddings import CachedEncoder
from ..cache.memory import MemoryCache
from ..cache.redis import RedisCache
from ..circuit.redis import RedisCircuitBreaker
from ..config import Settings, secret_value
from ..encoders.base import AsyncEncoder
from ..errors import ProviderNotConfigured
from ..examples.transfer import encode
from ..jobs.service import JobService
from ..keyvault import load_secrets, reference_problems
from ..probe import DependencyStatus
from ..providers.registry import ProviderRegistry
from ..providers.vertex_credentials import project_and_credentials
from ..queue.base import JobQueue
from ..queue.local import get_local_bus
from ..queue.servicebus_settings import configured as servicebus_configured
from ..quota import MemoryQuota, QuotaLimits, RedisQuota
from ..routing.predictor import outcome_priors
from ..shadow.budget import MemoryShadowBudget, RedisShadowBudget
from ..store.backup_checks import BackupCheckStore, MemoryBackupCheckStore, PostgresBackupCheckStore
from ..store.db import Database
from ..store.dead_letters import write_backlog_probe
from ..store.feedback import FeedbackStore, PostgresFeedbackSource
from ..store.job_store import JobStore, MemoryJobStore, PostgresJobStore
from ..store.request_log import PostgresRequestLog
from ..store.usage import UsageStore
from ..store.verdicts import PostgresVerdicts
from ..telemetry import configure_tracing
from .assemble import Parts, assemble, build_encoder, load_starter
from .services import Services

log = logging.getLogger(__name__)


async def wire_store(settings: Settings, parts: Parts) -> Database | None:
    """PostgreSQL behind the request log, usage, feedback, jobs and backup checks. Postgres being
    down never stops the app: the pool opens without waiting, migrations are retried by the log
    writer, rows wait in its buffer, and the `postgres` probe reports down (readiness: degraded)."""
    url = secret_value(settings.database_url)
    if not settings.database_enabled or url is None:
        if settings.database_enabled:
            log.warning("DATABASE_URL is not set: the request log, usage and jobs stay in memory")
        return None
    db = Database(url, max_size=settings.db_pool_max)
    await db.open()
    parts.closers.append(db.close)
    try:
        applied = await db.migrate()
        if applied:
            log.info("database migrations applied: %s", applied)
    except Exception as exc:
        log.warning("postgres unavailable at start (%s): serving anyway, log rows buffered", type(exc).__name__)
    writer = PostgresRequestLog(
        db,
        buffer_max=settings.log_buffer_max,
        batch_size=settings.log_batch_size,
        flush_interval_s=settings.log_flush_interval_s,
    )
    writer.start()
    parts.request_log = writer
    parts.usage = UsageStore(db, writer)
    parts.feedback = FeedbackStore(db, writer)
    parts.feedback_source = PostgresFeedbackSource(db)
    parts.verdicts = PostgresVerdicts(db)
    backlog = write_backlog_probe(
        writer,
        writer.dead_letters,
        backlog_max=settings.log_backlog_ready_max,
        dead_letters_max=settings.dead_letters_ready_max,
    )
    parts.probes = {**parts.probes, "postgres": db.probe, "request_log": backlog}
    return db


def wire_vertex(settings: Settings, parts: Parts) -> Any:
    """One set of Google credentials per process (a JSON key, or workload identity federation from
    the app's managed identity), shared by the Vertex provider, the OpenAI-compatible Vertex
    endpoint and the Vertex encoder, so one token chain runs, not three."""
    if not settings.google_cloud_project_id:
        return None
    try:
        _, credentials = project_and_credentials(settings)
    except ProviderNotConfigured as exc:
        # the models say so when called, and the providers probe reports it
        log.error("Vertex AI credentials: %s", exc.message)
        return None
    parts.providers = ProviderRegistry(settings, vertex_credentials=credentials)
    return credentials


async def wire_cache(settings: Settings, parts: Parts, vertex_credentials: Any = None) -> None:
    """Redis (REDIS_URL, `rediss://` for TLS) for the response, semantic and embedding caches, the
    quotas and the circuit state; without it the in-process memory cache. A Redis outage is
    bypassed per request, and the `cache` probe reports it (readiness: degraded)."""
    redis_url = secret_value(settings.redis_url)
    if redis_url:
        cache = RedisCache(redis_url)
        parts.cache = cache
        parts.circuit = RedisCircuitBreaker(cache.client)  # every replica shares circuit state
        try:
            await cache.ping()
        except CacheUnavailable as exc:
            log.warning("redis unavailable at start (%s): the cache is bypassed until it answers", exc)
    else:
        parts.cache = MemoryCache(max_bytes=settings.cache_max_bytes)  # named here so a remote encoder can share it
    if settings.encoder == "vertex":
        encoder = build_encoder(settings, vertex_credentials=vertex_credentials)
        if isinstance(encoder, AsyncEncoder):
            parts.encoder = CachedEncoder(encoder, parts.cache, settings.embedding_cache_ttl_s)


async def wire_index(settings: Settings, parts: Parts, db: Database | None) -> None:
    if not settings.weaviate_url:
        return
    # weaviate-client (~20-35 MB with its gRPC stubs) only when WEAVIATE_URL names an index
    from ..index.weaviate import WeaviateIndex
    from ..index.weaviate_backups import BackupChecker

    encoder = parts.encoder or build_encoder(settings)
    parts.encoder = encoder
    index = WeaviateIndex.from_settings(settings, dim=encoder.dim, encoder_name=encoder.name)
    starter = load_starter(settings)
    parts.index = index
    parts.priors = outcome_priors([ex.outcomes for ex in starter])
    vectors = (lambda: encode(encoder, [ex.content for ex in starter])) if settings.weaviate_seed_examples else None
    await index.seed_when_created(starter, vectors)

    async def weaviate_probe() -> DependencyStatus:
        h = await index.health()
        if h.ok:
            return DependencyStatus("up", h.latency_ms, f"weaviate: {h.detail}")
        return DependencyStatus("degraded", h.latency_ms, f"weaviate: {h.detail}; routing on priors")

    parts.probes = {**parts.probes, "index": weaviate_probe}
    store: BackupCheckStore = PostgresBackupCheckStore(db) if db is not None else MemoryBackupCheckStore()
    parts.backups = BackupChecker.from_settings(settings, index.client, store)
    parts.health_details = health_details(store)


async def wire_auth(settings: Settings, parts: Parts) -> None:
    check_auth_settings(settings)
    parts.config_problems = [*parts.config_problems, *reference_problems(settings)]
    if settings.auth_enabled:
        parts.authenticator = build_authenticator(settings, service_secret(settings))
    limits = QuotaLimits.from_settings(settings)
    # quotas share the cache's Redis client: one pool, with its TLS settings and short timeouts
    # (it is closed with the cache)
    cache = parts.cache
    parts.quota = RedisQuota(cache.client, limits) if isinstance(cache, RedisCache) else MemoryQuota(limits)
    # the shadow budget per tenant and day (shared/shadow/budget.py) is kept like the quotas
    usd = settings.shadow_usd_per_day
    parts.shadow_budget = (
        RedisShadowBudget(cache.client, usd) if isinstance(cache, RedisCache) else MemoryShadowBudget(usd)
    )


async def wire_jobs(settings: Settings, parts: Parts, db: Database | None) -> None:
    queue: JobQueue
    if servicebus_configured(settings):
        # azure-servicebus (~10 MB, with its AMQP stack) only when Service Bus is configured
        from ..queue.servicebus import ServiceBusJobQueue

        sb = ServiceBusJobQueue.from_settings(settings)
        parts.closers.append(sb.close)
        queue = sb
    else:
        bus = get_local_bus()
        bus.max_delivery_count = settings.service_bus_max_delivery_count
        queue = bus
    store: JobStore = PostgresJobStore(db) if db is not None else MemoryJobStore()
    service = JobService(settings, store, queue)
    if queue.kind == "local":
        # a poison message is recorded on its job, never silently dropped
        get_local_bus().on_dead_letter(service.on_local_dead_letter)
    parts.jobs = service


async def build_services(settings: Settings) -> Services:
    """The production Services: secrets first, then each concept's backend."""
    large_blocks_from_the_os()  # process-wide: large prompts must not fragment the heap (allocator.py)
    settings = await load_secrets(settings)
    configure_tracing(settings)
    parts = Parts()
    db = await wire_store(settings, parts)
    vertex_credentials = wire_vertex(settings, parts)
    await wire_cache(settings, parts, vertex_credentials)
    await wire_index(settings, parts, db)
    await wire_auth(settings, parts)
    await wire_jobs(settings, parts, db)
    return await assemble(settings, parts)
