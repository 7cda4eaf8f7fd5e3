"""The shipped router on everyday and hard prompts (issue #13): the shipped catalog, starter
examples, encoder state and difficulty prior, under `auto` (the balanced policy).

`tests/data/everyday_and_hard_prompts.csv` lists prompts with the tier they should get:
`economy` for greetings, thanks, one-line facts, short translations and reformatting; `up`
(balanced or frontier) for proofs, system design and multi-step code or maths.

Every hard prompt must go up. Everyday prompts: the starter examples are benchmarks, which hold
few prompts like them, so the router's evidence about them is thin or accidental. Greetings and
thanks are caught by the calibrated typicality floor (shared/routing/typicality.py); short
translations and reformatting find benchmark neighbours as dense as a proof's, but whose gains
disagree, so the upgrade confidence (BALANCED_UPGRADE_CONFIDENCE, policy.rank) keeps most of them
on economy. The share that reaches economy is pinned here so that it can only improve
(docs/routing-quality.md, "Confidence and everyday prompts" and "Paying for an upgrade", says
where it stands and why).
"""

from __future__ import annotations

import csv

from shared.catalog import Catalog
from shared.composition.assemble import build_encoder, build_local_index, build_router
from shared.config import Settings
from shared.routing.request import RoutingRequest
from tests.conftest import ROOT

TABLE = ROOT / "tests" / "data" / "everyday_and_hard_prompts.csv"
EVERYDAY_TO_ECONOMY_AT_LEAST = 19


async def test_everyday_prompts_go_cheap_and_hard_ones_go_up() -> None:
    settings = Settings()
    encoder = build_encoder(settings)
    index, priors = await build_local_index(settings, encoder)
    # the router exactly as the app builds it from its settings
    router = build_router(settings, Catalog.load(settings.model_catalog_path), encoder, index, priors)
    with TABLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 40
    chosen = {}
    for row in rows:
        decision = await router.decide(RoutingRequest(prompt=row["prompt"], policy="balanced"))
        chosen[row["prompt"]] = decision.chosen.tier
        assert 0.0 <= decision.confidence <= 1.0 and decision.public()["confidence_reason"]
    hard_down = [p for p, r in zip(chosen, rows, strict=True) if r["expected"] == "up" and chosen[p] == "economy"]
    assert hard_down == []
    everyday = [r["prompt"] for r in rows if r["expected"] == "economy"]
    cheap = [p for p in everyday if chosen[p] == "economy"]
    assert len(cheap) >= EVERYDAY_TO_ECONOMY_AT_LEAST, f"economy for only {cheap}"
    assert chosen["ok"] == "economy"  # no labelled neighbour at all: low confidence, cheapest model
    # greetings and thanks find only accidental neighbours, thinner than the examples' own
    # neighbourhoods (the calibrated typicality floor): low confidence, cheapest model
    for prompt in ("hi", "Say hello", "hello there!", "Good morning!", "thanks!"):
        decision = await router.decide(RoutingRequest(prompt=prompt, policy="balanced"))
        assert decision.low_confidence and "neighbour mass" in decision.confidence_reason
        assert decision.chosen.tier == "economy"
