"""The pieces of self-labelling on their own: the verdict from two orders, reading the judge's
answer, which model shadows and which judges, and the daily budget in memory and on real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from shared.catalog import Catalog, CatalogError, ModelSpec
from shared.schemas import ChatCompletionRequest
from shared.shadow.budget import MemoryShadowBudget, RedisShadowBudget, ShadowBudget
from shared.shadow.judge import VERDICT_FORMAT, combine, judge_request, parse_winner
from shared.shadow.models import judge_model, shadow_model
from tests.conftest import local_models


@pytest.mark.parametrize(
    ("answer_first", "shadow_first", "outcomes", "outcome"),
    [
        ("A", "B", (1.0, 0.0), "answer_better"),  # the answer wins in both orders
        ("B", "A", (0.0, 1.0), "shadow_better"),
        ("A", "A", (0.5, 0.5), "tie_orders_disagree"),  # always the first position: bias, not a verdict
        ("B", "B", (0.5, 0.5), "tie_orders_disagree"),
        ("A", "tie", (0.5, 0.5), "tie_orders_disagree"),
        ("tie", "tie", (0.5, 0.5), "tie"),
    ],
)
def test_both_orders_make_the_verdict(answer_first: str, shadow_first: str, outcomes: tuple, outcome: str) -> None:
    v = combine(answer_first, shadow_first)  # type: ignore[arg-type]
    assert (v.answer_outcome, v.shadow_outcome) == outcomes
    assert v.outcome == outcome
    assert v.orders_agree == (outcome != "tie_orders_disagree")


def _said(text: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ('{"reason": "B is right", "winner": "B"}', "B"),
        ('```json\n{"reason": "x", "winner": "a"}\n```', "A"),
        ('{"winner": "tie", "reason": ""}', "tie"),
        ('{"winner": "C"}', None),
        ("A is better", None),
        ("{not json}", None),
        ("", None),
    ],
)
def test_the_judges_answer_is_read_strictly(text: str, winner: str | None) -> None:
    assert parse_winner(_said(text)) == winner


def test_the_judge_request_asks_for_structured_output_and_shows_both_answers() -> None:
    original = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "What is 2+2?"}]})
    req = judge_request(original, "four", "five", "big")
    assert req.response_format is not None and req.response_format.type == "json_schema"
    assert req.response_format.json_schema == VERDICT_FORMAT
    assert req.temperature == 0 and req.needs_capabilities() == {"json"}
    user = req.messages[-1].text()
    assert user.index("What is 2+2?") < user.index("<answer_A>\nfour") < user.index("<answer_B>\nfive")
    orjson.dumps(VERDICT_FORMAT)  # sent as is through the provider


def _catalog(*extra: ModelSpec) -> Catalog:
    return Catalog([*local_models("http://127.0.0.1:9/v1"), *extra])


def test_the_judge_is_the_frontier_model_unless_configured() -> None:
    cat = _catalog()
    assert judge_model(cat, "").id == "big"
    assert judge_model(cat, "small").id == "small"
    with pytest.raises(CatalogError, match="SHADOW_JUDGE_MODEL"):
        judge_model(cat, "no-such-model")


def test_the_shadow_model_is_of_another_tier() -> None:
    cat = _catalog()
    big, small = cat.get("big"), cat.get("small")
    # from the request's own ranking first, skipping models of the answering tier
    assert shadow_model(cat, small, [small, big], set(), None) == big
    # an explicit model has no ranking: the cheapest eligible model of another tier
    assert shadow_model(cat, big, [big], set(), None) == small
    assert shadow_model(cat, big, [big], set(), ["big"]) is None  # the tenant may not use `small`
    assert shadow_model(cat, big, [big], {"vision"}, None) is None  # `small` cannot see images
    assert shadow_model(cat, big, [big], set(), None, excluded=["small"]) is None


@pytest.fixture(params=["memory", "redis"])
async def budget_of(request: pytest.FixtureRequest) -> AsyncIterator:
    clients: list[Redis] = []

    def make(usd: float) -> ShadowBudget:
        if request.param == "memory":
            return MemoryShadowBudget(usd)
        client = Redis.from_url(request.getfixturevalue("redis_url"))
        clients.append(client)
        return RedisShadowBudget(client, usd, prefix=f"test:shadow:{uuid.uuid4().hex}")

    yield make
    for client in clients:
        await client.aclose()


async def test_the_budget_refuses_what_does_not_fit_and_settles_to_the_real_cost(budget_of) -> None:
    budget = budget_of(1.0)
    first = await budget.reserve("acme", 0.6)
    assert first is not None
    assert await budget.reserve("acme", 0.6) is None  # 1.2 > 1.0
    assert await budget.reserve("globex", 0.6) is not None  # per tenant
    await budget.settle(first, 0.1)  # the call cost less than estimated
    assert await budget.spent_today("acme") == pytest.approx(0.1)
    assert await budget.reserve("acme", 0.6) is not None
    assert await budget.spent_today("acme") == pytest.approx(0.7)


async def test_a_zero_budget_allows_nothing(budget_of) -> None:
    assert await budget_of(0.0).reserve("acme", 1e-9) is None


async def test_concurrent_reservations_never_overshoot(budget_of) -> None:
    budget = budget_of(1.0)
    got = await asyncio.gather(*(budget.reserve("acme", 0.1) for _ in range(25)))
    assert sum(r is not None for r in got) == 10
    assert await budget.spent_today("acme") == pytest.approx(1.0)
