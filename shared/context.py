"""Builds the process-wide objects once (catalog, index, router, providers, stores) and closes
them at shutdown. Functions call get_context(); tests build their own AppContext."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .auth.base import ANONYMOUS, Authenticator, Principal
from .cache.base import KeyValueCache
from .cache.memory import MemoryCache
from .catalog import Catalog
from .circuit.base import CircuitBreaker
from .circuit.memory import MemoryCircuitBreaker
from .config import Settings, get_settings
from .encoders.base import AsyncEncoder, Encoder
from .encoders.hashing import HashingEncoder
from .index.base import ExampleIndex
from .index.local import LocalIndex
from .providers.registry import ProviderRegistry
from .routing.examples import LabelledExample, read_labelled_csv
from .routing.predictor import PredictorParams, outcome_priors
from .routing.router import Router
from .service import QuotaGuard, RouterService
from .store.base import MemoryRequestLog, RequestLogSink

log = logging.getLogger(__name__)


class _AuthDisabled:
    async def authenticate(self, authorization: str | None) -> Principal:
        return ANONYMOUS


@dataclass
class AppContext:
    settings: Settings
    catalog: Catalog
    encoder: Encoder | AsyncEncoder
    index: ExampleIndex
    router: Router
    providers: ProviderRegistry
    circuit: CircuitBreaker
    request_log: RequestLogSink
    cache: KeyValueCache | None
    service: RouterService
    authenticator: Authenticator
    quota: QuotaGuard | None = None
    started_at: float = field(default_factory=time.time)
    extras: dict[str, Any] = field(default_factory=dict)
    closers: list[Any] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings | None = None, **overrides: Any) -> AppContext:
        """Wire every component from settings; any keyword replaces the built component."""
        s = settings or get_settings()
        catalog = overrides.pop("catalog", None) or Catalog.load(s.model_catalog_path)
        encoder = overrides.pop("encoder", None) or build_encoder(s)
        index = overrides.pop("index", None)
        priors: dict[str, float] = overrides.pop("priors", None) or {}
        if index is None:
            index, priors = await build_local_index(s, encoder)
        router = Router(
            catalog,
            encoder,
            index,
            params=PredictorParams(
                k=s.routing_k,
                prior_strength=s.routing_prior_strength,
                similarity_power=s.routing_similarity_power,
            ),
            priors=priors,
            margin=s.cost_quality_margin,
            cost_weight=s.balanced_cost_weight,
            index_timeout_s=s.weaviate_timeout_s,
        )
        providers = overrides.pop("providers", None) or ProviderRegistry(s)
        circuit = overrides.pop("circuit", None) or MemoryCircuitBreaker()
        request_log = overrides.pop("request_log", None) or MemoryRequestLog()
        cache = overrides.pop("cache", None) if "cache" in overrides else MemoryCache()
        quota = overrides.pop("quota", None)
        authenticator = overrides.pop("authenticator", None) or _AuthDisabled()
        service = RouterService(s, catalog, router, providers, circuit, request_log, cache, quota)
        ctx = cls(
            settings=s,
            catalog=catalog,
            encoder=encoder,
            index=index,
            router=router,
            providers=providers,
            circuit=circuit,
            request_log=request_log,
            cache=cache,
            service=service,
            authenticator=authenticator,
            quota=quota,
        )
        ctx.extras.update(overrides)
        return ctx

    async def close(self) -> None:
        await self.providers.aclose()
        encoder_close = getattr(self.encoder, "aclose", None)  # remote encoders hold a client
        if encoder_close is not None:
            await encoder_close()
        await self.request_log.close()
        if self.cache is not None:
            await self.cache.close()
        await self.index.close()
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")


def build_encoder(s: Settings) -> Encoder | AsyncEncoder:
    if s.encoder == "tfidf-svd":
        from .encoders.tfidf_svd import TfidfSvdEncoder

        if not s.encoder_state_path.exists():
            raise FileNotFoundError(
                f"encoder state not found at {s.encoder_state_path} (ENCODER_STATE_PATH); "
                "create it with `python -m shared.cli encoder-fit`, or set ENCODER=hashing"
            )
        return TfidfSvdEncoder.load(s.encoder_state_path)
    if s.encoder == "hashing":
        return HashingEncoder(dim=s.encoder_dim)
    from .encoders.vertex import VertexEmbeddingEncoder

    remote: AsyncEncoder = VertexEmbeddingEncoder.from_settings(s)
    return remote


def load_examples(s: Settings) -> list[LabelledExample]:
    if not s.examples_path.exists():
        log.warning("no routing examples at %s: routing on priors only", s.examples_path)
        return []
    return list(read_labelled_csv(s.examples_path, source="starter"))


async def build_local_index(s: Settings, encoder: Encoder | AsyncEncoder) -> tuple[LocalIndex, dict[str, float]]:
    examples = await asyncio.to_thread(load_examples, s)
    index = LocalIndex(encoder.dim)
    if examples:
        texts = [ex.content for ex in examples]
        if isinstance(encoder, AsyncEncoder):
            vectors = await encoder.aencode(texts)
        else:
            vectors = await asyncio.to_thread(encoder.encode, texts)
        index.upsert_sync(examples, vectors)
    return index, outcome_priors([ex.outcomes for ex in examples])


_context: AppContext | None = None
_lock: asyncio.Lock | None = None


async def get_context() -> AppContext:
    """The process's context, built on first use (the Functions worker has no startup hook)."""
    global _context, _lock
    if _context is not None:
        return _context
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _context is None:
            from .bootstrap import build_context

            _context = await build_context(get_settings())
            # The examples, catalog and modules built at start live as long as the process; moving
            # them out of the collector's generations spares every later full collection from
            # walking them (the cyclic GC showed up as ~15% of CPU under load before this).
            gc.collect()
            gc.freeze()
    return _context


def set_context(ctx: AppContext | None) -> None:
    global _context
    _context = ctx


async def close_context() -> None:
    global _context
    if _context is not None:
        await _context.close()
        _context = None
