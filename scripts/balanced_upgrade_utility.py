"""What `BALANCED_UPGRADE_CONFIDENCE` buys: the balanced policy's realised utility on held-out
starter examples (docs/routing-quality.md, "Paying for an upgrade").

5-fold over the shipped starter examples: the router (as the app builds it: shipped encoder
state, difficulty prior, typicality floor, shipped catalog) indexes four folds and decides every
prompt of the fifth under `balanced`, once per confidence level. A prompt may go only to a tier
it has an outcome for (MMLU rows carry no balanced outcome). Realised utility is what the
balanced policy maximises, with the outcome that tier really had:

    utility = outcome(chosen tier) - BALANCED_COST_WEIGHT * log10(cost(chosen) / cost(cheapest eligible))

The encoder state and the difficulty prior were fitted on all starter rows, so every level sees
the same small advantage; only the ranking step differs between levels.

    python scripts/balanced_upgrade_utility.py            # about five minutes
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.catalog import Catalog
from shared.composition.assemble import build_encoder, build_router, load_starter
from shared.config import Settings
from shared.index.local import LocalIndex
from shared.routing.predictor import outcome_priors
from shared.routing.request import RoutingRequest

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.975, 0.99)
FOLDS = 5


async def main() -> None:
    base = Settings()
    catalog = Catalog.load(base.model_catalog_path)
    encoder = build_encoder(base)
    examples = load_starter(base)
    vectors = encoder.encode([ex.content for ex in examples])
    fold = np.random.default_rng(0).permutation(len(examples)) % FOLDS
    utility = {c: [] for c in LEVELS}
    quality = {c: [] for c in LEVELS}
    tiers = {c: [] for c in LEVELS}
    always: dict[str, list[float]] = {"frontier": [], "economy": []}  # the two fixed choices, for scale
    for f in range(FOLDS):
        train = np.flatnonzero(fold != f)
        index = LocalIndex(encoder.dim)
        index.upsert_sync([examples[i] for i in train], vectors[train])
        await index.refresh()
        priors = outcome_priors([examples[i].outcomes for i in train])
        routers = {
            c: build_router(Settings(balanced_upgrade_confidence=c), catalog, encoder, index, priors) for c in LEVELS
        }
        for i in np.flatnonzero(fold == f):
            ex = examples[i]
            allowed = [m.id for m in catalog.enabled() if f"tier:{m.tier}" in ex.outcomes]
            req = RoutingRequest(prompt=ex.content, policy="balanced", allowed_models=allowed)
            for c, router in routers.items():
                d = await router.decide(req)
                cheapest = min(x.estimated_cost_usd for x in d.candidates if x.eligible)
                if c == LEVELS[0]:
                    for tier, values in always.items():
                        cost = min(x.estimated_cost_usd for x in d.candidates if x.model.tier == tier)
                        u = ex.outcomes[f"tier:{tier}"] - base.balanced_cost_weight * math.log10(cost / cheapest)
                        values.append(u)
                q = ex.outcomes[f"tier:{d.chosen.tier}"]
                cost = d.ranked[0].estimated_cost_usd
                utility[c].append(q - base.balanced_cost_weight * math.log10(cost / cheapest))
                quality[c].append(q)
                tiers[c].append(d.chosen.tier)
        print(f"fold {f + 1}/{FOLDS} done", file=sys.stderr, flush=True)
    print(
        f"n = {len(examples)}; every prompt to the frontier tier: utility {np.mean(always['frontier']):.4f}, ", end=""
    )
    print(f"to the economy tier: {np.mean(always['economy']):.4f}")
    print("confidence  utility  vs 0.5 (± s.e., paired)  quality  economy  balanced  frontier")
    ref = np.array(utility[LEVELS[0]])
    for c in LEVELS:
        share = {t: np.mean([x == t for x in tiers[c]]) for t in ("economy", "balanced", "frontier")}
        diff = np.array(utility[c]) - ref
        print(
            f"{c:10}  {np.mean(utility[c]):.4f}   {diff.mean():+.4f} ± {diff.std() / math.sqrt(len(diff)):.4f}"
            f"        {np.mean(quality[c]):.4f}   {share['economy']:.3f}    {share['balanced']:.3f}     "
            f"{share['frontier']:.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
