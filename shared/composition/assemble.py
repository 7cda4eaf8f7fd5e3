"""Services from parts. Every part can be handed in (tests, and backends.py in production); what
is not given is the in-memory twin, so `await assemble(settings)` is a whole working router."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from ..auth.base import ANONYMOUS, Authenticator, Principal
from ..backups import BackupCheckRunner
from ..cache.base import KeyValueCache
from ..cache.memory import MemoryCache
from ..catalog import Catalog
from ..chat.accounting import Ledger
from ..chat.admission import QuotaGuard
from ..chat.decide import Decider
from ..chat.fallback import FallbackCaller
from ..chat.hooks import discover
from ..chat.hooks.base import HookDeps
from ..chat.hooks.runner import HookRunner
from ..chat.pipeline import ChatService
from ..chat.response_cache import ResponseCaching
from ..circuit.base import CircuitBreaker
from ..circuit.memory import MemoryCircuitBreaker
from ..config import Settings
from ..config_checks import config_problems
from ..encoders.base import AsyncEncoder, Encoder
from ..encoders.hashing import HashingEncoder
from ..encoders.tfidf_svd import TfidfSvdEncoder
from ..examples.feedback_loop import FeedbackExamples
from ..examples.labelled import LabelledExample, read_labelled_csv
from ..examples.prompt_store import PromptStore
from ..examples.transfer import encode
from ..health import Details, HealthChecks, cache_probe, index_probe, providers_probe
from ..index.base import ExampleIndex
from ..index.local import LocalIndex
from ..jobs.service import JobService
from ..metrics import count_tenant_prior_fit, count_tenant_space, record_tenant_spaces
from ..probe import Probe
from ..providers.registry import ProviderRegistry
from ..routing.predictor import PredictorParams, outcome_priors
from ..routing.router import Router
from ..routing.tenant_prior import OwnExamples, TenantPriors
from ..shadow.budget import MemoryShadowBudget, ShadowBudget
from ..store.base import MemoryRequestLog, RequestLogSink
from ..store.feedback import FeedbackSource, FeedbackStore, MemoryFeedbackSource
from ..store.usage import UsageStore
from ..store.verdicts import MemoryVerdicts, PostgresVerdicts
from .services import Closer, Services


class AuthDisabled:
    async def authenticate(self, authorization: str | None) -> Principal:
        return ANONYMOUS


@dataclass
class Parts:
    """What a caller may hand in; None takes the in-memory default (`without_cache`: no cache)."""

    catalog: Catalog | None = None
    encoder: Encoder | AsyncEncoder | None = None
    index: ExampleIndex | None = None
    priors: dict[str, float] | None = None
    providers: ProviderRegistry | None = None
    circuit: CircuitBreaker | None = None
    request_log: RequestLogSink | None = None
    cache: KeyValueCache | None = None
    without_cache: bool = False
    quota: QuotaGuard | None = None
    authenticator: Authenticator | None = None
    jobs: JobService | None = None
    usage: UsageStore | None = None
    feedback: FeedbackStore | None = None
    feedback_source: FeedbackSource | None = None
    backups: BackupCheckRunner | None = None
    shadow_budget: ShadowBudget | None = None  # None: kept in memory
    verdicts: PostgresVerdicts | None = None  # None: kept in memory, no agreement report
    probes: Mapping[str, Probe] = field(default_factory=dict)
    health_details: Details | None = None
    config_problems: Sequence[str] = ()
    closers: list[Closer] = field(default_factory=list)


def build_encoder(s: Settings, *, vertex_credentials: Any = None) -> Encoder | AsyncEncoder:
    if s.encoder == "tfidf-svd":
        if not s.encoder_state_path.exists():
            raise FileNotFoundError(
                f"encoder state not found at {s.encoder_state_path} (ENCODER_STATE_PATH); "
                "create it with `python -m shared.cli encoder-fit`, or set ENCODER=hashing"
            )
        return TfidfSvdEncoder.load(s.encoder_state_path)
    if s.encoder == "hashing":
        return HashingEncoder(dim=s.encoder_dim)
    # google-genai (~30 MB) only with ENCODER=vertex
    from ..encoders.vertex import VertexEmbeddingEncoder

    remote: AsyncEncoder = VertexEmbeddingEncoder.from_settings(s, credentials=vertex_credentials)
    return remote


def load_starter(s: Settings) -> list[LabelledExample]:
    if not s.examples_path.exists():
        return []
    return list(read_labelled_csv(s.examples_path, source="starter"))


async def build_local_index(s: Settings, encoder: Encoder | AsyncEncoder) -> tuple[LocalIndex, dict[str, float]]:
    """The in-process index with the starter examples, and the outcome priors they give."""
    examples = await asyncio.to_thread(load_starter, s)
    index = LocalIndex(encoder.dim)
    if examples:
        index.upsert_sync(examples, await encode(encoder, [ex.content for ex in examples]))
        await index.refresh()  # built off the event loop, before the first decision needs it
    return index, outcome_priors([ex.outcomes for ex in examples])


def prompt_store(s: Settings, cache: KeyValueCache | None) -> PromptStore:
    """Prompts kept for feedback: in Redis when there is one, else in a memory cache of their own,
    so that their byte budget (FEEDBACK_PROMPT_MAX_BYTES) and the answers' are separate."""
    if cache is not None and cache.kind != "memory":
        return PromptStore(cache, s.feedback_prompt_ttl_s)
    return PromptStore(MemoryCache(max_bytes=s.feedback_prompt_max_bytes), s.feedback_prompt_ttl_s)


