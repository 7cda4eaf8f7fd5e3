"""A tenant's own prior (shared/routing/tenant_prior.py): fitted on the tenant's labels over the
prompt's difficulty features and the shared estimate, refitted in the background, and what the
tenant's own neighbours are shrunk toward once it exists."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from shared.catalog import Catalog
from shared.encoders.hashing import HashingEncoder
from shared.examples.labelled import LabelledExample, Neighbours, example_id
from shared.index.base import IndexUnavailable, PageTooDeep
from shared.index.local import LocalIndex
from shared.metrics import count_tenant_prior_fit, render
from shared.routing.predictor import PredictorParams, estimate, predict_qualities
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from shared.routing.tenant_prior import PRIOR_STRENGTHS, TenantPriors, fit_tenant_prior
from tests.model_specs import model_spec

DIM = 256
TOPICS = ["invoice", "refund", "shipping", "warranty", "password", "delivery", "discount", "return"]
KEYS = [("big", "tier:frontier"), ("small", "tier:economy")]


def _short(topic: str, i: int) -> str:
    return f"{topic} question {i}?"


def _long(topic: str, i: int) -> str:
    return f"{topic} question {i}: " + " ".join(f"step {j} of the {topic} case with figure {j * i}" for j in range(12))


def _tenant_rows(n: int) -> list[LabelledExample]:
    """acme's feedback: on its long, many-step prompts only the big model answered well; on its
    short ones both did. One example per answered request, as feedback makes them."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        long = i % 2 == 0
        text = _long(topic, i) if long else _short(topic, i)
        for model, outcome in (("big", 1.0), ("small", 0.0 if long else 1.0)):
            rows.append(
                LabelledExample(
                    content=text,
                    outcomes={model: outcome},
                    tenant="acme",
                    source="feedback",
                    label_source="feedback",
                    id=example_id("feedback", f"r-{i}-{model}"),
                )
            )
    return rows


def _shared_rows() -> list[LabelledExample]:
    """Shared examples of the same topics that say the frontier tier gains 0.4 everywhere."""
    return [
        LabelledExample(content=f"{t} general help {i}", outcomes={"tier:frontier": 0.9, "tier:economy": 0.5})
        for i in range(20)
        for t in TOPICS
    ]


CATALOG = Catalog([model_spec("big", "frontier", 2.0, 8.0), model_spec("small", "economy", 0.1, 0.4)])


async def _index(encoder: HashingEncoder, tenant_rows: int = 120) -> LocalIndex:
    index = LocalIndex(encoder.dim)
    examples = _shared_rows() + _tenant_rows(tenant_rows)
    await index.upsert(examples, encoder.encode([ex.content for ex in examples]))
    return index


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(dim=DIM)


def _priors(prior: Any, text: str, keys: Any, shared: list[float]) -> list[float | None]:
    """Per model, the tenant prior's value for `text` (None: no prior for its keys)."""
    return [None if t is None else t[0] for t in prior.targets(text, keys, shared)]


def _gain(prior: Any, text: str, shared: tuple[float, float] = (0.9, 0.5)) -> float:
    big, small = _priors(prior, text, KEYS, list(shared))
    return float(big - small)


# --- fitting ---------------------------------------------------------------------------------


def test_the_prior_learns_what_the_tenants_labels_say_about_the_prompts_form() -> None:
    rows = _tenant_rows(120)
    prior = fit_tenant_prior(
        [ex.content for ex in rows], [ex.outcomes for ex in rows], [dict.fromkeys(ex.outcomes, 0.7) for ex in rows]
    )
    assert prior is not None and prior.examples == len(rows)
    assert set(prior.weights) == {"big", "small"}
    long_gain, short_gain = _gain(prior, _long("refund", 999)), _gain(prior, _short("refund", 999))
    assert long_gain > 0.6 and short_gain < 0.2
    big, small = _priors(prior, _short("refund", 999), KEYS, [0.9, 0.5])
    assert 0.01 <= small <= 0.99 and 0.01 <= big <= 0.99


def test_the_prior_learns_how_far_the_shared_estimate_speaks_for_the_tenant() -> None:
    """Prompts of one form, outcomes that follow the shared estimate: the prior follows it too."""
    rng = np.random.default_rng(0)
    texts = [f"ticket {i} about an order" for i in range(200)]
    shared = rng.uniform(0.1, 0.9, size=200)
    outcomes = [{"small": float(rng.random() < s)} for s in shared]
    prior = fit_tenant_prior(texts, outcomes, [{"small": float(s)} for s in shared])
    assert prior is not None
    low, high = (_priors(prior, "ticket 7 about an order", [("small",)], [s])[0] for s in (0.2, 0.8))
    assert low is not None and high is not None and high - low > 0.3


