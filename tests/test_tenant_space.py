"""A tenant's own vector space (shared/routing/tenant_space.py): chosen on the tenant's own labels
when an encoder fitted on its texts finds neighbours that know its outcomes better than the
shared encoder's, declined when it does not, and searched by the router in place of the index's
tenant search once chosen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from shared.catalog import Catalog
from shared.encoders.base import normalise_rows
from shared.evaluation import GainScorer
from shared.examples.labelled import LabelledExample, example_id
from shared.examples.nearest import top_k
from shared.index.local import LocalIndex
from shared.metrics import count_tenant_space, record_tenant_spaces, render
from shared.routing.predictor import PredictorParams
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from shared.routing.tenant_prior import TenantPriors
from shared.routing.tenant_space import MIN_PROMPTS, TenantSpace, fit_tenant_space, spaces_over_budget
from tests.model_specs import model_spec

CATALOG = Catalog([model_spec("big", "frontier", 2.0, 8.0), model_spec("small", "economy", 0.1, 0.4)])
FILLER = [
    "please",
    "could",
    "you",
    "help",
    "me",
    "with",
    "this",
    "question",
    "about",
    "the",
    "following",
    "task",
    "thanks",
    "again",
    "for",
    "it",
]
# the words that decide the small model's outcome: it fails on integrals, not on matrices
HARD, EASY = "integral antiderivative substitution", "matrix determinant transpose"


def _prompt(i: int, rng: np.random.Generator) -> str:
    words = list(rng.choice(FILLER, size=8))
    return " ".join([*words[:4], HARD if i % 2 == 0 else EASY, *words[4:], f"case {i}"])


def _tenant_rows(n: int, seed: int = 0) -> list[LabelledExample]:
    """acme's feedback on n prompts, one example per answering model as feedback makes them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        text = _prompt(i, rng)
        for model, outcome in (("big", 1.0), ("small", 0.0 if i % 2 == 0 else 1.0)):
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


class FormEncoder:
    """The shared encoder as a tenant from an unseen domain meets it: its basis knows the prompts'
    form (here, only their length), not the words that decide the tenant's outcomes."""

    name = "form-8"
    dim = 8

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dim))
        for r, text in enumerate(texts):
            rows[r, 0] = 1.0
            rows[r, 1 + len(text) % (self.dim - 1)] = 0.3
        return normalise_rows(rows)


def _targets(rows: Sequence[LabelledExample]) -> list[dict[str, tuple[float, float]]]:
    return [dict.fromkeys(ex.outcomes, (0.5, PredictorParams().tenant_strength)) for ex in rows]


# --- the choice ----------------------------------------------------------------------------------


def test_a_space_holds_each_prompt_once_and_returns_what_a_search_of_every_example_would() -> None:
    """Feedback stores a prompt once per answering model: the space multiplies each distinct prompt
    once, and its top k is still every example's, the two examples of a prompt (equal similarity)
    cut by position as every search cuts ties."""
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    vectors = FormEncoder().encode([ex.content for ex in rows])
    space = fit_tenant_space(rows, vectors, range(len(rows)), _targets(rows), PredictorParams())
    assert space is not None
    assert len(space.prompts) == len({ex.content for ex in rows}) == len(rows) // 2
    rng = np.random.default_rng(7)
    for i in range(2000, 2010):
        text = _prompt(i, rng)
        query = space.encoder.encode_one(text)
        # every example's similarity (equal for a prompt's two examples, bit for bit)
        every = (space.prompts @ query)[space.group]
        assert np.allclose(every, space.encoder.encode([ex.content for ex in rows]) @ query, atol=1e-5)
        for k in (1, 7, 40):  # odd k: the cut falls between a prompt's two examples
            expected = sorted(range(len(rows)), key=lambda j: (-float(every[j]), j))[:k]
            found = space.search(text, k)
            assert list(found.ids) == [rows[j].id for j in expected]
            assert np.allclose(found.similarities, every[expected])


class _FixedQuery:
    """Stands for the tenant's encoder: the search's input is a query vector, given here."""

    def __init__(self, query: np.ndarray) -> None:
        self.query = query

    def encode_one(self, text: str) -> np.ndarray:
        return self.query


