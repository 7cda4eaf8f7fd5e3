"""Learning from a tenant's own labels (issue #13, item 4): the tenant's examples are read by a
second, tenant-only search, so thousands of shared examples cannot crowd them out, and their
estimate takes precedence over the shared one as their evidence grows."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from shared.catalog import Catalog
from shared.encoders.hashing import HashingEncoder
from shared.examples.labelled import LabelledExample, Neighbours, example_id
from shared.index.local import LocalIndex
from shared.routing.predictor import PredictorParams, estimate
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from tests.model_specs import model_spec

DIM = 256
COUNTRIES = ["france", "spain", "italy", "germany", "poland", "norway", "greece", "egypt", "japan", "chile"]


def _examples() -> list[LabelledExample]:
    """300 shared benchmark-like examples (the frontier tier wins) and, for tenant acme,
    20 feedback examples on its own prompts, less similar to the query than the shared ones, where
    the economy model answered as well as the frontier one."""
    shared = [
        LabelledExample(
            content=f"what is the capital city of {c} question {i}",
            outcomes={"tier:frontier": 1.0, "tier:economy": 0.0},
        )
        for i in range(30)
        for c in COUNTRIES
    ]
    own = [
        LabelledExample(
            content=f"our shop asks: what is the capital of {c}, answer briefly for a customer",
            outcomes={model: 1.0},
            tenant="acme",
            source="feedback",
            label_source="feedback",
            id=example_id("feedback", f"request-{c}-{model}"),  # one example per answered request
        )
        for c in COUNTRIES
        for model in ("big", "small")
    ]
    return shared + own


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(dim=DIM)


async def _filled(index: Any, encoder: HashingEncoder) -> list[LabelledExample]:
    examples = _examples()
    await index.upsert(examples, encoder.encode([ex.content for ex in examples]))
    return examples


async def test_a_tenants_labels_are_not_crowded_out_by_shared_examples(encoder: HashingEncoder) -> None:
    """With one search, k = 20 slots all go to the (more similar) shared examples and acme's own
    labels are never read; the second search reads them and acme's predicted gain of the frontier
    model shrinks toward its own labels (none). Fails on the single-search router (acme's
    estimate was everyone's)."""
    index = LocalIndex(encoder.dim)
    examples = await _filled(index, encoder)
    catalog = Catalog([model_spec("big", "frontier", 2.0, 8.0), model_spec("small", "economy", 0.1, 0.4)])
    router = Router(catalog, encoder, index, params=PredictorParams(k=20), difficulty=None)
    prompt = "what is the capital city of france"
    acme = await router.decide(RoutingRequest(prompt=prompt, policy="cost", tenant="acme"))
    other = await router.decide(RoutingRequest(prompt=prompt, policy="cost", tenant="other"))
    own_ids = {ex.id for ex in examples if ex.tenant == "acme"}
    assert other.chosen.id == "big" and not other.own_neighbours

    def gain(d: Any) -> float:
        q = {c.model.id: c.predicted_quality for c in d.candidates}
        return float(q["big"] - q["small"])

    assert gain(other) > 0.3
    assert gain(acme) < 0.5 * gain(other)
    assert {n.id for n in acme.own_neighbours} == own_ids
    assert not own_ids & {n.id for n in acme.neighbours}  # they are not among the 20 shared slots
    body = acme.public()
    assert len(body["tenant_neighbours"]) == len(own_ids)  # type: ignore[arg-type]
    # a short listing merges both searches, most similar first, each row with its own id
    merged = sorted([*acme.neighbours, *acme.own_neighbours], key=lambda n: -n.similarity)
    listed = acme.public(5)
    assert [n["id"] for n in listed["neighbours"]] == [n.id for n in merged[:5]]  # type: ignore[attr-defined]
    every = acme.public()["neighbours"]
    assert [n["id"] for n in every] == [n.id for n in merged]  # type: ignore[attr-defined]
    assert {n["id"] for n in every[: len(own_ids) + 5]} & own_ids  # the two searches interleave
    assert listed["neighbours_total"] == len(merged) and listed["tenant_neighbours_total"] == len(own_ids)
    assert acme.confidence > other.confidence  # the tenant's evidence adds to the confidence


async def test_tenant_search_is_the_same_on_weaviate_and_the_local_index(
    encoder: HashingEncoder, make_weaviate_index: Callable[..., Any]
) -> None:
    local = LocalIndex(encoder.dim)
    remote = make_weaviate_index(encoder.dim, encoder.name)
    examples = await _filled(local, encoder)
    await _filled(remote, encoder)
    own_ids = {ex.id for ex in examples if ex.tenant == "acme"}
    q = encoder.encode(["what is the capital of spain"])[0]
    a = await local.search_own(q, 6, tenant="acme")
    b = await remote.search_own(q, 6, tenant="acme")
    assert len(a) == len(b) == 6 and {n.id for n in a} <= own_ids
    assert [n.id for n in b] == [n.id for n in a]
    assert [n.similarity for n in b] == pytest.approx([n.similarity for n in a], abs=1e-5)
    assert await local.search_own(q, 6, tenant="nobody") == []
    assert await remote.search_own(q, 6, tenant="nobody") == []


def _own(n: int, gain: float) -> Neighbours:
    """n tenant neighbours at similarity 0.5 whose own labels say strong - weak = gain."""
    keys = ["strong-model", "weak-model"]
    outcomes = np.array([[0.5 + gain / 2, 0.5 - gain / 2]] * n)
    return Neighbours([f"own-{i}" for i in range(n)], np.full(n, 0.5), np.ones(n), keys, outcomes)


def test_the_tenants_estimate_takes_over_monotonically_as_its_evidence_grows() -> None:
    """Shared evidence says the strong model gains 0.4; the tenant's own labels say it gains
    nothing. Each added label moves the predicted gain toward the tenant's, never back."""
    params = PredictorParams()
    shared = Neighbours(
        [f"s-{i}" for i in range(50)],
        np.full(50, 0.9),
        np.ones(50),
        ["tier:frontier", "tier:economy"],
        np.array([[0.9, 0.5]] * 50),
    )
    keys = [("strong-model", "tier:frontier"), ("weak-model", "tier:economy")]
    gains = []
    for n in (0, 1, 5, 20, 100, 400):
        est = estimate(shared, _own(n, 0.0), keys, [0.7, 0.6], params)
        gains.append(est[0].quality - est[1].quality)
    assert gains[0] > 0.3  # no own labels: the shared estimate alone
    assert all(b < a for a, b in itertools.pairwise(gains))
    assert gains[-1] < 0.01  # with many labels the tenant's own evidence decides


async def test_a_prompt_unlike_the_examples_is_low_confidence_by_the_calibrated_floor(
    encoder: HashingEncoder,
) -> None:
    """The floor is the examples' own leave-one-out neighbour mass quantile; a prompt with a
    thinner neighbourhood goes to the cheapest model under balanced and says why, one as dense
    as the examples' own does not."""
    from shared.routing.typicality import TypicalityFloor

    index = LocalIndex(encoder.dim)
    examples = await _filled(index, encoder)
    shared = [ex for ex in examples if ex.tenant is None]
    vectors = encoder.encode([ex.content for ex in shared])
    params = PredictorParams(k=20)
    floor = TypicalityFloor.calibrate(
        vectors, index.search_sync, encoder=encoder.name, k=params.k, power=params.similarity_power, rate=0.01
    )
    assert floor.floor > 0 and floor.sample == len(shared)
    catalog = Catalog([model_spec("big", "frontier", 2.0, 8.0), model_spec("small", "economy", 0.1, 0.4)])
    router = Router(catalog, encoder, index, params=params, difficulty=None, typicality=floor)
    known = await router.decide(RoutingRequest(prompt="what is the capital city of chile", policy="balanced"))
    assert not known.low_confidence and known.chosen.id == "big"
    odd = await router.decide(RoutingRequest(prompt="what is the capital city", policy="balanced"))
    assert odd.neighbours and odd.low_confidence and odd.chosen.id == "small"
    assert "neighbour mass" in odd.confidence_reason
    # measured with another encoder state: not applied
    other = Router(
        catalog,
        encoder,
        index,
        params=params,
        difficulty=None,
        typicality=floor.__class__(floor=floor.floor, encoder="another", k=20, power=2.0, rate=0.01, sample=1),
    )
    assert other.typicality is None
