"""After-answer hooks: work that follows an answered request, off the request path (keeping the
prompt for feedback, shadow calls to another tier, ...). A hook never delays or fails the answer.

Adding one is a one-file change: a module in this package with a `build(deps) -> hook | None`
function (None: off under these settings). shared/chat/hooks/__init__.py finds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ...cache.base import KeyValueCache
from ...catalog import Catalog
from ...config import Settings
from ...encoders.base import AsyncEncoder, Encoder
from ...examples.feedback_loop import FeedbackExamples
from ...index.base import ExampleIndex
from ...providers.base import Completion
from ...providers.registry import ProviderRegistry
from ...routing.decision import Decision
from ...schemas import ChatCompletionRequest
from ...shadow.budget import MemoryShadowBudget, ShadowBudget
from ...store.base import MemoryRequestLog, RequestLogSink
from ...store.verdicts import MemoryVerdicts, VerdictSink


@dataclass(frozen=True)
class Answer:
    """One answered request, as every hook sees it."""

    request_id: str
    tenant: str | None
    request: ChatCompletionRequest
    decision: Decision
    model: str  # the model that answered (after any fallback)
    completion: Completion  # a streamed answer, assembled


class AfterAnswerHook(Protocol):
    name: str

    async def __call__(self, answer: Answer) -> None: ...


@dataclass(frozen=True)
class HookDeps:
    """What a hook may use; the composition root fills it once per process."""

    settings: Settings
    catalog: Catalog
    providers: ProviderRegistry
    encoder: Encoder | AsyncEncoder
    index: ExampleIndex
    cache: KeyValueCache | None
    feedback_examples: FeedbackExamples
    # self-labelling (hooks/shadow.py): where its calls are logged, its budget, its verdicts
    request_log: RequestLogSink = field(default_factory=MemoryRequestLog)
    shadow_budget: ShadowBudget = field(default_factory=lambda: MemoryShadowBudget(0.0))
    verdicts: VerdictSink = field(default_factory=MemoryVerdicts)