def test_a_search_returns_every_examples_top_k_whatever_the_prompts_sizes_and_ties() -> None:
    """Prompts with one to four examples each, scattered over the positions, and whole-number
    vectors, so that equal similarities are equal bit for bit: distinct prompts tie too, at the cut
    and across it. For every k the search returns the brute-force ranking of every example,
    ties to the lower position; k = 0 returns nothing."""
    rng = np.random.default_rng(3)
    n_prompts = 60
    prompts = rng.integers(-2, 3, size=(n_prompts, 4)).astype(np.float32)
    group = rng.permutation(np.repeat(np.arange(n_prompts), rng.integers(1, 5, size=n_prompts)))
    n = len(group)
    evidence = np.column_stack([np.ones(n), np.ones(n), np.arange(n) / n])
    for query in (np.array([1, 0, 0, 0], dtype=np.float32), np.array([1, -1, 2, 0], dtype=np.float32)):
        space = TenantSpace(
            encoder=_FixedQuery(query),  # type: ignore[arg-type]
            prompts=prompts,
            group=group,
            ids=np.array([f"ex-{i}" for i in range(n)], dtype=object),
            keys=("m",),
            evidence=evidence,
            gain=0.0,
        )
        every = (prompts @ query)[group]
        assert len(np.unique(every)) < n_prompts  # ties between prompts, not only within one
        for k in (*range(1, 12), 37, n - 1, n, n + 5):
            expected = sorted(range(n), key=lambda j: (-float(every[j]), j))[:k]
            found = space.search("any", k)
            assert list(found.ids) == [f"ex-{j}" for j in expected]
            assert list(found.similarities) == [float(every[j]) for j in expected]
            assert np.array_equal(found.outcomes[:, 0], evidence[expected, 2])
        assert len(space.search("any", 0)) == 0


def test_a_row_whose_similarity_is_nan_comes_after_every_number() -> None:
    """A corrupt vector (NaN) must neither crowd a real neighbour out nor carry weight: a partition
    puts NaN above every number, so top_k ranks such rows last, with similarity -inf."""
    sims = np.array([0.2, np.nan, 0.9, 0.5, np.nan, 0.5], dtype=np.float32)
    rows = np.arange(len(sims))
    for k, expected in ((1, [2]), (2, [2, 3]), (4, [2, 3, 5, 0]), (5, [2, 3, 5, 0, 1]), (9, [2, 3, 5, 0, 1, 4])):
        found, found_sims = top_k(rows, sims, k)
        assert list(found) == expected
        assert not np.isnan(found_sims).any()
    assert top_k(rows, sims, 5)[1][-1] == -np.inf and list(top_k(rows, sims, 9)[1][-2:]) == [-np.inf, -np.inf]


def test_an_encoder_fitted_on_the_tenants_texts_is_chosen_where_the_shared_one_cannot_tell_its_prompts_apart() -> None:
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    vectors = FormEncoder().encode([ex.content for ex in rows])
    space = fit_tenant_space(rows, vectors, range(len(rows)), _targets(rows), PredictorParams())
    assert space is not None and space.gain > 0
    assert len(space.group) == len(rows) and space.prompts.shape[1] == space.encoder.dim
    assert np.allclose(np.linalg.norm(space.prompts, axis=1), 1.0, atol=1e-3)
    # a new prompt of each kind finds acme's prompts of its kind, with their outcomes
    rng = np.random.default_rng(99)
    for i, small_outcome in ((1000, 0.0), (1001, 1.0)):
        found = space.search(_prompt(i, rng), 20)
        assert len(found) == 20 and list(found.similarities) == sorted(found.similarities, reverse=True)
        small = found.outcomes[:, found.key_index["small"]]
        assert abs(np.nanmean(small) - small_outcome) < 0.25
        assert set(found.ids) <= {ex.id for ex in rows}


def test_the_shared_space_is_kept_where_it_knows_the_tenants_outcomes() -> None:
    """The shared vectors say which kind a prompt is; the texts carry no word of it."""
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    rng = np.random.default_rng(1)
    texts = {ex.content: " ".join(rng.choice(FILLER, size=10)) + f" case {n}" for n, ex in enumerate(rows)}
    blind = [LabelledExample(content=texts[ex.content], outcomes=ex.outcomes, tenant="acme", id=ex.id) for ex in rows]
    kind = np.array([0 if ex.outcomes.get("small", 1.0) == 0.0 or HARD in ex.content else 1 for ex in rows])
    vectors = normalise_rows(np.eye(4)[kind] + 0.05 * rng.standard_normal((len(rows), 4)))
    assert fit_tenant_space(blind, vectors, range(len(rows)), _targets(rows), PredictorParams()) is None


