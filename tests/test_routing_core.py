"""The routing core on real labelled data: encoder, index, predictor, policies, constraints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.catalog import Catalog, ModelSpec
from shared.encoders.base import SingleTextEncoder
from shared.encoders.hashing import HashingEncoder
from shared.encoders.tfidf_svd import TfidfSvdEncoder
from shared.errors import InvalidRequest, ModelNotFound, ModelRetired, NoEligibleModel
from shared.examples.labelled import LabelledExample, Neighbour, Neighbours, evidence_matrix, read_labelled_csv
from shared.index.local import LocalIndex
from shared.routing.policy import Candidate, rank
from shared.routing.predictor import PredictorParams, evidence_by_key, outcome_priors, predict_qualities
from shared.routing.request import RoutingRequest
from shared.routing.router import Router
from tests.conftest import MMLU_DIR, ROOT
from tests.model_specs import model_spec

# the labelled data beside the repository (../shared/data), when this checkout has it
DATA_ROOT = next(
    (p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "data").is_dir()), ROOT
)

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
SUBJECTS = ["mmlu_high_school_mathematics.csv", "mmlu_marketing.csv", "mmlu_world_religions.csv"]


def subject_examples(name: str) -> list[LabelledExample]:
    return list(read_labelled_csv(MMLU_DIR / name, model_columns=[STRONG, WEAK], source=name))


@pytest.fixture(scope="module")
def mmlu() -> dict[str, list[LabelledExample]]:
    return {name: subject_examples(name) for name in SUBJECTS}


@pytest.fixture(scope="module")
def encoder() -> HashingEncoder:
    return HashingEncoder(dim=1024)


def test_encoder_is_unit_norm_deterministic_and_stable(encoder: HashingEncoder) -> None:
    texts = ["What is 2+2?", "Explain the Krebs cycle in detail.", ""]
    a = encoder.encode(texts)
    b = HashingEncoder(dim=1024).encode(texts)
    assert a.dtype == np.float32 and a.shape == (3, 1024)
    np.testing.assert_array_equal(a, b)
    assert np.allclose(np.linalg.norm(a[:2], axis=1), 1.0, atol=1e-5)
    assert not a[2].any()  # empty text: zero vector, never NaN
    # the same words in another order share most features, an unrelated text few
    near = encoder.encode(["What is two plus two", "two plus two is what"])
    far = encoder.encode(["Describe the French revolution"])
    assert float(near[0] @ near[1]) > float(near[0] @ far[0])


def test_examples_read_from_the_evaluation_csv(mmlu: dict[str, list[LabelledExample]]) -> None:
    math = mmlu["mmlu_high_school_mathematics.csv"]
    assert len(math) > 200
    assert all(set(ex.outcomes) == {STRONG, WEAK} for ex in math)
    assert all(v in (0.0, 1.0) for ex in math for v in ex.outcomes.values())
    # deterministic ids: the same source and content always give the same id
    again = subject_examples("mmlu_high_school_mathematics.csv")
    assert [ex.id for ex in again] == [ex.id for ex in math]


async def test_local_index_finds_same_subject_neighbours(
    mmlu: dict[str, list[LabelledExample]], encoder: HashingEncoder
) -> None:
    index = LocalIndex(encoder.dim)
    held_out: list[tuple[str, LabelledExample]] = []
    for name, rows in mmlu.items():
        held_out.append((name, rows[0]))
        await index.upsert(rows[1:], encoder.encode([r.content for r in rows[1:]]))
    source_of = {ex.id: name for name, rows in mmlu.items() for ex in rows}
    for name, ex in held_out:
        found = await index.search(encoder.encode([ex.content])[0], 10)
        assert len(found) == 10
        sims = [n.similarity for n in found]
        assert sims == sorted(sims, reverse=True)
        same = sum(source_of[n.id] == name for n in found)
        assert same >= 6, f"{name}: only {same}/10 neighbours from the same subject"


async def test_upsert_is_idempotent_and_delete_removes(
    mmlu: dict[str, list[LabelledExample]], encoder: HashingEncoder
) -> None:
    rows = mmlu["mmlu_marketing.csv"][:50]
    vecs = encoder.encode([r.content for r in rows])
    index = LocalIndex(encoder.dim)
    await index.upsert(rows, vecs)
    await index.upsert(rows, vecs)
    assert await index.count() == 50
    assert await index.delete([rows[0].id, "no-such-id"]) == 1
    assert await index.count() == 49
    top = await index.search(vecs[0], 1)
    assert top[0].id != rows[0].id


async def test_tenant_examples_are_visible_only_to_their_tenant(encoder: HashingEncoder) -> None:
    shared_ex = LabelledExample(content="shared example about databases", outcomes={"m": 1.0})
    private = LabelledExample(content="private example about databases", outcomes={"m": 0.0}, tenant="acme")
    index = LocalIndex(encoder.dim)
    await index.upsert([shared_ex, private], encoder.encode([shared_ex.content, private.content]))
    q = encoder.encode(["example about databases"])[0]
    assert {n.id for n in await index.search(q, 5, tenant="acme")} == {shared_ex.id, private.id}
    assert {n.id for n in await index.search(q, 5, tenant="other")} == {shared_ex.id}


def test_predictor_shrinks_toward_prior_with_little_evidence() -> None:
    params = PredictorParams(k=10, prior_strength=4.0, similarity_power=1.0)
    one = [Neighbour("a", 0.9, {"m": 1.0})]
    many = [Neighbour(str(i), 0.9, {"m": 1.0}) for i in range(40)]
    prior = 0.5
    q_one = predict_qualities(one, [("m",)], [prior], params)[0]
    q_many = predict_qualities(many, [("m",)], [prior], params)[0]
    q_none = predict_qualities([], [("m",)], [prior], params)[0]
    assert q_none.quality == prior and q_none.key is None
    assert prior < q_one.quality < q_many.quality < 1.0
    assert q_one.quality == pytest.approx((0.9 * 1.0 + 4 * 0.5) / (0.9 + 4))
    assert q_many.quality == pytest.approx((36 * 1.0 + 4 * 0.5) / (36 + 4))
    assert q_many.evidence == pytest.approx(36.0)


def test_predictor_refines_the_tier_estimate_with_the_models_own_outcomes() -> None:
    """A model's own outcomes are shrunk toward its tier's estimate (own_strength), not used
    alone: a few own labels nudge it, many take over."""
    params = PredictorParams(k=10, prior_strength=0.0, similarity_power=1.0, own_strength=2.0)
    nbs = [Neighbour("a", 0.8, {"tier:economy": 0.0, "my-model": 1.0}), Neighbour("b", 0.7, {"tier:economy": 1.0})]
    est = predict_qualities(nbs, [("my-model", "tier:economy"), ("other", "tier:economy")], [0.5, 0.5], params)
    tier = 0.7 / 1.5
    assert est[1].key == "tier:economy" and est[1].quality == pytest.approx(tier)
    assert est[0].key == "my-model" and est[0].quality == pytest.approx((0.8 * 1.0 + 2.0 * tier) / (0.8 + 2.0))
    many = [Neighbour(str(i), 0.8, {"my-model": 1.0}) for i in range(50)] + nbs[1:]
    assert predict_qualities(many, [("my-model", "tier:economy")], [0.5], params)[0].quality > 0.95


async def test_predicted_gain_tracks_real_outcomes(
    mmlu: dict[str, list[LabelledExample]], encoder: HashingEncoder
) -> None:
    """On held-out prompts, those where the strong model beats the weak one get a higher mean
    predicted gain than the rest: the estimate carries real signal."""
    rows = [ex for r in mmlu.values() for ex in r]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    train = [rows[i] for i in order[: len(rows) // 2]]
    test = [rows[i] for i in order[len(rows) // 2 :]]
    index = LocalIndex(encoder.dim)
    await index.upsert(train, encoder.encode([r.content for r in train]))
    priors = outcome_priors([r.outcomes for r in train])
    params = PredictorParams()
    gains, truth = [], []
    for ex in test:
        nbs = await index.search(encoder.encode([ex.content])[0], params.k)
        s, w = predict_qualities(nbs, [(STRONG,), (WEAK,)], [priors[STRONG], priors[WEAK]], params)
        gains.append(s.quality - w.quality)
        truth.append(ex.outcomes[STRONG] - ex.outcomes[WEAK])
    g, t = np.array(gains), np.array(truth)
    assert g[t > 0].mean() > g[t <= 0].mean()


def _spec(id_: str, tier: str, price_in: float, price_out: float, latency: float, **kw: Any) -> ModelSpec:
    return model_spec(id_, tier, price_in, price_out, latency, **({"capabilities": frozenset({"tools", "json"})} | kw))


def _cands(*rows: tuple[ModelSpec, float]) -> list[Candidate]:
    return [
        Candidate(model=m, predicted_quality=q, evidence=10, estimated_cost_usd=m.cost_usd(1000, 500)) for m, q in rows
    ]


def test_policies_rank_as_documented() -> None:
    big = _spec("big", "frontier", 2.0, 8.0, 900)
    mid = _spec("mid", "balanced", 0.3, 2.5, 400)
    small = _spec("small", "economy", 0.1, 0.4, 200)
    rows = ((big, 0.82), (mid, 0.80), (small, 0.70))
    assert [c.model.id for c in rank(_cands(*rows), "quality", margin=0.05, cost_weight=0.05)] == [
        "big",
        "mid",
        "small",
    ]
    # cost: cheapest within the margin of the best; the rest after, best first
    assert [c.model.id for c in rank(_cands(*rows), "cost", margin=0.05, cost_weight=0.05)] == ["mid", "big", "small"]
    assert next(c.model.id for c in rank(_cands(*rows), "cost", margin=0.2, cost_weight=0.05)) == "small"
    assert next(c.model.id for c in rank(_cands(*rows), "latency", margin=0.05, cost_weight=0.05)) == "mid"
    # balanced: a 10x price must buy cost_weight quality per decade
    ranked = rank(_cands(*rows), "balanced", margin=0.05, cost_weight=0.05)
    by_id = {c.model.id: c.score for c in ranked}
    assert by_id["small"] == pytest.approx(0.70)
    assert by_id["big"] == pytest.approx(0.82 - 0.05 * np.log10(big.cost_usd(1000, 500) / small.cost_usd(1000, 500)))
    assert ranked[0].model.id == max(by_id, key=by_id.__getitem__)


@pytest.fixture
def router_parts(encoder: HashingEncoder) -> tuple[Catalog, LocalIndex]:
    models = [
        _spec("big", "frontier", 2.0, 8.0, 900, capabilities=frozenset({"tools", "json", "vision"})),
        _spec("small", "economy", 0.1, 0.4, 200, context_window=8000, max_output_tokens=2048),
    ]
    return Catalog(models, {"text-bison": "big"}), LocalIndex(encoder.dim)


async def test_router_constraints(router_parts: tuple[Catalog, LocalIndex], encoder: HashingEncoder) -> None:
    catalog, index = router_parts
    router = Router(catalog, encoder, index)

    async def decide(**kw: object) -> list[str]:
        req = RoutingRequest(prompt="hello", policy="cost", **kw)  # type: ignore[arg-type]
        d = await router.decide(req)
        return [c.model.id for c in d.ranked]

    assert await decide() == ["small", "big"]
    assert await decide(needs=frozenset({"vision"})) == ["big"]
    assert await decide(prompt_tokens=7000, max_output_tokens=1500) == ["big"]
    assert await decide(max_output_tokens=4000) == ["big"]
    assert await decide(allowed_models=["big"]) == ["big"]
    assert await decide(exclude_models=["small"]) == ["big"]
    assert await decide(max_cost_usd=0.001) == ["small"]
    d = await router.decide(RoutingRequest(prompt="hello", policy="cost"), open_circuits={"small"})
    assert [c.model.id for c in d.ranked] == ["big"]
    assert any(c.excluded == "circuit open" for c in d.candidates)
    with pytest.raises(NoEligibleModel, match="small"):
        await router.decide(
            RoutingRequest(prompt="x", policy="cost", needs=frozenset({"vision"}), exclude_models=["big"])
        )
    with pytest.raises(ModelRetired, match="use 'big'"):
        await router.decide(RoutingRequest(prompt="x", policy="cost", explicit_model="text-bison"))
    with pytest.raises(ModelNotFound):
        await router.decide(RoutingRequest(prompt="x", policy="cost", explicit_model="nope"))
    with pytest.raises(InvalidRequest, match="limit of 2048"):
        await router.decide(RoutingRequest(prompt="x", policy="cost", explicit_model="small", max_output_tokens=3000))


async def test_router_falls_back_to_priors_when_the_index_fails(
    router_parts: tuple[Catalog, LocalIndex], encoder: HashingEncoder
) -> None:
    catalog, _ = router_parts

    class BrokenIndex(LocalIndex):
        async def search(self, vector: np.ndarray, k: int, *, tenant: str | None = None) -> list[Neighbour]:
            raise ConnectionError("index down")

    router = Router(
        catalog, encoder, BrokenIndex(encoder.dim), priors={"tier:frontier": 0.9, "tier:economy": 0.6}, difficulty=None
    )
    d = await router.decide(RoutingRequest(prompt="hello", policy="quality"))
    assert d.index_status == "index unavailable"
    assert d.chosen.id == "big"
    assert [round(c.predicted_quality, 2) for c in d.ranked] == [0.9, 0.6]
    assert d.public()["index"] == "index unavailable"


def test_starter_examples_ship_with_attribution() -> None:
    data = Path(__file__).resolve().parent.parent / "shared" / "data"
    assert (data / "LICENSE-RouteLLM.txt").read_text().startswith(" ") or "Apache" in (
        data / "LICENSE-RouteLLM.txt"
    ).read_text()
    assert "lm-sys/RouteLLM" in (data / "README.md").read_text()
    readme = (data / "README.md").read_text()
    for source in ("ZeroEval", "LLMRouter", "Apache", "MIT"):
        assert source in readme
    rows = list(read_labelled_csv(data / "starter_examples.csv.gz"))
    assert len(rows) > 19_000
    assert {k for r in rows for k in r.outcomes} == {"tier:frontier", "tier:balanced", "tier:economy"}
    # AlpacaEval (CC BY-NC) is evaluation-only: none of its prompts ships
    alpaca = DATA_ROOT / "routing-eval" / "alpaca_eval" / "alpaca_eval.csv.gz"
    if alpaca.exists():
        shipped = {r.content for r in rows}
        assert not shipped & {r.content for r in read_labelled_csv(alpaca, model_columns=["gpt-4-turbo-reference"])}


async def test_a_tier_without_examples_is_placed_between_the_labelled_tiers(encoder: HashingEncoder) -> None:
    """The balanced tier has no labelled outcomes in the starter data: its per-prompt estimate
    follows the economy and frontier estimates, placed by its prior."""
    mid = _spec("mid", "balanced", 0.3, 2.5, 400).model_copy(update={"quality_prior": 0.75})
    catalog = Catalog([_spec("big", "frontier", 2.0, 8.0, 900), mid, _spec("small", "economy", 0.1, 0.4, 200)])
    easy = LabelledExample(
        content="what colour is the sky on a clear day", outcomes={"tier:frontier": 1.0, "tier:economy": 1.0}
    )
    hard = LabelledExample(
        content="prove the riemann hypothesis for zeta zeros", outcomes={"tier:frontier": 1.0, "tier:economy": 0.0}
    )
    index = LocalIndex(encoder.dim)
    await index.upsert([easy, hard], encoder.encode([easy.content, hard.content]))
    router = Router(
        catalog,
        encoder,
        index,
        priors={"tier:frontier": 0.8, "tier:economy": 0.7},
        params=PredictorParams(k=1),
        difficulty=None,
    )
    quality = {}
    for ex in (easy, hard):
        d = await router.decide(RoutingRequest(prompt=ex.content, policy="quality"))
        quality[ex.content] = {c.model.id: c.predicted_quality for c in d.ranked}
    for q in quality.values():
        assert q["small"] <= q["mid"] <= q["big"]
        t = (0.75 - 0.7) / (0.8 - 0.7)
        assert q["mid"] == pytest.approx(q["small"] + t * (q["big"] - q["small"]))
    # the hard prompt widens the gap between tiers, and the balanced tier follows it
    assert (
        quality[hard.content]["big"] - quality[hard.content]["small"]
        > quality[easy.content]["big"] - quality[easy.content]["small"]
    )


def test_an_unknown_prompt_is_low_confidence_and_goes_to_the_cheapest_model(
    router_parts: tuple[Catalog, LocalIndex], encoder: HashingEncoder
) -> None:
    """No labelled neighbour at all: the router says so and, outside the quality policy, takes
    the cheapest eligible model instead of trusting priors that favour the priciest."""
    catalog, index = router_parts
    router = Router(catalog, encoder, index, priors={"tier:frontier": 0.9, "tier:economy": 0.6})

    async def run() -> None:
        d = await router.decide(RoutingRequest(prompt="hi", policy="balanced"))
        assert d.low_confidence and d.confidence == 0.0
        assert d.chosen.id == "small"
        body = d.public()
        assert body["low_confidence"] is True and "low" in str(body["confidence_reason"])
        assert body["reason"].startswith("low confidence")
        q = await router.decide(RoutingRequest(prompt="hi", policy="quality"))
        assert q.low_confidence and q.chosen.id == "big"

    import asyncio

    asyncio.run(run())


def test_difficulty_prior_keeps_tiers_in_order_and_is_learned() -> None:
    from shared.routing.difficulty import DifficultyModel

    texts = ["short one", "x = 3 + 4 * y^2, solve for y " * 5, "what is it", "def f(x):\n    return x ** 2 + 1\n" * 4]
    outcomes = [
        {"tier:frontier": 1.0, "tier:economy": 1.0},
        {"tier:frontier": 1.0, "tier:economy": 0.0},
        {"tier:frontier": 1.0, "tier:economy": 1.0},
        {"tier:frontier": 1.0, "tier:economy": 0.0},
    ] * 10
    model = DifficultyModel.fit(texts * 10, outcomes)
    easy, hard = model.predict("what is that"), model.predict("y = 5 * x^2 + 3, solve for x " * 5)
    assert hard["tier:frontier"] - hard["tier:economy"] > easy["tier:frontier"] - easy["tier:economy"]
    for p in (easy, hard, model.predict("")):
        assert p["tier:economy"] <= p["tier:frontier"]


def test_neighbours_from_the_evidence_matrix_are_the_same_neighbours() -> None:
    """LocalIndex hands over rows of [presence | outcome or 0]; the NaN form, the sequence and
    the per-key evidence are the same as from the outcomes themselves."""
    nan = float("nan")
    outcomes = np.array([[1.0, nan], [0.25, 0.0], [nan, 1.0]])
    sims, weights, keys = np.array([0.5, -0.2, 0.8]), np.array([1.0, 1.0, 2.0]), ["a", "b"]
    plain = Neighbours(["x", "y", "z"], sims, weights, keys, outcomes)
    rows = Neighbours.from_evidence(["x", "y", "z"], sims, weights, keys, evidence_matrix(outcomes))
    assert np.array_equal(rows.outcomes, outcomes, equal_nan=True)
    assert list(rows) == list(plain)
    # a negative similarity weighs nothing; key "a": 0.25*1 (x), key "b": 1.28 (z, 0.64 * 2)
    mass, weighted = evidence_by_key(rows, 2.0)
    assert mass == pytest.approx([0.25, 1.28]) and weighted == pytest.approx([0.25, 1.28])
    assert evidence_by_key(plain, 2.0) == (mass, weighted)


async def test_the_router_encodes_a_prompt_as_the_encoder_encodes_a_batch() -> None:
    """The router encodes its one prompt without a batch (encode_one); the vector is the one the
    examples were indexed with."""
    encoder = TfidfSvdEncoder.load(ROOT / "shared" / "data" / "encoder_tfidf_svd.npz")
    assert isinstance(encoder, SingleTextEncoder)
    router = Router(Catalog.load(ROOT / "shared" / "catalog.yaml"), encoder, LocalIndex(encoder.dim))
    for text in ["hi", "Prove that there are infinitely many primes.", "", "¿Qué hora es? 12:30"]:
        vector = await router.encode(text)
        assert vector.dtype == np.float32
        assert np.array_equal(vector, encoder.encode([text])[0])
