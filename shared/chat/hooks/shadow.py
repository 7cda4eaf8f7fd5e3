"""Self-labelling from traffic (SHADOW_SAMPLE_RATE > 0): a sampled answer is compared with a
model of another tier by a judge, and the verdict becomes a labelled example of the tenant
(shared/shadow/). Each labelling runs on its own task, at most SHADOW_MAX_IN_FLIGHT at once, so
three upstream calls never hold up the other hooks or the caller."""

from __future__ import annotations

import asyncio
import logging
import random

from ...catalog import CatalogError
from ...shadow.labeller import Sample, ShadowLabeller
from ...shadow.metrics import SAMPLED, SKIPPED
from ...shadow.models import judge_model
from ..accounting import completion_text
from .base import Answer, HookDeps

log = logging.getLogger(__name__)


def sample_of(answer: Answer, labeller: ShadowLabeller) -> Sample | None:
    """The answer as a labelling sample, or None when it cannot be compared: tool calls or an
    empty answer, or no tenant to own the example."""
    text = completion_text(answer.completion)
    if not answer.tenant or answer.request.tools or not text.strip() or answer.model not in labeller.catalog:
        return None
    return Sample(
        request_id=answer.request_id,
        tenant=answer.tenant,
        request=answer.request,
        answer_model=labeller.catalog.get(answer.model),
        answer_text=text,
        ranked=tuple(c.model for c in answer.decision.ranked),
        vector=answer.decision.vector,
    )


class ShadowLabelling:
    name = "shadow"

    def __init__(self, labeller: ShadowLabeller, rate: float, max_in_flight: int, rng: random.Random) -> None:
        self.labeller = labeller
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.rng = rng
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, answer: Answer) -> None:
        if self.rng.random() >= self.rate:
            return
        SAMPLED.inc()
        sample = sample_of(answer, self.labeller)
        if sample is None:
            SKIPPED.labels("not_comparable").inc()
            return
        if len(self._tasks) >= self.max_in_flight:
            SKIPPED.labels("busy").inc()
            return
        task = asyncio.create_task(self._run(sample), name=f"shadow-{answer.request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _run(self, sample: Sample) -> None:
        try:
            await self.labeller.label(sample)
        except Exception:
            log.exception("shadow labelling of request %s failed", sample.request_id)

    async def drain(self) -> None:
        """Wait for the labellings in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def build(deps: HookDeps) -> ShadowLabelling | None:
    s = deps.settings
    if s.shadow_sample_rate <= 0:
        return None
    try:
        judge = judge_model(deps.catalog, s.shadow_judge_model)
    except CatalogError as exc:
        log.error("shadow labelling is off: %s", exc)
        return None
    labeller = ShadowLabeller(
        s,
        deps.catalog,
        deps.providers,
        deps.shadow_budget,
        deps.request_log,
        deps.verdicts,
        deps.index,
        deps.encoder,
        judge,
    )
    return ShadowLabelling(labeller, s.shadow_sample_rate, s.shadow_max_in_flight, random.Random())
