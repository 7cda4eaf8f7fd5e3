"""Prometheus metrics of self-labelling (llm_router_shadow_*), served by /metrics with the rest."""

from __future__ import annotations

from prometheus_client import Counter

SAMPLED = Counter("llm_router_shadow_sampled_total", "Answered requests sampled for shadow labelling.")
SKIPPED_BUDGET = Counter(
    "llm_router_shadow_skipped_budget_total",
    "Shadow or judge calls not made because the tenant's SHADOW_USD_PER_DAY was used up.",
    ["purpose"],
)
SKIPPED = Counter(
    "llm_router_shadow_skipped_total",
    "Sampled answers not labelled for another reason (busy, no_other_tier, not_comparable).",
    ["reason"],
)
CALLS = Counter(
    "llm_router_shadow_calls_total",
    "Shadow and judge calls by purpose, model and status (ok | error | unparsed).",
    ["purpose", "model", "status"],
)
VERDICTS = Counter(
    "llm_router_shadow_verdicts_total",
    "Judge verdicts by outcome (answer_better, shadow_better, tie, tie_orders_disagree).",
    ["outcome"],
)
SPEND_USD = Counter("llm_router_shadow_spend_usd_total", "Shadow and judge spend in USD by purpose.", ["purpose"])
