"""Feedback becomes labelled examples.

A feedback row with a score for a logged request becomes a labelled example (label_source
"feedback", owned by the request's tenant). It runs off the request path (the feedback timer),
de-duplicated by request id: the example id is uuid5("feedback", request_id), so repeated
feedback or two replicas processing the same row rewrite one example. An example made without
text has empty `content` and still routes (by its vector); it is left out of exports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..encoders.base import AsyncEncoder, Encoder
from ..index.base import ExampleIndex
from ..store.feedback import FeedbackRow, FeedbackSource
from .labelled import LabelledExample, example_id
from .prompt_store import PromptStore, prompt_text_allowed
from .transfer import encode

log = logging.getLogger(__name__)

FEEDBACK_SOURCE = "feedback"


@dataclass
class FeedbackRunResult:
    rows: int = 0
    examples: int = 0
    skipped: int = 0


class FeedbackExamples:
    def __init__(
        self,
        settings: Settings,
        source: FeedbackSource,
        prompts: PromptStore,
        index: ExampleIndex,
        encoder: Encoder | AsyncEncoder,
    ) -> None:
        self.settings = settings
        self.source = source
        self.prompts = prompts
        self.index = index
        self.encoder = encoder

    async def remember(self, request_id: str, tenant: str | None, prompt: str, vector: np.ndarray | None) -> None:
        """After an answer (shared/chat/hooks/feedback_prompts.py): keep what feedback will need, as allowed."""
        if not self.settings.feedback_to_examples:
            return
        text = prompt if prompt_text_allowed(self.settings, tenant) else None
        if vector is None:
            vector = (await encode(self.encoder, [prompt]))[0]
        try:
            await self.prompts.keep(request_id, tenant, text, vector)
        except Exception as exc:  # the cache being down must never fail a request
            log.warning("could not keep the prompt for feedback: %s", type(exc).__name__)

    async def process(self, limit: int = 500) -> FeedbackRunResult:
        result = FeedbackRunResult()
        if not self.settings.feedback_to_examples:
            return result
        rows = await self.source.pending(limit)
        result.rows = len(rows)
        latest: dict[str, FeedbackRow] = {}
        for row in rows:  # ordered by id: the newest feedback on a request wins
            latest[row.request_id] = row
        examples: list[LabelledExample] = []
        vectors: list[np.ndarray] = []
        to_encode: list[int] = []
        for row in latest.values():
            made = await self._example(row)
            if made is None:
                result.skipped += 1
                continue
            ex, vec = made
            if vec is None:
                to_encode.append(len(examples))
            examples.append(ex)
            vectors.append(vec if vec is not None else np.zeros(0, dtype=np.float32))
        if to_encode:
            encoded = await encode(self.encoder, [examples[i].content for i in to_encode])
            for i, row_vec in zip(to_encode, encoded, strict=True):
                vectors[i] = row_vec
        if examples:
            # an index outage raises here, before anything is marked: the rows are retried
            result.examples = await self.index.upsert(examples, np.vstack(vectors).astype(np.float32))
        await self.source.mark_processed([r.id for r in rows])
        return result

    async def _example(self, row: FeedbackRow) -> tuple[LabelledExample, np.ndarray | None] | None:
        if not row.model:
            return None
        kept = await self.prompts.get(row.request_id)
        allowed = prompt_text_allowed(self.settings, row.tenant)
        text = (kept.text if kept else None) or row.prompt_text
        text = text if allowed else None
        vector = kept.vector if kept is not None and kept.vector is not None else None
        if vector is not None and len(vector) != self.encoder.dim:
            vector = None  # kept under another encoder: re-encode from text if we may
        if vector is None and not text:
            return None
        ex = LabelledExample(
            id=example_id(FEEDBACK_SOURCE, row.request_id),
            content=text or "",
            outcomes={row.model: float(row.score)},
            label_source="feedback",
            source=FEEDBACK_SOURCE,
            tenant=row.tenant,
            source_request_id=row.request_id,
        )
        return ex, vector


async def run_feedback_pass(feeder: FeedbackExamples, *, past_due: bool = False) -> FeedbackRunResult:
    """The feedback timer's body: one pass over unprocessed feedback."""
    if past_due:
        log.warning("the feedback-to-examples timer is past due")
    result = await feeder.process()
    if result.rows:
        log.info("feedback to examples: %d rows, %d examples, %d skipped", result.rows, result.examples, result.skipped)
    return result
