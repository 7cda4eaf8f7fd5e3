"""One labelling: the shadow call to a model of another tier, the judge in both orders, and the
verdict kept (judge_verdicts) and turned into a labelled example of the tenant.

Every call is paid for out of the tenant's SHADOW_USD_PER_DAY (reserved before, settled after)
and written to the request log with its purpose (`shadow` | `judge`) and the answered request's
id. Any failure ends the labelling quietly: nothing is labelled from half a comparison.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..catalog import Catalog, ModelSpec
from ..chat.accounting import Usage, completion_text
from ..config import Settings
from ..encoders.base import AsyncEncoder, Encoder
from ..errors import RouterError
from ..examples.labelled import LabelledExample, example_id
from ..examples.prompt_store import prompt_text_allowed
from ..examples.transfer import encode
from ..index.base import ExampleIndex, IndexUnavailable
from ..providers.base import Completion, Timeouts
from ..providers.registry import ProviderRegistry
from ..routing.router import DEFAULT_EXPECTED_OUTPUT_TOKENS
from ..schemas import ChatCompletionRequest
from ..store.base import RequestLogRow, RequestLogSink, StoreUnavailable
from ..store.verdicts import JudgeVerdict, VerdictSink
from ..token_count import estimate_prompt_tokens
from .budget import ShadowBudget
from .judge import Verdict, Winner, combine, judge_request, parse_winner
from .metrics import CALLS, SKIPPED, SKIPPED_BUDGET, SPEND_USD, VERDICTS
from .models import shadow_model

log = logging.getLogger(__name__)

JUDGE_SOURCE = "judge"


@dataclass(frozen=True)
class Sample:
    """An answered request chosen for labelling."""

    request_id: str
    tenant: str
    request: ChatCompletionRequest
    answer_model: ModelSpec
    answer_text: str
    ranked: tuple[ModelSpec, ...]  # the request's ranked candidates
    vector: np.ndarray | None = None  # the prompt's vector from the routing decision


def shadow_request(original: ChatCompletionRequest, model_id: str) -> ChatCompletionRequest:
    """The caller's request as the shadow model gets it: whole (not streamed), no router options."""
    return original.model_copy(update={"model": model_id, "stream": False, "stream_options": None, "routing": None})