def test_too_few_prompts_or_no_stored_text_get_no_space() -> None:
    few = _tenant_rows(2 * MIN_PROMPTS - 2)
    vectors = FormEncoder().encode([ex.content for ex in few])
    assert fit_tenant_space(few, vectors, range(len(few)), _targets(few), PredictorParams()) is None
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    textless = [LabelledExample(content="", outcomes=ex.outcomes, tenant="acme", id=ex.id) for ex in rows]
    vectors = FormEncoder().encode([ex.content for ex in rows])
    assert fit_tenant_space(textless, vectors, range(len(rows)), _targets(rows), PredictorParams()) is None
    # prompts that share no word span no space: declined, not an error that would lose the prior
    lone = [
        LabelledExample(content=f"w{n}", outcomes=ex.outcomes, tenant="acme", id=ex.id) for n, ex in enumerate(rows)
    ]
    assert fit_tenant_space(lone, vectors, range(len(rows)), _targets(rows), PredictorParams()) is None


def test_space_choices_are_counted_for_operators() -> None:
    before = REGISTRY.get_sample_value("llm_router_tenant_space_choices_total", {"space": "own"}) or 0.0
    count_tenant_space("own")
    assert REGISTRY.get_sample_value("llm_router_tenant_space_choices_total", {"space": "own"}) == before + 1
    assert b'llm_router_tenant_space_choices_total{space="own"}' in render()[0]


# --- in the router -------------------------------------------------------------------------------


async def _index(encoder: FormEncoder, rows: Sequence[LabelledExample]) -> LocalIndex:
    index = LocalIndex(encoder.dim)
    shared = [
        LabelledExample(content=f"general help request {i}", outcomes={"tier:frontier": 0.9, "tier:economy": 0.5})
        for i in range(50)
    ]
    examples = [*shared, *rows]
    await index.upsert(examples, encoder.encode([ex.content for ex in examples]))
    return index


def _gain(decision: Any) -> float:
    q = {c.model.id: c.predicted_quality for c in decision.candidates}
    return float(q["big"] - q["small"])


async def test_the_router_searches_a_tenant_in_the_space_its_fit_chose(caplog: pytest.LogCaptureFixture) -> None:
    encoder = FormEncoder()
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    index = await _index(encoder, rows)
    params = PredictorParams(k=40)
    told: list[str] = []
    with_space = TenantPriors(index, params=params, on_space=told.append)
    without = TenantPriors(index, params=params, max_space_examples=0, on_space=told.append)
    router = Router(CATALOG, encoder, index, params=params, difficulty=None, tenant_priors=with_space)
    plain = Router(CATALOG, encoder, index, params=params, difficulty=None, tenant_priors=without)
    with caplog.at_level(logging.INFO, logger="shared.routing.tenant_prior"):
        fitted = await with_space.refresh("acme", router.shared_estimate)
    assert fitted is not None and fitted.space is not None
    assert "its own space" in caplog.text
    shared_only = await without.refresh("acme", plain.shared_estimate)
    assert shared_only is not None and shared_only.space is None
    assert told == ["own", "shared"]  # for /metrics

    rng = np.random.default_rng(7)
    hard, easy = _prompt(2000, rng), _prompt(2001, rng)
    mine = [await router.decide(RoutingRequest(prompt=q, policy="balanced", tenant="acme")) for q in (hard, easy)]
    theirs = [await plain.decide(RoutingRequest(prompt=q, policy="balanced", tenant="acme")) for q in (hard, easy)]
    # in its own space the tenant's neighbours tell an integral from a matrix; in the shared
    # (form-only) space they cannot
    assert _gain(mine[0]) - _gain(mine[1]) > 0.5
    assert abs(_gain(theirs[0]) - _gain(theirs[1])) < 0.2
    assert [d.public()["tenant_space"] for d in mine] == [True, True]  # /api/v1/route says so
    assert [d.public()["tenant_space"] for d in theirs] == [False, False]
    assert {n["id"] for n in mine[0].public()["tenant_neighbours"]} <= {ex.id for ex in rows}
    # another tenant never reads acme's space
    other = await router.decide(RoutingRequest(prompt=hard, policy="balanced", tenant="other"))
    assert not other.own_neighbours and other.public()["tenant_space"] is False
    await router.close()
    await plain.close()