def build_router(
    s: Settings,
    catalog: Catalog,
    encoder: Encoder | AsyncEncoder,
    index: ExampleIndex,
    priors: dict[str, float],
) -> Router:
    params = PredictorParams(
        k=s.routing_k, prior_strength=s.routing_prior_strength, similarity_power=s.routing_similarity_power
    )
    tenant_priors = None
    if s.tenant_prior_refresh_s > 0 and callable(getattr(index, "own_examples", None)):
        tenant_priors = TenantPriors(
            cast(OwnExamples, index),
            refresh_s=s.tenant_prior_refresh_s,
            max_space_examples=s.tenant_space_examples,
            max_space_bytes=s.tenant_spaces_mb << 20,
            params=params,
            on_fit=count_tenant_prior_fit,
            on_space=count_tenant_space,
            on_held=record_tenant_spaces,
        )
    return Router(
        catalog,
        encoder,
        index,
        params=params,
        priors=priors,
        margin=s.cost_quality_margin,
        cost_weight=s.balanced_cost_weight,
        upgrade_confidence=s.balanced_upgrade_confidence,
        index_timeout_s=s.weaviate_timeout_s,
        tenant_priors=tenant_priors,
    )


async def build_local_router(s: Settings) -> Router:
    """The router exactly as the app builds it from its settings, on the in-process index with
    the starter examples: what the routing table, the decision benchmark and the probes decide with."""
    encoder = build_encoder(s)
    index, priors = await build_local_index(s, encoder)
    return build_router(s, Catalog.load(s.model_catalog_path), encoder, index, priors)


def build_hooks(s: Settings, p: Parts, deps: HookDeps) -> HookRunner:
    """The after-answer hooks, with what self-labelling needs besides the common deps."""
    return HookRunner(
        discover(
            replace(
                deps,
                shadow_budget=p.shadow_budget or MemoryShadowBudget(s.shadow_usd_per_day),
                verdicts=p.verdicts or MemoryVerdicts(),
            )
        )
    )


async def assemble(settings: Settings, parts: Parts | None = None) -> Services:
    p = parts or Parts()
    s = settings
    catalog = p.catalog or Catalog.load(s.model_catalog_path)
    encoder = p.encoder or build_encoder(s)
    index, priors = p.index, p.priors or {}
    if index is None:
        index, priors = await build_local_index(s, encoder)
    router = build_router(s, catalog, encoder, index, priors)
    providers = p.providers or ProviderRegistry(s)
    circuit = p.circuit or MemoryCircuitBreaker()
    request_log = p.request_log or MemoryRequestLog()
    cache = None if p.without_cache else (p.cache or MemoryCache(max_bytes=s.cache_max_bytes))
    feeder = FeedbackExamples(
        s,
        p.feedback_source or MemoryFeedbackSource(),
        prompt_store(s, cache),
        index,
        encoder,
    )
    hooks = build_hooks(s, p, HookDeps(s, catalog, providers, encoder, index, cache, feeder, request_log=request_log))
    chat = ChatService(
        s,
        Decider(s, router, circuit),
        ResponseCaching(s, cache, router),
        FallbackCaller(s, providers, circuit),
        Ledger(request_log),
        p.quota,
        hooks,
    )
    probes: dict[str, Probe] = {
        "index": index_probe(index),
        "cache": cache_probe(cache),
        "providers": providers_probe(catalog, providers),
        **p.probes,
    }
    return Services(
        settings=s,
        catalog=catalog,
        encoder=encoder,
        index=index,
        router=router,
        providers=providers,
        circuit=circuit,
        request_log=request_log,
        cache=cache,
        quota=p.quota,
        authenticator=p.authenticator or AuthDisabled(),
        chat=chat,
        hooks=hooks,
        health=HealthChecks(probes, p.health_details, (*p.config_problems, *config_problems(s))),
        feedback_examples=feeder,
        jobs=p.jobs,
        usage=p.usage,
        feedback=p.feedback,
        backups=p.backups,
        verdicts=p.verdicts,
        closers=p.closers,
    )
