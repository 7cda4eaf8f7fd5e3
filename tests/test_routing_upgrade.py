"""Paying for an upgrade only on evidence (BALANCED_UPGRADE_CONFIDENCE, docs/routing-quality.md):
the standard error of a predicted gain, the balanced policy's discount, and the router's choice."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from shared.catalog import Catalog, ModelSpec
from shared.encoders.hashing import HashingEncoder
from shared.examples.labelled import LabelledExample, Neighbour
from shared.index.local import LocalIndex
from shared.routing.policy import Candidate, rank
from shared.routing.predictor import GainSpread, PredictorParams, gain_stderrs
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from tests.model_specs import model_spec

HIGH, LOW = "tier:frontier", "tier:economy"


def _model(id_: str, tier: str, price: float) -> ModelSpec:
    return model_spec(id_, tier, price, 4 * price)


def test_the_gain_stderr_is_the_paired_standard_error_of_the_shrunk_gain() -> None:
    params = PredictorParams(prior_strength=2.0, similarity_power=1.0)
    nbs = [
        Neighbour("a", 0.9, {HIGH: 1.0, LOW: 0.0}),
        Neighbour("b", 0.8, {HIGH: 1.0, LOW: 1.0}),
        Neighbour("c", 0.5, {HIGH: 0.0, LOW: 1.0}),
        Neighbour("d", 0.7, {HIGH: 1.0, "tier:balanced": 1.0}),  # no economy outcome: not a pair
    ]
    w = np.array([0.9, 0.8, 0.5])
    g = np.array([1.0, 0.0, -1.0])
    mean = (w @ g) / w.sum()
    var = (w @ (g - mean) ** 2) / w.sum()
    expected = math.sqrt(var * (w @ w)) / (w.sum() + 2.0)
    se = gain_stderrs(nbs, LOW, params)
    assert se[HIGH] == pytest.approx(expected)
    assert se[LOW] == 0.0  # a key against itself has no spread
    assert "tier:balanced" not in se  # never beside an economy outcome: nothing to measure
    assert gain_stderrs(nbs, "some-model", params) == {}  # a base key no neighbour carries
    assert gain_stderrs([], LOW, params) == {}


def test_consistent_evidence_has_no_spread_and_more_evidence_less() -> None:
    params = PredictorParams(prior_strength=20.0, similarity_power=2.0)
    same = [Neighbour(str(i), 0.8, {HIGH: 0.9, LOW: 0.6}) for i in range(30)]
    assert gain_stderrs(same, LOW, params)[HIGH] == pytest.approx(0.0)
    mixed = [Neighbour(str(i), 0.8, {HIGH: float(i % 3 != 0), LOW: float(i % 2)}) for i in range(300)]
    few, many = (gain_stderrs(mixed[:n], LOW, params)[HIGH] for n in (30, 300))
    assert 0.0 < many < few
    # the spread is read on the most specific keys the neighbours carry in pairs: the models' own
    # (examples labelled per model), else their tiers (the shipped examples)
    assert GainSpread(mixed[:30], params)(("big", HIGH), ("small", LOW)) == pytest.approx(few)
    by_model = [Neighbour(n.id, n.similarity, {"big": n.outcomes[HIGH], "small": n.outcomes[LOW]}) for n in mixed[:30]]
    assert GainSpread(by_model, params)(("big", HIGH), ("small", LOW)) == pytest.approx(few)
    assert GainSpread(by_model, params)(("other", HIGH), ("small", LOW)) == 0.0  # no pairs at all


def test_balanced_pays_for_an_upgrade_only_when_its_gain_clears_its_cost_with_confidence() -> None:
    big, small = _model("big", "frontier", 2.0), _model("small", "economy", 0.1)

    def candidates() -> list[Candidate]:
        return [
            Candidate(model=big, predicted_quality=0.80, evidence=10, estimated_cost_usd=big.cost_usd(1000, 500)),
            Candidate(model=small, predicted_quality=0.70, evidence=10, estimated_cost_usd=small.cost_usd(1000, 500)),
        ]

    cost_term = 0.05 * math.log10(big.cost_usd(1000, 500) / small.cost_usd(1000, 500))
    assert cost_term < 0.10  # on the point estimate, the upgrade pays
    z = NormalDist().inv_cdf(0.95)
    on_point = rank(candidates(), "balanced", margin=0.05, cost_weight=0.05)
    assert on_point[0].model.id == "big"

    def spread(keys: object, base_keys: object) -> float:
        return 0.04

    sure = rank(candidates(), "balanced", margin=0.05, cost_weight=0.05, upgrade_z=z, spread=lambda *_: 0.005)
    unsure = rank(candidates(), "balanced", margin=0.05, cost_weight=0.05, upgrade_z=z, spread=spread)
    assert sure[0].model.id == "big"
    assert [c.model.id for c in unsure] == ["small", "big"]  # the upgrade stays the first fallback
    by_id = {c.model.id: c for c in unsure}
    assert by_id["big"].gain_stderr == 0.04 and by_id["small"].gain_stderr == 0.0
    assert by_id["big"].score == pytest.approx(0.80 - z * 0.04 - cost_term)
    assert unsure[0].notes[:2] == [
        "best quality for its cost",
        "big is ahead only on its point estimate: its gain is not shown",
    ]
    assert len(sure[0].notes) == 2 and "ahead only" not in " ".join(sure[0].notes)
    assert any("standard errors" in note for note in by_id["big"].notes)
    assert by_id["big"].public(2)["gain_stderr"] == 0.04


async def test_the_router_upgrades_on_consistent_evidence_and_not_on_noisy_evidence() -> None:
    """Two neighbourhoods with the same mean gain of the frontier tier over economy (0.3): one
    where every example shows it, one where it is the average of wins and losses. With the
    upgrade confidence the router pays for the frontier model only on the first."""
    encoder = HashingEncoder(dim=256)
    catalog = Catalog([_model("big", "frontier", 2.0), _model("small", "economy", 0.1)], {})
    consistent = "integrate the rational function over the unit interval"
    noisy = "summarise the quarterly sales memo for the board"
    rows = [(consistent, {HIGH: 0.9, LOW: 0.6})] * 20
    # mean gain 0.3 as well, from wins, ties and losses of the frontier tier
    rows += [
        (noisy, {HIGH: h, LOW: e}) for h, e in [(1.0, 0.0)] * 8 + [(1.0, 1.0)] * 8 + [(0.0, 1.0)] * 2 + [(0.0, 0.0)] * 2
    ]
    examples = [LabelledExample(content=t, outcomes=o, source="t", id=f"x{i}") for i, (t, o) in enumerate(rows)]
    index = LocalIndex(encoder.dim)
    await index.upsert(examples, encoder.encode([ex.content for ex in examples]))

    def router(confidence: float) -> Router:
        priors = {HIGH: 0.5, LOW: 0.5}
        return Router(
            catalog, encoder, index, priors=priors, upgrade_confidence=confidence, difficulty=None, typicality=None
        )

    for prompt in (consistent, noisy):
        on_point = await router(0.5).decide(RoutingRequest(prompt=prompt, policy="balanced"))
        assert on_point.chosen.id == "big"
    careful = router(0.95)
    sure = await careful.decide(RoutingRequest(prompt=consistent, policy="balanced"))
    unsure = await careful.decide(RoutingRequest(prompt=noisy, policy="balanced"))
    assert sure.chosen.id == "big"
    assert unsure.chosen.id == "small" and unsure.fallbacks[0].id == "big"
    big = next(c for c in unsure.public()["candidates"] if c["model"] == "big")  # type: ignore[union-attr]
    assert big["gain_stderr"] > 0.0  # type: ignore[index]
    # other policies are not changed by it
    quality = await careful.decide(RoutingRequest(prompt=noisy, policy="quality"))
    assert quality.chosen.id == "big"