async def test_an_unchanged_tenant_keeps_its_space_and_new_labels_refit_it() -> None:
    encoder = FormEncoder()
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    index = await _index(encoder, rows)
    priors = TenantPriors(index, params=PredictorParams(k=40))
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    first = await priors.refresh("acme", router.shared_estimate)
    again = await priors.refresh("acme", router.shared_estimate)
    assert first is not None and again is not None and first.space is not None
    assert again is not first and again.space is first.space  # the prior refitted, the space kept
    more = _tenant_rows(2 * MIN_PROMPTS + 60)[len(rows) :]
    await index.upsert(more, encoder.encode([ex.content for ex in more]))
    grown = await priors.refresh("acme", router.shared_estimate)
    assert grown is not None and grown.space is not None and grown.space is not first.space
    assert len(grown.space.group) == len(rows) + len(more)
    # TENANT_SPACE_EXAMPLES caps what the space holds (the latest), not what the prior reads
    capped = TenantPriors(index, params=PredictorParams(k=40), max_space_examples=len(rows))
    held = await capped.refresh("acme", router.shared_estimate)
    assert held is not None and held.examples == len(rows) + len(more)
    assert held.space is not None and len(held.space.group) == len(rows)
    assert set(held.space.ids) == {ex.id for ex in (rows + more)[len(more) :]}
    await router.close()


async def _three_tenants(encoder: FormEncoder) -> LocalIndex:
    """acme's rows, and the same rows owned by tenants b and c: three spaces to hold."""
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    theirs = [
        LabelledExample(
            content=ex.content, outcomes=ex.outcomes, tenant=tenant, source="feedback", id=f"{tenant}-{ex.id}"
        )
        for tenant in ("b", "c")
        for ex in rows
    ]
    return await _index(encoder, [*rows, *theirs])


async def test_at_most_max_spaces_tenants_hold_a_space_and_the_least_recently_used_lose_it_first() -> None:
    encoder = FormEncoder()
    index = await _three_tenants(encoder)
    priors = TenantPriors(index, params=PredictorParams(k=40), max_spaces=2)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    for tenant in ("acme", "b", "c"):
        fitted = await priors.refresh(tenant, router.shared_estimate)
        assert fitted is not None and fitted.space is not None
    kept = {t: priors.peek(t) for t in ("acme", "b", "c")}
    assert [t for t, p in kept.items() if p is not None and p.space is not None] == ["b", "c"]
    acme = kept["acme"]
    assert acme is not None and acme.space is None and acme.space_examples is None  # its prior stays
    # its next fit chooses again (and takes the space from the least recently used)
    again = await priors.refresh("acme", router.shared_estimate)
    assert again is not None and again.space is not None
    assert [t for t in ("acme", "b", "c") if (p := priors.peek(t)) is not None and p.space is not None] == ["acme", "c"]
    await router.close()


def test_the_least_recently_used_spaces_go_until_count_and_memory_are_within_budget() -> None:
    assert spaces_over_budget([5, 3, 4], max_spaces=16, max_bytes=12) == 0
    assert spaces_over_budget([5, 3, 4], max_spaces=16, max_bytes=8) == 1  # 7 left
    assert spaces_over_budget([5, 3, 4], max_spaces=1, max_bytes=100) == 2
    assert spaces_over_budget([5, 3, 40], max_spaces=16, max_bytes=39) == 3  # the newest alone is too big
    assert spaces_over_budget([], max_spaces=0, max_bytes=0) == 0


