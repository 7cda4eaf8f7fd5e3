"""Which model answers in the shadow, and which one judges."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..catalog import Catalog, CatalogError, ModelSpec


def judge_model(catalog: Catalog, configured: str | None) -> ModelSpec:
    """SHADOW_JUDGE_MODEL, else the enabled frontier model with the highest prior (ties: the
    cheaper), else the enabled model with the highest prior."""
    if configured:
        if configured not in catalog:
            raise CatalogError(f"SHADOW_JUDGE_MODEL '{configured}' is not in the model catalog")
        return catalog.get(configured)
    enabled = catalog.enabled()
    if not enabled:
        raise CatalogError("the model catalog has no enabled model to judge with")
    frontier = [m for m in enabled if m.tier == "frontier"] or enabled
    return max(frontier, key=lambda m: (m.quality_prior, -m.output_usd_per_mtok))


def shadow_model(
    catalog: Catalog,
    answered: ModelSpec,
    ranked: Sequence[ModelSpec],
    needs: Collection[str],
    allowed: Collection[str] | None,
    excluded: Collection[str] = (),
) -> ModelSpec | None:
    """A model of another tier than the one that answered: the first such model of the request's
    own ranking (it already honours the request's constraints and the policy's order), else the
    cheapest enabled model of another tier that the tenant may use and that can serve the request."""
    for model in ranked:
        if model.tier != answered.tier:
            return model
    pool = [
        m
        for m in catalog.enabled()
        if m.tier != answered.tier
        and set(needs) <= set(m.capabilities)
        and (allowed is None or m.id in allowed)
        and m.id not in excluded
    ]
    return min(pool, key=lambda m: (m.input_usd_per_mtok + m.output_usd_per_mtok, m.id)) if pool else None
