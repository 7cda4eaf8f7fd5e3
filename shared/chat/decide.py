"""Step 1, decide: the request's constraints and policy -> a ranked routing decision."""

from __future__ import annotations

from opentelemetry.trace import Span

from ..auth.base import Principal
from ..circuit.base import CircuitBreaker
from ..config import Settings
from ..metrics import DECISION_MS, count_low_confidence
from ..routing.decision import Decision
from ..routing.policy import PolicyName
from ..routing.request import RoutingRequest
from ..routing.router import Router
from ..schemas import POLICY_ALIASES, ChatCompletionRequest
from ..telemetry import span as tracing_span
from ..token_count import estimate_prompt_tokens


def routing_request(settings: Settings, req: ChatCompletionRequest, principal: Principal | None) -> RoutingRequest:
    opts = req.routing
    explicit = None
    policy: PolicyName | None = opts.policy if opts and opts.policy else None
    if req.model in POLICY_ALIASES:
        policy = POLICY_ALIASES[req.model] or policy
    else:
        explicit = req.model
    return RoutingRequest(
        prompt=req.prompt_text(),
        policy=policy or settings.default_policy,
        explicit_model=explicit,
        needs=frozenset(req.needs_capabilities()),
        prompt_tokens=estimate_prompt_tokens(req),
        max_output_tokens=req.output_limit,
        allowed_models=opts.allowed_models if opts else None,
        exclude_models=(opts.exclude_models or ()) if opts else (),
        max_cost_usd=opts.max_cost_usd if opts else None,
        min_quality=opts.min_quality if opts else None,
        tenant=principal.tenant if principal else None,
        tenant_allowed_models=settings.tenant_model_allowlist.get(principal.tenant) if principal else None,
    )


class Decider:
    def __init__(self, settings: Settings, router: Router, circuit: CircuitBreaker) -> None:
        self.settings = settings
        self.router = router
        self.circuit = circuit

    async def decide(self, req: ChatCompletionRequest, principal: Principal | None) -> Decision:
        with tracing_span("route") as span:
            rreq = routing_request(self.settings, req, principal)
            decision = await self.router.decide(rreq, open_circuits=await self.circuit.open_models())
            DECISION_MS.observe(decision.decision_ms)
            count_low_confidence(rreq.tenant, decision.policy, decision.low_confidence)
            if span.is_recording():  # the attributes cost ~15 µs to build; tracing is often off
                _describe(span, req, decision)
            return decision


def _describe(span: Span, req: ChatCompletionRequest, decision: Decision) -> None:
    top = decision.ranked[0]
    span.set_attributes(
        {
            "llm_router.requested_model": req.model,
            "llm_router.policy": decision.policy,
            "llm_router.chosen_model": decision.chosen.id,
            "llm_router.candidates": [c.model.id for c in decision.ranked],
            "llm_router.predicted_quality": round(top.predicted_quality, 4),
            "llm_router.decision_ms": round(decision.decision_ms, 3),
            "llm_router.index_status": decision.index_status,
            "llm_router.neighbours": len(decision.neighbours),
            "llm_router.confidence": round(decision.confidence, 3),
        }
    )


def decision_summary(d: Decision) -> dict[str, object]:
    """The decision as the request log keeps it."""
    return {
        "policy": d.policy,
        "chosen": d.chosen.id,
        "fallbacks": [m.id for m in d.fallbacks],
        "predicted_quality": {c.model.id: round(c.predicted_quality, 4) for c in d.ranked},
        "neighbours": len(d.neighbours),
        "index": d.index_status,
        "decision_ms": round(d.decision_ms, 3),
    }
