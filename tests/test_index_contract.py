"""The example-index contract, run unchanged against LocalIndex and WeaviateIndex.

WeaviateIndex runs through the real weaviate-client against the fake Weaviate (REST + gRPC), or
against a real Weaviate when WEAVIATE_URL is set (docs/weaviate.md). Expected neighbours are
computed here with numpy from the same vectors, never written down by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from shared.examples.labelled import LabelledExample
from shared.index.base import ExampleIndex
from shared.index.local import LocalIndex

DIM = 16


def unit_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, DIM)).astype(np.float32)
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def examples(n: int, *, tenant: str | None = None, source: str = "contract", start: int = 0) -> list[LabelledExample]:
    return [
        LabelledExample(
            content=f"prompt number {i} for {tenant or 'everyone'}",
            outcomes={"big": 1.0, "small": round((i % 5) / 4, 2)},
            source=source,
            tenant=tenant,
            category="maths" if i % 2 else "law",
            weight=1.0 + (i % 3) / 2,
        )
        for i in range(start, start + n)
    ]


@pytest.fixture(params=["local", "weaviate"])
def index(request: pytest.FixtureRequest) -> ExampleIndex:
    if request.param == "local":
        return LocalIndex(DIM)
    factory: Callable[..., Any] = request.getfixturevalue("make_weaviate_index")
    made: ExampleIndex = factory(DIM)
    return made


def expected_top(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    sims = vectors @ query
    order = np.argsort(-sims, kind="stable")[:k]
    return [(ids[i], float(sims[i])) for i in order]


async def test_upsert_is_idempotent_by_id(index: ExampleIndex) -> None:
    exs = examples(6)
    vecs = unit_rows(6, 1)
    assert await index.upsert(exs, vecs) == 6
    assert await index.upsert(exs, vecs) == 6
    assert await index.count() == 6

    # same (source, content) -> same id: an update replaces, never duplicates
    changed = LabelledExample(content=exs[0].content, outcomes={"big": 0.0, "small": 1.0}, source=exs[0].source)
    assert changed.id == exs[0].id
    await index.upsert([changed], vecs[:1])
    assert await index.count() == 6
    listed = {ex.id: ex for ex in await index.list(limit=100)}
    assert listed[exs[0].id].outcomes == {"big": 0.0, "small": 1.0}
    assert listed[exs[1].id].outcomes == exs[1].outcomes


async def test_search_orders_by_cosine_similarity(index: ExampleIndex) -> None:
    exs = examples(40)
    vecs = unit_rows(40, 2)
    await index.upsert(exs, vecs)
    ids = [ex.id for ex in exs]
    for q in unit_rows(5, 3):
        found = await index.search(q, 7)
        want = expected_top(vecs, ids, q, 7)
        assert [n.id for n in found] == [i for i, _ in want]
        for n, (_, sim) in zip(found, want, strict=True):
            assert n.similarity == pytest.approx(sim, abs=1e-5)
        sims = [n.similarity for n in found]
        assert sims == sorted(sims, reverse=True)


async def test_search_returns_outcomes_and_weight(index: ExampleIndex) -> None:
    exs = examples(5)
    vecs = unit_rows(5, 4)
    await index.upsert(exs, vecs)
    by_id = {ex.id: ex for ex in exs}
    found = await index.search(vecs[3], 5)
    assert found[0].id == exs[3].id
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    for n in found:
        assert n.outcomes == by_id[n.id].outcomes
        assert n.weight == pytest.approx(by_id[n.id].weight)


async def test_tenant_sees_shared_and_own_examples_only(index: ExampleIndex) -> None:
    shared, mine, theirs = examples(4), examples(3, tenant="acme"), examples(3, tenant="globex")
    every = shared + mine + theirs
    vecs = unit_rows(len(every), 5)
    await index.upsert(every, vecs)
    visible = {
        "acme": {e.id for e in shared + mine},
        None: {e.id for e in shared},
        "globex": {e.id for e in shared + theirs},
    }
    for tenant, ids in visible.items():
        for q in vecs[[0, 5, 8]]:
            found = {n.id for n in await index.search(q, 50, tenant=tenant)}
            assert found == ids
        assert {e.id for e in await index.list(limit=100, tenant=tenant)} == ids
    # the nearest neighbour of another tenant's own vector is never that example
    nearest = await index.search(vecs[len(shared) + len(mine)], 1, tenant="acme")
    assert nearest and nearest[0].id != theirs[0].id


async def test_delete_removes_and_reports_count(index: ExampleIndex) -> None:
    exs = examples(8)
    vecs = unit_rows(8, 6)
    await index.upsert(exs, vecs)
    gone = [exs[1].id, exs[4].id]
    assert await index.delete([*gone, "00000000-0000-0000-0000-000000000000"]) == 2
    assert await index.count() == 6
    found = {n.id for n in await index.search(vecs[1], 8)}
    assert not found & set(gone)
    assert len(found) == 6
    assert await index.delete([]) == 0


async def test_list_pages_cover_every_visible_example_once(index: ExampleIndex) -> None:
    exs = examples(23)
    await index.upsert(exs, unit_rows(23, 7))
    seen: list[str] = []
    for offset in range(0, 30, 5):
        seen += [e.id for e in await index.list(limit=5, offset=offset)]
    assert sorted(seen) == sorted(e.id for e in exs)
    page = await index.list(limit=3)
    assert len(page) == 3
    assert {e.content for e in page} <= {e.content for e in exs}


async def test_list_round_trips_every_field(index: ExampleIndex) -> None:
    ex = LabelledExample(
        content="Translate 'bonjour' to English.",
        outcomes={"big": 1.0, "tier:economy": 0.25},
        label_source="feedback",
        source="feedback",
        category="translation",
        task_type="qa",
        language="fr",
        tenant="acme",
        weight=2.5,
        source_request_id="req-123",
    )
    await index.upsert([ex], unit_rows(1, 8))
    [back] = await index.list(tenant="acme")
    assert back == ex


async def test_empty_index_and_nonpositive_k(index: ExampleIndex) -> None:
    q = unit_rows(1, 9)[0]
    assert await index.search(q, 5) == []
    assert await index.count() == 0
    await index.upsert(examples(2), unit_rows(2, 10))
    assert await index.search(q, 0) == []


async def test_rejects_mismatched_input(index: ExampleIndex) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        await index.upsert(examples(2), unit_rows(3, 11))
    with pytest.raises(ValueError, match="dim"):
        await index.upsert(examples(1), np.ones((1, DIM + 1), dtype=np.float32))


async def test_health_reports_ok_with_latency(index: ExampleIndex) -> None:
    h = await index.health()
    assert h.ok is True
    assert h.latency_ms >= 0
    assert h.detail