def test_keys_with_too_few_labels_get_no_prior() -> None:
    texts = [f"prompt {i}" for i in range(40)]
    outcomes = [{"big": 1.0} if i < 35 else {"small": 0.0} for i in range(40)]
    prior = fit_tenant_prior(texts, outcomes, [dict.fromkeys(o, 0.5) for o in outcomes], min_examples=30)
    assert prior is not None and set(prior.weights) == {"big"}
    big, small = _priors(prior, "prompt 99", KEYS, [0.8, 0.4])
    assert big is not None and small is None  # the shared estimate stays the target for `small`
    # the default asks for ten labels per coefficient
    assert fit_tenant_prior(texts, outcomes, [dict.fromkeys(o, 0.5) for o in outcomes]) is None
    many = [f"prompt {i}" for i in range(130)]
    fitted = fit_tenant_prior(many, [{"big": float(i % 2)} for i in range(130)], [{"big": 0.5}] * 130)
    assert fitted is not None and set(fitted.weights) == {"big"}


def test_examples_without_text_fit_on_the_shared_estimate_alone() -> None:
    """A tenant that stores no prompt text has examples with empty content: the text features
    are constant, get no weight, and the prompt's form does not move the prior."""
    shared = np.linspace(0.1, 0.9, 160)
    prior = fit_tenant_prior([""] * 160, [{"small": float(s > 0.5)} for s in shared], [{"small": s} for s in shared])
    assert prior is not None
    a = _priors(prior, "hi", [("small",)], [0.5])[0]
    b = _priors(prior, _long("invoice", 3), [("small",)], [0.5])[0]
    assert a == pytest.approx(b)


