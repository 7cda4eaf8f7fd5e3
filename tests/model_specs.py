"""Catalog entries for routing tests: OpenAI-compatible models on an endpoint nothing listens on
(routing never calls them)."""

from __future__ import annotations

from typing import Any

from shared.catalog import ModelSpec


def model_spec(
    id_: str, tier: str, price_in: float, price_out: float, latency: float = 500, **fields: Any
) -> ModelSpec:
    """`fields` override any other ModelSpec field (context_window, capabilities, ...)."""
    values: dict[str, Any] = {
        "id": id_,
        "provider": "openai",
        "upstream_model": id_,
        "base_url": "http://127.0.0.1:1/v1",
        "tier": tier,
        "context_window": 100_000,
        "max_output_tokens": 8192,
        "input_usd_per_mtok": price_in,
        "output_usd_per_mtok": price_out,
        "latency_ms_p50": latency,
    }
    return ModelSpec(**(values | fields))