class ShadowLabeller:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        providers: ProviderRegistry,
        budget: ShadowBudget,
        request_log: RequestLogSink,
        verdicts: VerdictSink,
        index: ExampleIndex,
        encoder: Encoder | AsyncEncoder,
        judge: ModelSpec,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.providers = providers
        self.budget = budget
        self.request_log = request_log
        self.verdicts = verdicts
        self.index = index
        self.encoder = encoder
        self.judge = judge
        self.timeouts = Timeouts(
            connect_s=settings.upstream_connect_timeout_s,
            read_s=settings.upstream_read_timeout_s,
            stream_idle_s=settings.stream_idle_timeout_s,
        )

    def shadow_for(self, sample: Sample) -> ModelSpec | None:
        opts = sample.request.routing
        return shadow_model(
            self.catalog,
            sample.answer_model,
            sample.ranked,
            sample.request.needs_capabilities(),
            self.settings.tenant_model_allowlist.get(sample.tenant),
            (opts.exclude_models or ()) if opts else (),
        )

    async def label(self, sample: Sample) -> Verdict | None:
        shadow = self.shadow_for(sample)
        if shadow is None:
            SKIPPED.labels("no_other_tier").inc()
            return None
        rid = sample.request_id
        done = await self._call("shadow", sample, shadow, shadow_request(sample.request, shadow.id), f"{rid}:shadow")
        shadow_text = completion_text(done) if done is not None else ""
        if not shadow_text.strip():
            return None
        first = await self._judge(sample, f"{rid}:judge:1", sample.answer_text, shadow_text)
        second = await self._judge(sample, f"{rid}:judge:2", shadow_text, sample.answer_text) if first else None
        if first is None or second is None:
            return None
        verdict = combine(first, second)
        VERDICTS.labels(verdict.outcome).inc()
        await self._keep(sample, shadow, verdict)
        return verdict

    async def _judge(self, sample: Sample, row_id: str, first: str, second: str) -> Winner | None:
        req = judge_request(sample.request, first, second, self.judge.id)
        done = await self._call("judge", sample, self.judge, req, row_id)
        if done is None:
            return None
        winner = parse_winner(done)
        if winner is None:
            CALLS.labels("judge", self.judge.id, "unparsed").inc()
            log.warning("the judge %s answered without a verdict (request %s)", self.judge.id, sample.request_id)
        return winner

    async def _call(
        self, purpose: str, sample: Sample, model: ModelSpec, req: ChatCompletionRequest, row_id: str
    ) -> Completion | None:
        """One paid call within the budget, logged with its purpose. None: not made, or failed."""
        out_tokens = req.output_limit or min(DEFAULT_EXPECTED_OUTPUT_TOKENS, model.max_output_tokens)
        reservation = await self.budget.reserve(sample.tenant, model.cost_usd(estimate_prompt_tokens(req), out_tokens))
        if reservation is None:
            SKIPPED_BUDGET.labels(purpose).inc()
            return None
        row = RequestLogRow(
            id=row_id,
            tenant=sample.tenant,
            requested_model=model.id,
            policy=None,
            chosen_model=model.id,
            decision=None,
            cache="bypass",
            source="shadow",
            purpose=purpose,
            parent_request_id=sample.request_id,
        )
        cost, t0 = 0.0, time.perf_counter()
        try:
            completion = await self.providers.for_model(model).complete(req, model, self.timeouts)
        except RouterError as exc:
            row.status, row.error_code = exc.status, exc.code
            CALLS.labels(purpose, model.id, "error").inc()
            log.warning("%s call to %s failed (%s) for request %s", purpose, model.id, exc.code, sample.request_id)
            return None
        else:
            usage = Usage.of(completion.get("usage"), req, completion_text(completion))
            cost = model.cost_usd(usage.prompt_tokens, usage.completion_tokens)
            row.prompt_tokens, row.completion_tokens, row.cost_usd = usage.prompt_tokens, usage.completion_tokens, cost
            row.usage_source = usage.source
            CALLS.labels(purpose, model.id, "ok").inc()
            SPEND_USD.labels(purpose).inc(cost)
            return completion
        finally:
            row.latency_ms = row.upstream_ms = (time.perf_counter() - t0) * 1000
            await self.budget.settle(reservation, cost)
            self.request_log.record(row)

    async def _keep(self, sample: Sample, shadow: ModelSpec, verdict: Verdict) -> None:
        """The verdict for the agreement report, and the labelled example for routing."""
        try:
            await self.verdicts.record(
                JudgeVerdict(
                    sample.request_id,
                    sample.tenant,
                    sample.answer_model.id,
                    shadow.id,
                    self.judge.id,
                    verdict.answer_outcome,
                    verdict.shadow_outcome,
                    verdict.orders_agree,
                )
            )
        except StoreUnavailable:
            log.warning("judge verdict for request %s not stored: the database is unavailable", sample.request_id)
        prompt = sample.request.prompt_text()
        vector = sample.vector
        if vector is None or len(vector) != self.encoder.dim:
            vector = (await encode(self.encoder, [prompt]))[0]
        example = LabelledExample(
            id=example_id(JUDGE_SOURCE, sample.request_id),
            content=prompt if prompt_text_allowed(self.settings, sample.tenant) else "",
            outcomes={sample.answer_model.id: verdict.answer_outcome, shadow.id: verdict.shadow_outcome},
            label_source="judge",
            source=JUDGE_SOURCE,
            tenant=sample.tenant,
            source_request_id=sample.request_id,
        )
        try:
            await self.index.upsert([example], np.asarray([vector], dtype=np.float32))
        except IndexUnavailable as exc:
            log.warning("judge example for request %s not indexed: %s", sample.request_id, exc)