def _one_hot_vectors(groups: list[int], dim: int = 16, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.eye(dim)[groups] + noise * rng.standard_normal((len(groups), dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_a_key_whose_own_neighbours_know_its_tasks_better_declines_the_prior() -> None:
    """A mix of tasks of one form, where the small model fails on two of eight: the prompt's form
    says nothing, its nearest prompts say everything, so leave-one-out keeps the neighbours
    (shrunk toward the shared estimate) for `small` (and for `big`, right everywhere)."""
    n = 240
    topics = [i % len(TOPICS) for i in range(n)]
    texts = [_short(TOPICS[t], i) for i, t in enumerate(topics)]
    outcomes = [{"big": 1.0, "small": 0.0 if t < 2 else 1.0} for t in topics]
    shared = [{"big": 0.9, "small": 0.5}] * n
    with_vectors = fit_tenant_prior(texts, outcomes, shared, vectors=_one_hot_vectors(topics))
    assert with_vectors is not None and "small" in with_vectors.declined
    assert "small" not in with_vectors.weights
    assert _priors(with_vectors, texts[0], KEYS, [0.9, 0.5])[1] is None
    # a tenant that stores no prompt text: its prompts are told apart by their vectors
    textless = fit_tenant_prior([""] * n, outcomes, shared, vectors=_one_hot_vectors(topics))
    assert textless is not None and "small" in textless.declined
    # without the vectors there is nothing to choose by: the prior is used at the default strength
    blind = fit_tenant_prior(texts, outcomes, shared)
    assert blind is not None and set(blind.weights) == {"big", "small"} and not blind.declined
    assert {p.strength for p in blind.weights.values()} == {PredictorParams().tenant_prior_strength}


def test_a_key_whose_outcome_follows_the_prompts_form_takes_the_prior() -> None:
    """Long prompts fail the small model, short ones do not, and their vectors are of the same
    eight topics either way: the neighbours cannot tell them apart, the prior can."""
    rows = _tenant_rows(120)
    texts, outcomes = [ex.content for ex in rows], [ex.outcomes for ex in rows]
    topics = [TOPICS.index(ex.content.split()[0]) for ex in rows]
    prior = fit_tenant_prior(
        texts, outcomes, [dict.fromkeys(o, 0.7) for o in outcomes], vectors=_one_hot_vectors(topics)
    )
    assert prior is not None and "small" in prior.weights and not prior.declined
    assert prior.weights["small"].strength in PRIOR_STRENGTHS
    params = PredictorParams()
    own = Neighbours(["o1", "o2"], np.array([0.9, 0.9]), np.ones(2), ["big", "small"], np.array([[1.0, 0.5]] * 2))
    shared = Neighbours(["s"], np.array([0.9]), np.ones(1), ["tier:frontier", "tier:economy"], np.array([[0.9, 0.5]]))
    text = _long("refund", 5)
    base = predict_qualities(shared, KEYS, [0.7, 0.6], params)
    targets = prior.targets(text, KEYS, [e.quality for e in base])
    got = estimate(shared, own, KEYS, [0.7, 0.6], params, prior, text)
    mass = 2 * 0.9**2
    target, strength = targets[1] or (0.0, 0.0)
    assert got[1].quality == pytest.approx((mass * 0.5 + strength * target) / (mass + strength))  # at its strength


def test_labels_that_carry_nothing_leave_the_default_strength() -> None:
    """Coin-flip outcomes: no choice beats the default by more than chance, so it stands."""
    rng = np.random.default_rng(3)
    n = 300
    texts = [_long(TOPICS[i % 8], i) if i % 3 else _short(TOPICS[i % 8], i) for i in range(n)]
    outcomes = [{"big": float(rng.random() < 0.5), "small": float(rng.random() < 0.5)} for _ in range(n)]
    prior = fit_tenant_prior(
        texts, outcomes, [{"big": 0.9, "small": 0.5}] * n, vectors=_one_hot_vectors([i % 8 for i in range(n)])
    )
    assert prior is not None and not prior.declined
    assert {p.strength for p in prior.weights.values()} == {PredictorParams().tenant_prior_strength}


# --- the estimate ------------------------------------------------------------------------------


def test_the_tenants_neighbours_are_shrunk_toward_its_prior_as_strongly_as_shared_ones_toward_theirs() -> None:
    rows = _tenant_rows(120)
    prior = fit_tenant_prior(
        [ex.content for ex in rows], [ex.outcomes for ex in rows], [dict.fromkeys(ex.outcomes, 0.7) for ex in rows]
    )
    assert prior is not None
    params = PredictorParams()
    shared = Neighbours(["s"], np.array([0.9]), np.ones(1), ["tier:frontier", "tier:economy"], np.array([[0.9, 0.5]]))
    own = Neighbours(["o1", "o2"], np.array([0.8, 0.6]), np.ones(2), ["big", "small"], np.array([[1.0, 1.0]] * 2))
    text = _long("refund", 5)
    base = predict_qualities(shared, KEYS, [0.7, 0.6], params)
    target = _priors(prior, text, KEYS, [e.quality for e in base])
    got = estimate(shared, own, KEYS, [0.7, 0.6], params, prior, text)
    mass = 0.8**2 + 0.6**2
    for est, t in zip(got, target, strict=True):
        assert t is not None
        assert est.quality == pytest.approx((mass * 1.0 + params.tenant_prior_strength * t) / (mass + 20.0))
    # without the prior: toward the shared estimate, by a fifth of one example
    plain = estimate(shared, own, KEYS, [0.7, 0.6], params)
    assert plain[1].quality == pytest.approx((mass + 0.2 * base[1].quality) / (mass + 0.2))
    # no own neighbours: the prior is not read, the shared estimate stands
    assert estimate(shared, [], KEYS, [0.7, 0.6], params, prior, text) == base


# --- in the router ---------------------------------------------------------------------------


async def test_the_router_fits_a_tenants_prior_in_the_background_and_then_routes_by_it(
    encoder: HashingEncoder,
) -> None:
    index = await _index(encoder)
    priors = TenantPriors(index)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    plain = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None)
    # a long prompt in other words than acme's long ones: its neighbours are acme's refund
    # prompts of both lengths, and only the prompt's form says which kind it is
    long_q = "refund question 1001: " + " ".join(f"part {j}, an amount of {j * 7} euros" for j in range(12))
    short_q = _short("refund", 1002)

    def gain(d: Any) -> float:
        q = {c.model.id: c.predicted_quality for c in d.candidates}
        return float(q["big"] - q["small"])

    first = await router.decide(RoutingRequest(prompt=short_q, policy="balanced", tenant="acme"))
    before = await plain.decide(RoutingRequest(prompt=short_q, policy="balanced", tenant="acme"))
    assert gain(first) == pytest.approx(gain(before))  # nothing fitted yet: the decision did not wait
    assert first.public()["tenant_prior_examples"] == 0
    for _ in range(200):  # the fit runs beside the decisions
        if priors.get("acme", router.shared_estimate) is not None:
            break
        await asyncio.sleep(0.01)
    assert priors.get("acme", router.shared_estimate) is not None
    by_prior = [
        await router.decide(RoutingRequest(prompt=q, policy="balanced", tenant="acme")) for q in (long_q, short_q)
    ]
    by_kNN = [await plain.decide(RoutingRequest(prompt=q, policy="balanced", tenant="acme")) for q in (long_q, short_q)]
    # the prior tells acme's long prompts from its short ones more sharply than its neighbours alone
    assert gain(by_prior[0]) - gain(by_prior[1]) > gain(by_kNN[0]) - gain(by_kNN[1]) + 0.1
    assert gain(by_prior[1]) < 0.05  # and its short ones need no upgrade, as their neighbours say
    assert [d.public()["tenant_prior_examples"] for d in by_prior] == [240, 240]  # /api/v1/route says so
    # another tenant, and a request without one, never read acme's prior
    other = await router.decide(RoutingRequest(prompt=short_q, policy="balanced", tenant="other"))
    assert not other.own_neighbours and "other" not in priors._fitted
    await router.close()


async def test_a_stale_prior_is_refitted_and_an_index_outage_keeps_the_last_one(
    encoder: HashingEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    index = await _index(encoder, tenant_rows=60)
    now = [0.0]
    told: list[str] = []
    priors = TenantPriors(index, refresh_s=60.0, min_examples=30, clock=lambda: now[0], on_fit=told.append)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    first = await priors.refresh("acme", router.shared_estimate)
    assert first is not None and first.examples == 120
    assert priors.get("acme", router.shared_estimate) is first and not priors._running  # fresh: no refit
    more = _tenant_rows(90)[120:]
    await index.upsert(more, encoder.encode([ex.content for ex in more]))
    now[0] = 61.0
    assert priors.get("acme", router.shared_estimate) is first  # stale: still answers, refits beside
    await asyncio.gather(*priors._running.values())
    refitted = priors.get("acme", router.shared_estimate)
    assert refitted is not None and refitted.examples == 180

    class Down:
        async def own_examples(self, tenant: str, *, limit: int) -> Any:
            raise IndexUnavailable("Weaviate is down")

    priors.source = Down()  # type: ignore[assignment]
    now[0] = 200.0
    with caplog.at_level(logging.WARNING, logger="shared.routing.tenant_prior"):
        assert priors.get("acme", router.shared_estimate) is refitted
        await asyncio.gather(*priors._running.values())
    assert priors.get("acme", router.shared_estimate) is refitted  # kept, and not retried at once
    assert not priors._running
    assert "could not fit tenant acme's prior: IndexUnavailable" in caplog.text
    assert told == ["fitted", "fitted", "failed"]
    priors.source = index
    assert await priors.refresh("nobody", router.shared_estimate) is None
    assert told[-1] == "too_few_labels"


def test_fits_are_counted_for_operators() -> None:
    before = REGISTRY.get_sample_value("llm_router_tenant_prior_fits_total", {"outcome": "failed"}) or 0.0
    count_tenant_prior_fit("failed")
    assert REGISTRY.get_sample_value("llm_router_tenant_prior_fits_total", {"outcome": "failed"}) == before + 1
    assert b'llm_router_tenant_prior_fits_total{outcome="failed"}' in render()[0]


async def test_a_fit_gives_the_event_loop_back_between_its_searches(encoder: HashingEncoder) -> None:
    """The local index's searches never suspend: a fit of 240 examples must still let decisions run."""
    index = await _index(encoder)
    priors = TenantPriors(index)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    ticks = 0
    done = asyncio.Event()

    async def other_work() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    seen: list[int] = []  # the other work's progress at each search

    async def shared(vector: np.ndarray, text: str, key: str) -> float:
        seen.append(ticks)
        return await router.shared_estimate(vector, text, key)

    beside = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    prior = await priors.refresh("acme", shared)
    done.set()
    await beside
    assert prior is not None and prior.examples == 240 and len(seen) == 240
    assert seen[-1] - seen[0] >= 240 // 8 - 1  # it ran between the searches, not only after them


async def test_at_most_max_tenants_priors_are_kept_and_close_cancels_running_fits(encoder: HashingEncoder) -> None:
    index = await _index(encoder, tenant_rows=40)
    priors = TenantPriors(index, max_tenants=2)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    for tenant in ("acme", "b", "c"):
        await priors.refresh(tenant, router.shared_estimate)
    assert list(priors._fitted) == ["b", "c"]  # the least recently used went first
    gate = asyncio.Event()

    async def slow(vector: np.ndarray, text: str, key: str) -> float:
        await gate.wait()
        return 0.5

    priors.get("acme", slow)
    assert "acme" in priors._running
    await priors.close()
    assert not priors._running


async def test_a_tenants_examples_and_vectors_read_the_same_from_weaviate_and_the_local_index(
    encoder: HashingEncoder, make_weaviate_index: Callable[..., Any]
) -> None:
    local = await _index(encoder, tenant_rows=30)
    remote = make_weaviate_index(encoder.dim, encoder.name)
    examples = _shared_rows() + _tenant_rows(30)
    await remote.upsert(examples, encoder.encode([ex.content for ex in examples]))
    a, va = await local.own_examples("acme", limit=1000)
    b, vb = await remote.own_examples("acme", limit=1000)
    assert len(a) == len(b) == 60 and {ex.tenant for ex in b} == {"acme"}
    by_id = {ex.id: (ex, v) for ex, v in zip(b, vb, strict=True)}
    for ex, v in zip(a, va, strict=True):
        other, w = by_id[ex.id]
        assert (other.content, other.outcomes) == (ex.content, ex.outcomes)
        assert np.allclose(v, w, atol=1e-6)
    assert len((await remote.own_examples("acme", limit=7))[0]) == 7
    assert (await remote.own_examples("nobody", limit=10))[0] == []
    empty, vectors = await local.own_examples("nobody", limit=10)
    assert empty == [] and vectors.shape == (0, encoder.dim)


async def test_a_tenant_past_weaviates_query_maximum_is_read_in_pages_the_latest_first(
    encoder: HashingEncoder,
    make_weaviate_index: Callable[..., Any],
    fake_weaviate: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Weaviate refuses a filtered query whose offset + limit passes QUERY_MAXIMUM_RESULTS, so a
    tenant with more examples than that is read in pages keyed on `created_at`. Examples written
    in one batch share it, and a page boundary falls inside a batch here (pages of 10, batches of
    4): none is read twice or lost."""
    fake_weaviate.query_maximum_results = 10
    monkeypatch.setattr("shared.index.weaviate.QUERY_PAGE", 10)
    remote = make_weaviate_index(encoder.dim, encoder.name)
    remote.batch_size = 4
    older, newer = _tenant_rows(15), _tenant_rows(26)[15 * 2 :]  # 30 examples, then 22
    for rows in (older, newer):
        await remote.upsert(rows, encoder.encode([ex.content for ex in rows]))
    with pytest.raises(PageTooDeep, match="QUERY_MAXIMUM_RESULTS"):
        await remote.list(limit=11, tenant="acme")  # what a single query of the tenant's rows met
    examples, vectors = await remote.own_examples("acme", limit=1000)
    assert sorted(ex.id for ex in examples) == sorted(ex.id for ex in older + newer)
    assert vectors.shape == (52, encoder.dim)
    assert np.allclose(vectors, encoder.encode([ex.content for ex in examples]), atol=1e-6)
    # oldest first, as the local index lists them: the newer rows are the last 22
    assert {ex.id for ex in examples[-22:]} == {ex.id for ex in newer}
    latest, _ = await remote.own_examples("acme", limit=22)
    assert {ex.id for ex in latest} == {ex.id for ex in newer}


async def test_pages_that_each_hold_one_write_batch_are_read_whole(
    encoder: HashingEncoder,
    make_weaviate_index: Callable[..., Any],
    fake_weaviate: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every example of a write batch has the same `created_at`: a page of one batch is read again
    by that instant, and the next page starts below it."""
    fake_weaviate.query_maximum_results = 5
    monkeypatch.setattr("shared.index.weaviate.QUERY_PAGE", 5)
    remote = make_weaviate_index(encoder.dim, encoder.name)
    remote.batch_size = 5
    rows = _tenant_rows(8)[:15]  # three batches of five
    await remote.upsert(rows, encoder.encode([ex.content for ex in rows]))
    examples, _ = await remote.own_examples("acme", limit=100)
    assert sorted(ex.id for ex in examples) == sorted(ex.id for ex in rows)
    latest, _ = await remote.own_examples("acme", limit=12)
    assert len(latest) == 12 and {ex.id for ex in rows[5:]} <= {ex.id for ex in latest}
