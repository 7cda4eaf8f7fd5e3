"""Step 2, admit: quotas and budgets reserve an estimate before the call and settle the real
usage after it (shared/quota.py implements the guard)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..auth.base import Principal
from ..routing.decision import Decision
from ..schemas import ChatCompletionRequest
from ..token_count import estimate_prompt_tokens

log = logging.getLogger(__name__)


class QuotaGuard(Protocol):
    """Admits a request before the upstream call and settles its real usage after it."""

    async def admit(self, principal: Principal, est_tokens: int, est_cost_usd: float) -> Any: ...

    async def settle(self, reservation: Any, tokens: int, cost_usd: float) -> None: ...


class Admission:
    """One request's reservation; settle() is safe to call once whatever happened."""

    def __init__(self, quota: QuotaGuard | None, reservation: Any = None) -> None:
        self.quota = quota
        self.reservation = reservation

    @classmethod
    async def admit(
        cls, quota: QuotaGuard | None, principal: Principal, req: ChatCompletionRequest, decision: Decision
    ) -> Admission:
        if quota is None:
            return cls(None)
        est = decision.ranked[0]
        tokens = estimate_prompt_tokens(req) + (req.output_limit or 0)
        return cls(quota, await quota.admit(principal, tokens, est.estimated_cost_usd))

    async def settle(self, tokens: int, cost_usd: float) -> None:
        if self.quota is None or self.reservation is None:
            return
        reservation, self.reservation = self.reservation, None
        try:
            await self.quota.settle(reservation, tokens, cost_usd)
        except Exception:
            log.exception("quota settle failed")