async def test_the_spaces_held_together_stay_within_their_memory_budget() -> None:
    """A tenant with many examples holds a large space (its vectors, and an encoder of up to
    32,768 n-grams): spaces are dropped, least recently used first, while they hold more memory
    together than `max_space_bytes`, however few they are."""
    encoder = FormEncoder()
    index = await _three_tenants(encoder)
    probe = TenantPriors(index, params=PredictorParams(k=40))
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=probe)
    one = await probe.refresh("acme", router.shared_estimate)
    assert one is not None and one.space is not None
    size = one.space.nbytes
    # the arrays alone are a floor: vectors, the examples' prompt and evidence, the encoder's basis
    assert size > one.space.prompts.nbytes + one.space.evidence.nbytes + one.space.encoder.components.nbytes
    held: list[tuple[int, int, int]] = []
    priors = TenantPriors(
        index, params=PredictorParams(k=40), max_space_bytes=int(2.5 * size), on_held=lambda *n: held.append(n)
    )
    for tenant in ("acme", "b", "c"):
        fitted = await priors.refresh(tenant, router.shared_estimate)
        assert fitted is not None and fitted.space is not None
    holding = {t: p.space for t in ("acme", "b", "c") if (p := priors.peek(t)) is not None and p.space is not None}
    assert list(holding) == ["b", "c"]
    b, c = holding["b"].nbytes, holding["c"].nbytes
    # operators see what the spaces hold and how many were dropped (/metrics)
    assert held == [(1, size, 0), (2, size + b, 0), (2, b + c, 1)]
    drops = REGISTRY.get_sample_value("llm_router_tenant_space_drops_total") or 0.0
    record_tenant_spaces(*held[-1])
    assert REGISTRY.get_sample_value("llm_router_tenant_space_drops_total") == drops + 1
    assert REGISTRY.get_sample_value("llm_router_tenant_space_bytes") == held[-1][1]
    assert b"llm_router_tenant_spaces_held 2.0" in render()[0]
    alone = TenantPriors(index, params=PredictorParams(k=40), max_space_bytes=size - 1)
    fitted = await alone.refresh("acme", router.shared_estimate)
    assert fitted is not None and fitted.space is not None  # the fit's own answer keeps it
    kept = alone.peek("acme")
    assert kept is not None and kept.space is None and fitted.weights == kept.weights  # the prior stays
    await router.close()


async def test_the_evaluation_scores_through_the_tenants_space_as_the_router_does() -> None:
    encoder = FormEncoder()
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    scorer = GainScorer(
        encoder,
        PredictorParams(k=40),
        strong_keys=("big", "tier:frontier"),
        weak_keys=("small", "tier:economy"),
        tenant="acme",
        use_difficulty=False,
    )
    shared = [
        LabelledExample(content=f"general help request {i}", outcomes={"tier:frontier": 0.9, "tier:economy": 0.5})
        for i in range(50)
    ]
    scorer.add([*shared, *rows], encoder.encode([ex.content for ex in [*shared, *rows]]))
    rng = np.random.default_rng(11)
    hard, easy = _prompt(4000, rng), _prompt(4001, rng)
    before = scorer.score(hard) - scorer.score(easy)
    await scorer.fit_tenant_prior()
    assert scorer.tenant_prior is not None and scorer.tenant_prior.space is not None
    assert abs(before) < 0.1 and scorer.score(hard) - scorer.score(easy) > 0.25


async def test_asking_for_a_tenants_space_never_starts_a_fit() -> None:
    encoder = FormEncoder()
    index = await _index(encoder, [])
    priors = TenantPriors(index)
    router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None, tenant_priors=priors)
    decision = await router.decide(RoutingRequest(prompt="hello there", policy="balanced", tenant="newcomer"))
    await asyncio.sleep(0)
    assert not decision.own_neighbours and not priors._running and "newcomer" not in priors._fitted
    await router.close()


async def test_weaviate_and_the_local_index_give_a_tenant_the_same_space(
    make_weaviate_index: Callable[..., Any],
) -> None:
    encoder = FormEncoder()
    rows = _tenant_rows(2 * MIN_PROMPTS + 40)
    local = await _index(encoder, rows)
    remote = make_weaviate_index(encoder.dim, encoder.name)
    shared = [
        LabelledExample(content=f"general help request {i}", outcomes={"tier:frontier": 0.9, "tier:economy": 0.5})
        for i in range(50)
    ]
    await remote.upsert([*shared, *rows], encoder.encode([ex.content for ex in [*shared, *rows]]))
    spaces = []
    for index in (local, remote):
        router = Router(CATALOG, encoder, index, params=PredictorParams(k=40), difficulty=None)
        fitted = await TenantPriors(index, params=PredictorParams(k=40)).refresh("acme", router.shared_estimate)
        assert fitted is not None and fitted.space is not None
        spaces.append(fitted.space)
    query = _prompt(3000, np.random.default_rng(5))
    a, b = (s.search(query, len(rows)) for s in spaces)
    assert {(i, round(float(s), 4)) for i, s in zip(a.ids, a.similarities, strict=True)} == {
        (i, round(float(s), 4)) for i, s in zip(b.ids, b.similarities, strict=True)
    }
