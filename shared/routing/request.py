"""What a routing request asks for, and which models its hard constraints leave out."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..catalog import ModelSpec
from .policy import PolicyName


@dataclass
class RoutingRequest:
    prompt: str
    policy: PolicyName
    explicit_model: str | None = None
    needs: frozenset[str] = frozenset()
    prompt_tokens: int = 0
    max_output_tokens: int | None = None
    allowed_models: Collection[str] | None = None
    exclude_models: Collection[str] = ()
    max_cost_usd: float | None = None
    min_quality: float | None = None
    tenant: str | None = None
    tenant_allowed_models: Collection[str] | None = None


def exclusion(
    model: ModelSpec,
    req: RoutingRequest,
    open_circuits: Collection[str],
    out_tokens: int,
    cost: float,
) -> str | None:
    """Why `model` cannot serve `req` (None: it can): the caller's and the tenant's allow-lists,
    capabilities, output and context limits, the cost cap, an open circuit."""
    if req.tenant_allowed_models is not None and model.id not in req.tenant_allowed_models:
        return "not allowed for this tenant"
    if req.allowed_models is not None and model.id not in req.allowed_models:
        return "not in routing.allowed_models"
    if model.id in req.exclude_models:
        return "in routing.exclude_models"
    missing = req.needs - model.capabilities
    if missing:
        return f"lacks capability: {', '.join(sorted(missing))}"
    if req.max_output_tokens is not None and req.max_output_tokens > model.max_output_tokens:
        return f"max_tokens above its limit of {model.max_output_tokens}"
    if req.prompt_tokens + out_tokens > model.context_window:
        return (
            f"context window {model.context_window} too small for ~{req.prompt_tokens} prompt "
            f"+ {out_tokens} output tokens"
        )
    if req.max_cost_usd is not None and cost > req.max_cost_usd:
        return f"estimated cost ${cost:.6f} above max_cost_usd ${req.max_cost_usd}"
    if model.id in open_circuits:
        return "circuit open"
    return None
