"""Steps 5 and 6, account and log: usage and cost of an answer (whole or streamed, by one
function), the quota settled with the real numbers, the model span ended, metrics, and the
request-log row."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..catalog import ModelSpec
from ..errors import RouterError
from ..metrics import COST_USD, OVERHEAD_MS, REQUESTS, TOKENS
from ..providers.base import Completion
from ..schemas import ChatCompletionRequest
from ..store.base import RequestLogRow, RequestLogSink
from ..telemetry import end_model_span
from ..token_count import count_usage
from .admission import Admission
from .fallback import Attempt


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    source: str  # provider | estimated

    @classmethod
    def of(cls, provider_usage: dict[str, Any] | None, req: ChatCompletionRequest, answer_text: str) -> Usage:
        """The provider's numbers when it gave them, else counted with a real tokenizer."""
        if provider_usage and ("prompt_tokens" in provider_usage or "completion_tokens" in provider_usage):
            pt = int(provider_usage.get("prompt_tokens") or 0)
            return cls(pt, int(provider_usage.get("completion_tokens") or 0), "provider")
        pt, ct, source = count_usage(req, answer_text)
        return cls(pt, ct, source)

    def as_openai(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


def completion_text(completion: Completion) -> str:
    return "".join((ch.get("message") or {}).get("content") or "" for ch in completion.get("choices") or [])


@dataclass
class Answered:
    """What accounting needs of one upstream answer, whole or streamed."""

    model: ModelSpec
    attempt: Attempt
    usage: Usage
    total_ms: float
    overhead_ms: float
    finish_reasons: list[str]
    error: RouterError | None = None


class Ledger:
    def __init__(self, request_log: RequestLogSink) -> None:
        self.request_log = request_log

    async def account(self, row: RequestLogRow, answer: Answered, admission: Admission) -> float:
        """The one accounting function for answers; returns the cost in USD."""
        usage, model = answer.usage, answer.model
        cost = model.cost_usd(usage.prompt_tokens, usage.completion_tokens)
        end_model_span(
            answer.attempt.span,
            response_model=model.id,
            usage=(usage.prompt_tokens, usage.completion_tokens),
            finish_reasons=answer.finish_reasons,
            cost_usd=cost,
            tenant=row.tenant,
            attempts=answer.attempt.attempts,
            error=answer.error,
        )
        await admission.settle(usage.prompt_tokens + usage.completion_tokens, cost)
        row.chosen_model = model.id
        row.prompt_tokens, row.completion_tokens, row.cost_usd = usage.prompt_tokens, usage.completion_tokens, cost
        row.usage_source = usage.source
        row.latency_ms, row.overhead_ms = answer.total_ms, answer.overhead_ms
        row.upstream_ms = answer.total_ms - answer.overhead_ms
        row.fallbacks = answer.attempt.fallbacks
        if answer.error is not None:
            row.status, row.error_code = answer.error.status, answer.error.code
        self.log(row)
        return cost

    def failed(self, row: RequestLogRow, exc: RouterError, t0: float) -> None:
        row.status, row.error_code = exc.status, exc.code
        row.latency_ms = (time.perf_counter() - t0) * 1000
        self.log(row)

    def replayed(self, row: RequestLogRow, cached: Completion, t0: float) -> float:
        row.chosen_model = cached.get("model", row.chosen_model)
        total_ms = (time.perf_counter() - t0) * 1000
        row.latency_ms = row.overhead_ms = total_ms
        row.usage_source = "none"
        self.log(row)
        return total_ms

    def log(self, row: RequestLogRow) -> None:
        model = row.chosen_model or "none"
        REQUESTS.labels(model, row.policy or "none", str(row.status), row.cache).inc()
        if row.status < 400 or row.prompt_tokens:
            OVERHEAD_MS.observe(row.overhead_ms)
            TOKENS.labels(model, "input").inc(row.prompt_tokens)
            TOKENS.labels(model, "output").inc(row.completion_tokens)
            COST_USD.labels(model).inc(row.cost_usd)
        self.request_log.record(row)
