"""The typed, frozen set of services an entry point works with."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..auth.base import Authenticator
from ..backups import BackupCheckRunner
from ..cache.base import KeyValueCache
from ..catalog import Catalog
from ..chat.admission import QuotaGuard
from ..chat.hooks.runner import HookRunner
from ..chat.pipeline import ChatService
from ..circuit.base import CircuitBreaker
from ..config import Settings
from ..encoders.base import AsyncEncoder, Encoder
from ..examples.feedback_loop import FeedbackExamples
from ..health import HealthChecks
from ..index.base import ExampleIndex
from ..jobs.service import JobService
from ..providers.registry import ProviderRegistry
from ..routing.router import Router
from ..store.base import RequestLogSink
from ..store.feedback import FeedbackStore
from ..store.usage import UsageStore
from ..store.verdicts import PostgresVerdicts

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Services:
    settings: Settings
    catalog: Catalog
    encoder: Encoder | AsyncEncoder
    index: ExampleIndex
    router: Router
    providers: ProviderRegistry
    circuit: CircuitBreaker
    request_log: RequestLogSink
    cache: KeyValueCache | None
    quota: QuotaGuard | None
    authenticator: Authenticator
    chat: ChatService
    hooks: HookRunner
    health: HealthChecks
    feedback_examples: FeedbackExamples
    jobs: JobService | None = None  # None: async jobs are not configured in this process
    usage: UsageStore | None = None  # None: no database
    feedback: FeedbackStore | None = None
    backups: BackupCheckRunner | None = None  # None: no Weaviate, so no backups to check
    verdicts: PostgresVerdicts | None = None  # None: no database, so no judge agreement report
    # awaited in reverse at close, after the components above (pools, embedded servers, queues)
    closers: list[Closer] = field(default_factory=list)

    async def close(self, *, close_index: bool = True) -> None:
        await self.hooks.drain()
        await self.router.close()  # its background fits read the index and the encoder's vectors
        await self.providers.aclose()
        encoder_close = getattr(self.encoder, "aclose", None)  # only remote encoders hold a client
        if encoder_close is not None:
            await encoder_close()
        await self.request_log.close()
        if self.cache is not None:
            await self.cache.close()
        if close_index:
            await self.index.close()
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")
