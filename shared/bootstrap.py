"""Production wiring: which backend serves each concept, chosen from settings.

Each backend is picked here and nowhere else:
- secrets: Key Vault (KEY_VAULT_URL) resolves secrets into settings before anything else;
- request log / usage / feedback / jobs: PostgreSQL (DATABASE_URL, or the embedded server);
- cache, quotas, circuit state: Redis (REDIS_URL), else in-process memory;
- example index: Weaviate (WEAVIATE_URL), else the in-process LocalIndex;
- auth: Entra ID JWKS and/or HS256 service tokens (AUTH_ENABLED).
Each wire_* function adds to `parts` (keyword overrides for AppContext.create) and to
`closers` (coroutines to await at shutdown).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .config import Settings
from .context import AppContext

Parts = dict[str, Any]
Closers = list[Callable[[], Awaitable[None]]]


async def wire_secrets(settings: Settings) -> Settings:
    from .keyvault import load_secrets

    return await load_secrets(settings)


async def wire_store(settings: Settings, parts: Parts, closers: Closers) -> None:
    """PostgreSQL (DATABASE_URL, else the embedded server under EMBEDDED_DATA_DIR) behind the
    request log, usage and feedback. Postgres being down never stops the app: the pool opens
    without waiting, migrations are retried by the log writer, rows wait in its buffer, and the
    `postgres` health probe reports down (readiness: degraded)."""
    import asyncio
    import logging

    from .config import secret_value
    from .health import DependencyStatus
    from .store.db import Database
    from .store.feedback import FeedbackStore
    from .store.request_log import PostgresRequestLog
    from .store.usage import UsageStore

    if not settings.database_enabled:
        return
    log = logging.getLogger(__name__)
    probes = parts.setdefault("health_probes", {})
    url = secret_value(settings.database_url)
    if url is None:
        from .embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.embedded_data_dir)
        try:
            url = await asyncio.to_thread(embedded.start)
        except Exception as exc:
            failure = f"embedded postgres did not start: {type(exc).__name__}"
            log.exception("%s; the request log stays in memory", failure)

            async def embedded_down() -> DependencyStatus:
                return DependencyStatus("down", None, failure)

            probes["postgres"] = embedded_down
            return
        else:

            async def stop_embedded() -> None:
                # the wheel stops its server at interpreter exit only when no other pid is on
                # record, and a killed process leaves its pid there: stop it explicitly (closers
                # run in reverse, so after the pool and the log writer are closed)
                await asyncio.to_thread(embedded.stop)

            closers.append(stop_embedded)
    db = Database(url, max_size=settings.db_pool_max)
    await db.open()
    closers.append(db.close)
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
    parts["request_log"] = writer
    parts["db"] = db
    parts["usage_store"] = UsageStore(db, writer)
    parts["feedback_store"] = FeedbackStore(db, writer)
    probes["postgres"] = db.probe


async def wire_cache(settings: Settings, parts: Parts, closers: Closers) -> None:
    """Redis (REDIS_URL, `rediss://` for TLS) for the response, semantic and embedding caches;
    without it the in-process memory cache. A Redis outage is bypassed per request, and the
    `cache` health probe reports it (readiness: degraded)."""
    import logging

    from .cache.base import CacheUnavailable, KeyValueCache
    from .cache.embeddings import CachedEncoder
    from .cache.memory import MemoryCache
    from .config import secret_value
    from .context import build_encoder
    from .encoders.base import AsyncEncoder

    log = logging.getLogger(__name__)
    redis_url = secret_value(settings.redis_url)
    cache: KeyValueCache
    if redis_url:
        from .cache.redis import RedisCache
        from .circuit.redis import RedisCircuitBreaker

        cache = RedisCache(redis_url)
        parts["cache"] = cache
        # circuit state is shared by every replica through the same Redis
        parts["circuit"] = RedisCircuitBreaker(cache.client)
        try:
            await cache.ping()
        except CacheUnavailable as exc:
            log.warning("redis unavailable at start (%s): the cache is bypassed until it answers", exc)
    else:
        cache = MemoryCache()  # the same default AppContext would build; named so encoders can share it
        parts["cache"] = cache
    if settings.encoder == "vertex" and "encoder" not in parts:  # remote encoders only
        encoder = build_encoder(settings)
        if isinstance(encoder, AsyncEncoder):
            parts["encoder"] = CachedEncoder(encoder, cache, settings.embedding_cache_ttl_s)


async def wire_index(settings: Settings, parts: Parts, closers: Closers) -> None:
    import logging

    from .backups import BackupChecker, MemoryBackupCheckStore, PostgresBackupCheckStore, health_details
    from .cache.memory import MemoryCache
    from .context import build_encoder, load_examples
    from .examples_pipeline import MemoryFeedbackSource, PostgresFeedbackSource, PromptStore, encode
    from .health import DependencyStatus
    from .index.base import IndexUnavailable
    from .index.weaviate import SchemaMismatch, WeaviateIndex
    from .routing.predictor import outcome_priors

    log = logging.getLogger(__name__)
    db = parts.get("db")
    # feedback -> examples (shared/examples_pipeline.py): where feedback rows and kept prompts live
    parts["feedback_source"] = PostgresFeedbackSource(db) if db is not None else MemoryFeedbackSource()
    parts["prompt_store"] = PromptStore(parts.get("cache") or MemoryCache(), settings.feedback_prompt_ttl_s)
    if not settings.weaviate_url:
        return
    encoder = parts.get("encoder") or build_encoder(settings)
    parts["encoder"] = encoder
    index = WeaviateIndex.from_settings(settings, dim=encoder.dim, encoder_name=encoder.name)
    starter = load_examples(settings)
    parts["index"] = index
    parts["priors"] = outcome_priors([ex.outcomes for ex in starter])
    try:
        if await index.ensure_schema() == "created" and starter and settings.weaviate_seed_examples:
            vectors = await encode(encoder, [ex.content for ex in starter])
            await index.upsert(starter, vectors)
            log.info("seeded Weaviate with %d starter examples", len(starter))
    except IndexUnavailable as exc:
        # start anyway: the router answers on priors and readiness says degraded until it is back
        log.warning("Weaviate is unavailable at start: %s", exc)
    except SchemaMismatch as exc:
        log.error("%s", exc)

    async def index_probe() -> DependencyStatus:
        h = await index.health()
        if h.ok:
            return DependencyStatus("up", h.latency_ms, f"weaviate: {h.detail}")
        return DependencyStatus("degraded", h.latency_ms, f"weaviate: {h.detail}; routing on priors")

    parts.setdefault("health_probes", {})["index"] = index_probe
    store = PostgresBackupCheckStore(db) if db is not None else MemoryBackupCheckStore()
    parts["backup_checker"] = BackupChecker.from_settings(settings, index.client, store)
    parts["health_details"] = health_details(store)


async def wire_auth(settings: Settings, parts: Parts, closers: Closers) -> None:
    from .auth.authenticator import build_authenticator, check_auth_settings
    from .auth.service_tokens import service_secret
    from .cache.redis import RedisCache
    from .keyvault import reference_problems
    from .quota import MemoryQuota, QuotaLimits, RedisQuota

    check_auth_settings(settings)
    parts.setdefault("config_problems", []).extend(reference_problems(settings))
    if settings.auth_enabled:
        parts["authenticator"] = build_authenticator(settings, service_secret(settings))
    limits = QuotaLimits.from_settings(settings)
    cache = parts.get("cache")
    # quotas share the cache's Redis client: one pool, with its TLS settings and short timeouts
    # (it is closed with the cache)
    parts["quota"] = RedisQuota(cache.client, limits) if isinstance(cache, RedisCache) else MemoryQuota(limits)


async def wire_jobs(settings: Settings, parts: Parts, closers: Closers) -> None:
    from .jobs import JobService
    from .queue.base import JobQueue
    from .queue.local import get_local_bus
    from .store.jobs import JobStore, MemoryJobStore, PostgresJobStore

    queue: JobQueue
    if settings.service_bus_connection_string is not None or settings.service_bus_namespace:
        from .queue.servicebus import ServiceBusJobQueue

        sb = ServiceBusJobQueue.from_settings(settings)
        closers.append(sb.close)
        queue = sb
    else:
        bus = get_local_bus()
        bus.max_delivery_count = settings.service_bus_max_delivery_count
        queue = bus
    db = parts.get("db")
    store: JobStore = PostgresJobStore(db) if db is not None else MemoryJobStore()
    service = JobService(settings, store, queue)
    if queue.kind == "local":
        # a poison message is recorded on its job, never silently dropped
        get_local_bus().on_dead_letter(service.on_local_dead_letter)
    parts["job_service"] = service


async def build_context(settings: Settings) -> AppContext:
    from .telemetry import configure_tracing

    settings = await wire_secrets(settings)
    configure_tracing(settings)
    parts: Parts = {}
    closers: Closers = []
    await wire_store(settings, parts, closers)
    await wire_cache(settings, parts, closers)
    await wire_index(settings, parts, closers)
    await wire_auth(settings, parts, closers)
    await wire_jobs(settings, parts, closers)
    ctx = await AppContext.create(settings, **parts)
    ctx.closers.extend(closers)
    if settings.feedback_to_examples:
        from .examples_pipeline import feedback_examples

        ctx.service.after_answer.append(feedback_examples(ctx).remember)
    return ctx
